"""Packet delay and corruption on the embedded testbed: an NFQUEUE worker on the switch, per fault.

No netem in this kernel, so packets of one port are marked in the switch namespace and held or
bit-flipped in user space (`nfqueue.py` says why it takes this shape). Every name derives from
the journal entry id, so a heal after a crash needs nothing but that id. The worker lives in a
cgroup of its own under the testbed's, so `fallover down` finds it whatever happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from harness.errors import FalloverError
from harness.testbed import cgroup, nfqueue
from harness.testbed.base import Impairment
from harness.testbed.layout import Layout


def _names(layout: Layout, impairment_id: str) -> dict[str, Any]:
    return {"id": impairment_id, "table": f"fallover_q{impairment_id}",
            "queue": 1000 + int(impairment_id, 16) % 60000,  # one queue per fault: marks must not mix
            "cgroup": str(layout.daemon_cgroup(f"nfq-{impairment_id}"))}


def start(layout: Layout, impairment_id: str, imp: Impairment) -> dict[str, Any]:
    undo = _names(layout, impairment_id)
    port = layout.veth(imp.node, imp.network)
    group = cgroup.create(Path(undo["cgroup"]))
    params: dict[str, Any] = {"rate": imp.rate}
    if imp.mode == "delay":
        params.update(delay_ms=imp.delay_ms, jitter_ms=imp.jitter_ms)
    proc = nfqueue.start_worker(layout.net_ns, undo["queue"], imp.mode, preexec_fn=lambda: cgroup.join_self(group),
                                **params)
    undo["pid"] = proc.pid
    nfqueue.install(layout.net_ns, undo["table"], undo["queue"], [f'iifname "{port}"', f'oifname "{port}"'])
    return undo


def missing(layout: Layout, undo: dict[str, Any]) -> str | None:
    """The worker holds the queue (alive, in its cgroup) and both tables, marks and target, are in place."""
    pid = undo.get("pid")
    if pid is None or not nfqueue.worker_alive(pid) or pid not in cgroup.procs(Path(undo["cgroup"])):
        return f"the NFQUEUE worker (pid {pid}) is not running"
    gone = nfqueue.missing(layout.net_ns, undo["table"])
    return f"missing from the switch's ruleset: {', '.join(gone)}" if gone else None


def stop(layout: Layout, undo: dict[str, Any]) -> None:
    names = _names(layout, undo["id"]) if undo.get("id") else {}
    table, group = undo.get("table") or names.get("table"), undo.get("cgroup") or names.get("cgroup")
    if table:
        nfqueue.remove(layout.net_ns, table)  # False: gone already (idempotent)
        left = nfqueue.tables(layout.net_ns, table)
        if left:
            raise FalloverError(f"table {' and '.join(left)} {table} still in the switch's ruleset after its delete")
    if group:  # the worker, and only it, lives in this group; a survivor raises
        cgroup.remove_tree(Path(group))
