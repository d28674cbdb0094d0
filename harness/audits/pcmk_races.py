"""Pacemaker's own races, recognised in the node logs, so that a case they spoil says so.

One is known here, from a live run (pacemaker_kill-node1, 2026-11-30) read against Pacemaker
2.1.5's source:

- **A transition computed before the DC recorded a lost controller.** When a node's controller
  leaves (killed, crashed) while corosync stays, the DC erases the node's transient attributes
  (`controld_delete_node_state`) and writes ``crmd=offline`` into its node_state
  (`peer_update_callback`). Both writes go round the cluster before they apply; the scheduler's
  query of the CIB is answered locally at once. It can see the attributes gone but the controller
  still online: the node is "active", a rule that reads a missing attribute as a failure bans
  it (the generated CIB has none since 2026-11-30: tests/unit/test_cib_policy.py), and the transition
  *moves* the group by sending a stop to the controller that is gone. Nothing aborts that transition when
  ``crmd=offline`` lands (`te_update_diff` acts on resource history, not on node_state
  attributes), so the DC fences only when the stop times out: its timeout plus cluster-delay.
  Pacemaker 3.0.2 no longer erases the attributes there (commit 62f227df).

A checker never reads logs; this is evidence for the diagnosis of a step that ran out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from harness.audits.logs import LogLine

_LEFT = re.compile(r"\(peer_update_callback\)\s+info: Node (\S+) is no longer a peer")
_STOP_SENT = re.compile(r"\(execute_rsc_action\)\s+notice: Initiating (\w+) operation (\S+) on (\S+) ")
_FENCE_ASKED = re.compile(r"Requesting fencing \(\w+\) of node (\S+)")


def stale_transition(lines: Iterable[LogLine]) -> list[str]:
    """A line per node whose lost controller was sent an operation before any fence of it was asked for.

    Each node's log is read on its own: the node that lost the peer must be the one that sent it the
    operation (in a partition, the other side still has that node as a peer and rightly sends it work)."""
    left: set[tuple[str, str]] = set()  # (the node whose log says so, the peer it lost)
    fenced: set[str] = set()
    told: dict[str, str] = {}
    for ln in lines:
        if m := _LEFT.search(ln.line):
            left.add((ln.node, m.group(1)))
        elif m := _FENCE_ASKED.search(ln.line):
            fenced.add(m.group(1))
        elif (m := _STOP_SENT.search(ln.line)) and (ln.node, m.group(3)) in left \
                and m.group(3) not in fenced and m.group(3) not in told:
            op, rsc, node = m.groups()
            told[node] = (
                f"Pacemaker race (seen in {ln.node}'s log): after {node}'s controller left, the DC sent a {op} of "
                f"{rsc} to it ('{ln.line.split('notice: ', 1)[-1].strip()}'). Its transition was computed from a CIB "
                f"read before the DC's own record of the departure (crmd=offline) landed, so {node} looked active; "
                f"the {op} waits for its timeout plus cluster-delay before the DC fences {node} (Pacemaker 2.1.5; "
                "3.0.2 no longer erases the node's attributes there, commit 62f227df)")
    return list(told.values())
