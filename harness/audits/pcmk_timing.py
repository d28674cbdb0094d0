"""Where a takeover's or a rejoin's seconds went, as the nodes' own Pacemaker and Corosync logs tell it.

A verdict says how long the service was gone; this says which step of the cluster took the time:
the membership change (token), the election of a new DC, the fence, each resource operation. It is
what `bench/vm.py` prints after a power-off and a heal, so that a slow takeover on emulated VMs can
be read as "the Filesystem start took 5 s" rather than guessed at. Pure text in, milestones out.

The logs carry no year and each node's own clock (UTC in the guests): the caller gives the year and
may shift each node's stamps by that node's measured clock offset.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass

_STAMP = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) +(?P<day>\d+) (?P<hms>\d\d:\d\d:\d\d)(?P<frac>\.\d+)? ")
_RULES: tuple[tuple[re.Pattern[str], str], ...] = tuple((re.compile(p), w) for p, w in (
    (r"corosync notice\s+\[TOTEM \] A new membership \((?P<ring>\S+)\) was formed\. Members left: (?P<ids>[\d ]+)",
     "membership {ring}: node id(s) {ids} left"),
    (r"corosync notice\s+\[TOTEM \] A new membership \((?P<ring>\S+)\) was formed\. Members joined: (?P<ids>[\d ]+)",
     "membership {ring}: node id(s) {ids} joined"),
    (r"pacemaker-controld.*\(do_state_transition\)\s+notice: State transition S_ELECTION -> S_INTEGRATION",
     "{node} won the election: new DC"),
    (r"Requesting fencing \((?P<action>\w+)\) of node (?P<target>\S+)", "fence ({action}) of {target} requested"),
    (r"\(finalize_op\)\s+notice: Operation '(?P<action>\w+)' targeting (?P<target>\S+) by (?P<by>\S+) .*: OK",
     "fence ({action}) of {target} done by {by}"),
    (r"pacemaker-controld.*Node (?P<target>\S+) state is now member \| nodeid=\d+ previous=lost",
     "{target} a cluster member again"),
    (r"\(execute_rsc_action\)\s+notice: Initiating (?P<op>\w+) operation (?P<key>\S+) (?:locally )?on (?P<on>\S+)",
     "initiating {key} on {on}"),
    ((r"\(log_executor_event\)\s+notice: Result of (?P<op>\w+) operation for (?P<rsc>\S+) on (?P<on>\S+): "
      r"(?P<result>[^|]+?) \|"), "{op} of {rsc} on {on}: {result}"),
    (r"\(throttle_check_thresholds\)\s+notice: High CPU load detected: (?P<load>[\d.]+)",
     "{node}: controller throttling (load {load})"),
))


@dataclass(frozen=True)
class Milestone:
    """One step as a node logged it: ``wall`` is the node's stamp shifted by its clock offset."""

    wall: float
    node: str
    what: str


def stamp(line: str, year: int, offset: float = 0.0) -> float | None:
    """The line's time (epoch seconds; the guests log in UTC), minus ``offset``; None without a stamp.

    >>> round(stamp("Nov 30 05:43:41.011 node2 x", 2026) - stamp("Nov 30 05:43:40.000 node2 y", 2026), 3)
    1.011
    """
    m = _STAMP.match(line)
    if m is None:
        return None
    try:
        t = calendar.timegm(time.strptime(f"{year} {m['mon']} {m['day']} {m['hms']}", "%Y %b %d %H:%M:%S"))
    except ValueError:
        return None
    return round(t + float(m["frac"] or 0.0) - offset, 6)


def milestones(node: str, lines: Iterable[str], *, year: int, offset: float = 0.0,
               since: float | None = None) -> list[Milestone]:
    """The takeover and rejoin steps in one node's logs, from ``since`` on."""
    out: list[Milestone] = []
    for line in lines:
        for rule, what in _RULES:
            m = rule.search(line)
            if m is None:
                continue
            t = stamp(line, year, offset)
            if t is None or (since is not None and t < since):
                break
            out.append(Milestone(t, node, what.format(node=node, **{k: v.strip() for k, v in m.groupdict().items()})))
            break
    return out


def merged(per_node: Iterable[list[Milestone]]) -> list[Milestone]:
    """Every node's milestones in time order; a step several nodes logged (a membership, a fence) once."""
    out: list[Milestone] = []
    shown: dict[str, float] = {}
    for m in sorted((m for node in per_node for m in node), key=lambda m: m.wall):
        if not m.what.startswith(("initiating", "start of", "stop of", "monitor of", "probe of")) \
                and m.what in shown and m.wall - shown[m.what] < 5.0:
            continue
        shown[m.what] = m.wall
        out.append(m)
    return out
