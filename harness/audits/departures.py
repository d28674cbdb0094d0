"""When the cluster's own logs say a node left, on the harness's clock: the detection that needs no poller.

The poller sees a node leave only when a `crm_mon` returns, and on a loaded emulated guest one
round took 9.8 s (pacemaker_kill-node1 on the VMs, 2026-12-01: node1 "lost" at the end of a
round that had begun before the kill, 9.63 s against a 10 s limit). The cluster knew long before:
the peers' controllers log the moment a node's controller leaves ("Node node1 is no longer a
peer") and the moment it leaves the membership ("Node node1 state is now lost"), to the
millisecond. Those lines, read after the case like every log line the audit reads, become
timeline events (``cluster.logged_loss``) that the detection checker counts beside the
poller's; a checker still never touches the cluster.

A node's log is stamped by its own clock, in its own time zone, without a year. Its offset is
measured as NTP does: the node prints its time in the log's format, the harness notes the
round trip, the best of three round trips wins, and half of it is the stamp's uncertainty
(kept with each event). A node that cannot be asked (powered off, not yet back) has its lines
left out: without an offset its stamps would be a guess.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from harness.audits.logs import LogLine
from harness.audits.pcmk_timing import stamp
from harness.errors import FalloverError
from harness.testbed.base import Testbed

_LOSS = re.compile(r"\((?:peer_update_callback|update_peer_state_iter)\)\s+\w+: Node (?P<node>\S+) "
                   r"(?P<what>is no longer a peer|state is now lost)")
"""The controller's loss of a peer's controller, and any daemon's loss of a member (Pacemaker 2.1)."""
_LEAVING = re.compile(r"\((?:handle_shutdown_request|update_attr_on_host)\)\s+\w+: (?:Creating shutdown request "
                      r"for (?P<node>\S+) |Setting shutdown\[(?P<attr_node>[^\]]+)\]: \(unset\) -> [1-9])")
"""A node asking to leave (a graceful stop): the DC creating its shutdown request, and each peer's attribute
manager learning of it. node_stop-node1 on the VMs (2026-12-01): the DC logged it 0.2 s after node1's pacemakerd
caught its SIGTERM (both clocks corrected), while the first alert to report the stop, the node's link attribute
deleted as its watcher stopped, came 7.5-10.1 s after the fault, against a 10 s limit."""
ASKED_TO_LEAVE = "asked to leave the cluster"

DATE = ["env", "LC_ALL=C", "date", "+%Y %b %d %H:%M:%S.%N"]
"""The node's time as its logs print it (syslog-style, local time zone), with the year they leave out."""


@dataclass(frozen=True)
class LogClock:
    """A node's log clock against the harness's: ``offset`` (node minus harness, s, time zone included),
    ``err`` (half the best round trip), ``year`` (the node's, for stamps that have none)."""

    offset: float
    err: float
    year: int


@dataclass(frozen=True)
class Departure:
    """A node's log saying ``node`` left, at ``wall`` on the harness's clock (± ``err``)."""

    wall: float
    node: str
    seen_from: str
    what: str
    line: str
    err: float


def log_clock(testbed: Testbed, node: str, tries: int = 3) -> LogClock | None:
    """The node's log clock, or None when the node cannot say (not running, no answer, odd output)."""
    best: LogClock | None = None
    for _ in range(tries):
        try:
            t0 = time.time()
            r = testbed.node(node).run(DATE, timeout=15, check=False)
            t1 = time.time()
        except (FalloverError, OSError):
            return best
        year, _, rest = r.stdout.strip().partition(" ")
        if not r.ok or not year.isdigit():
            return best
        at = stamp(rest + " ", int(year))
        if at is None:
            return best
        clock = LogClock(round(at - (t0 + t1) / 2, 6), round((t1 - t0) / 2, 6), int(year))
        if best is None or clock.err < best.err:
            best = clock
    return best


def departures(lines: Iterable[LogLine], clocks: Mapping[str, LogClock]) -> list[Departure]:
    """Every line saying a node left, stamped on the harness's clock; lines of a node without a clock are left out.

    >>> c = {"node3": LogClock(offset=-1.0, err=0.02, year=2026)}
    >>> line = ("Dec 01 04:27:49.544 node3 pacemaker-controld  [886] (peer_update_callback) \\tinfo: "
    ...         "Node node1 is no longer a peer | DC=true old=0x4000000 new=0000000")
    >>> d, = departures([LogLine("node3", "pacemaker.log", line)], c)
    >>> (d.node, d.seen_from, d.what, d.wall - stamp(line, 2026))
    ('node1', 'node3', 'is no longer a peer', 1.0)
    >>> departures([LogLine("node2", "pacemaker.log", line)], c)
    []
    """
    out = []
    for ln in lines:
        clock = clocks.get(ln.node)
        if clock is None:
            continue
        node, what = _departure(ln.line)
        if node is None or node == ln.node:
            continue  # a node's own departure in its own log is not its peers noticing
        at = stamp(ln.line, clock.year, clock.offset)
        if at is not None:
            out.append(Departure(at, node, ln.node, what, ln.line.strip(), clock.err))
    return out


def _departure(line: str) -> tuple[str | None, str]:
    """(the node the line says left or asks to, what it says), or (None, "").

    >>> _departure("(handle_shutdown_request) \tinfo: Creating shutdown request for node1 (state=S_IDLE)")
    ('node1', 'asked to leave the cluster')
    >>> _departure("(update_attr_on_host) \tnotice: Setting shutdown[node2]: (unset) -> 1796127600 | from node3")
    ('node2', 'asked to leave the cluster')
    >>> _departure("(update_attr_on_host) \tnotice: Setting shutdown[node2]: 1796127600 -> (unset) | from node3")
    (None, '')
    """
    m = _LOSS.search(line)
    if m is not None:
        return m["node"], m["what"]
    m = _LEAVING.search(line)
    if m is not None:
        return m["node"] or m["attr_node"], ASKED_TO_LEAVE
    return None, ""


def first_per_node(found: Iterable[Departure]) -> list[Departure]:
    """The first line of each burst per node (lines less than 1 s apart): detection needs the earliest, and a
    takeover's dozen lines (every daemon of every peer) should make one event, not a dozen.

    >>> d = [Departure(10.0, "node1", "node2", "state is now lost", "x", 0.1),
    ...      Departure(10.3, "node1", "node3", "state is now lost", "y", 0.1),
    ...      Departure(42.0, "node1", "node3", "state is now lost", "z", 0.1)]
    >>> [x.wall for x in first_per_node(d)]
    [10.0, 42.0]
    """
    out: list[Departure] = []
    last: dict[str, float] = {}
    for d in sorted(found, key=lambda d: d.wall):
        burst = d.node in last and d.wall - last[d.node] < 1.0
        last[d.node] = d.wall
        if not burst:
            out.append(d)
    return out
