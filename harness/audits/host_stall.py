"""A stall of the test machine, told apart from a stall of one node: "Corosync main process was not scheduled"
logged by two nodes at the same instant of the same monotonic clock.

corosync runs at real-time priority and stamps the warning with its monotonic clock in ms
(``(@1796204512712)``). Two nodes with their own kernels (a real cluster, VMs) have their own
monotonic clocks, seconds to days apart; the nodes of the embedded testbed and of the SSH lab share
the harness host's kernel, and only there do two nodes' stamps agree. When they do (and the wall
clock of both lines agrees too), every node's real-time corosync went unscheduled at once: the
shared machine stalled (whatever held it), not the cluster. Seen in `make
run` on the 2-core machine, 2026-12-02 09:41:52 (corosync_kill-node1): node2 1160 ms and node3
900 ms, both ``@1796204512712``; the cluster did everything right and the case failed its log
audit. One node's stall alone stays a finding (a warning sign: a little longer and its token expires).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Protocol

from harness.audits.pcmk_timing import stamp

SAME_INSTANT_MS = 250.0
"""How close two nodes' stamps must be, on both clocks, to be the same stall (they wake up together)."""

_STALL = re.compile(r"Corosync main process was not scheduled \(@(?P<mono>\d+)\) for (?P<ms>[\d.]+) ms")
_YEAR = 2000  # a leap year (a "Feb 29" line parses); only differences of wall-clock stamps are used


class _Line(Protocol):
    node: str
    line: str


class HostStalls:
    """Reads a case's log lines once, then says which corosync stall warnings were the shared machine's."""

    def __init__(self, lines: Iterable[_Line]) -> None:
        self._seen: list[tuple[str, float, float, float]] = []  # (node, monotonic ms, wall s, stalled ms)
        for ln in lines:
            if (m := _STALL.search(ln.line)) is not None and (wall := stamp(ln.line, _YEAR)) is not None:
                self._seen.append((ln.node, float(m["mono"]), wall, float(m["ms"])))

    def explain(self, ln: _Line) -> str | None:
        m = _STALL.search(ln.line)
        wall = stamp(ln.line, _YEAR) if m is not None else None
        if m is None or wall is None:
            return None
        mono = float(m["mono"])
        others = sorted({f"{n} ({ms:.0f} ms)" for n, t, w, ms in self._seen if n != ln.node
                         and abs(t - mono) <= SAME_INSTANT_MS and abs(w - wall) * 1000 <= SAME_INSTANT_MS})
        if not others:
            return None
        return (f"the test machine stalled, not the cluster: {', '.join(others)} logged the same stall at the "
                f"same instant of the same monotonic clock (@{m['mono']}): these nodes run on one machine, and its "
                "stall left every real-time corosync unscheduled at once")
