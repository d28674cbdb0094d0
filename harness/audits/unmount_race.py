"""A Filesystem stop that found the mount busy with what was left of its own cancelled monitor.

Before it stops a resource, Pacemaker cancels the resource's recurring monitor; one in flight is
SIGKILLed ("Terminating in-flight op … early because it was cancelled"). The Filesystem monitor at
OCF_CHECK_LEVEL=20 writes a status file inside the mount with ``dd oflag=direct,sync``: a process
killed in the middle of that synchronous write still holds the mount until the write returns and it
exits. The stop, started 4 ms later, then meets ``umount: target is busy``, logs ``ERROR: Couldn't
unmount …; trying cleanup with TERM``, finds nothing to signal (the killed monitor has gone by now)
and unmounts a second later: the stop succeeds. First seen in an embedded run of app_hang-app
(2026-12-01, node1: cancel at 19:39:08.685, stop at 08.689, unmounted at 19:39:10), a case that had
passed in every earlier run; any stop of a group can meet it, whatever the fault.

That line is the agent's normal escalation, and an error line all the same: an application that
really held the mount would give the same first line. So it is explained only by the whole
signature, each from the node's own log: an in-flight monitor of the same resource cancelled at
most :data:`WINDOW_S` before the stop began, every busy line of that stop's agent (by PID) at TERM,
no process signalled ("No processes on … were signalled", never "sending signal"), "unmounted …
successfully", and the stop's result 0. Anything less stays a finding.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from harness.audits.pcmk_timing import stamp

WINDOW_S = 1.0
"""How long before a stop its monitor's cancel may be: the controller sends the stop right after the cancel
(4 ms in the run above); a second covers a loaded node without taking in an unrelated earlier cancel."""
_YEAR = 2001
"""The logs carry no year; only the distance between two stamps counts (a cancel in one year and its stop in
the next is not matched: a finding, never a wrong explanation)."""

_CANCELLED = re.compile(r"\(services_action_cancel\)\s+info: Terminating in-flight op (\S+)_monitor_\d+\[\d+\] "
                        r"early because it was cancelled")
_STOP_BEGINS = re.compile(r"\(log_execute\)\s+info: executing - rsc:(\S+) action:stop call_id:(\d+)")
_STOP_ENDS = re.compile(r"\(log_finished\)\s+info: (\S+) stop \(call (\d+), PID (\d+)\) exited with status (\d+)")
_AGENT = re.compile(r"\bFilesystem\((\S+)\)\[(\d+)\]:\s+(\w+): (.*)$")
_BUSY = re.compile(r"Couldn't unmount (\S+); trying cleanup with (TERM|KILL)$")


class _Line(Protocol):
    node: str
    line: str


@dataclass
class _Stop:
    """One Filesystem stop's agent, from its own lines (keyed by node, resource and the agent's PID)."""

    busy: list[str] = field(default_factory=list)  # the signal of each "Couldn't unmount" line
    nobody: bool = False
    signalled: bool = False
    unmounted: bool = False
    after_cancel: bool = False
    status: int | None = None

    @property
    def explained(self) -> bool:
        return (self.after_cancel and self.status == 0 and self.nobody and self.unmounted
                and not self.signalled and bool(self.busy) and set(self.busy) == {"TERM"})


class UnmountAfterCancel:
    """Reads a case's log lines once, then says which "Couldn't unmount" lines are this race."""

    def __init__(self, lines: Iterable[_Line]) -> None:
        self._stops: dict[tuple[str, str, str], _Stop] = {}
        cancelled: dict[tuple[str, str], float] = {}  # (node, resource) → time of day of the cancel
        after: set[tuple[str, str]] = set()  # (node, call id) of stops that began right after a cancel
        for ln in lines:
            if m := _AGENT.search(ln.line):
                self._see_agent(ln.node, *m.groups())
            elif m := _CANCELLED.search(ln.line):
                if (t := stamp(ln.line, _YEAR)) is not None:
                    cancelled[(ln.node, m[1])] = t
            elif m := _STOP_BEGINS.search(ln.line):
                t, was = stamp(ln.line, _YEAR), cancelled.pop((ln.node, m[1]), None)
                if t is not None and was is not None and 0 <= t - was <= WINDOW_S:
                    after.add((ln.node, m[2]))
            elif m := _STOP_ENDS.search(ln.line):
                rsc, call, pid, status = m.groups()
                stop = self._stops.setdefault((ln.node, rsc, pid), _Stop())
                stop.status, stop.after_cancel = int(status), (ln.node, call) in after

    def _see_agent(self, node: str, rsc: str, pid: str, level: str, text: str) -> None:
        stop = self._stops.setdefault((node, rsc, pid), _Stop())
        if level == "ERROR" and (b := _BUSY.match(text)):
            stop.busy.append(b[2])
        elif text.startswith("No processes on ") and " were signalled" in text:
            stop.nobody = True
        elif text.startswith("sending signal "):
            stop.signalled = True
        elif text.startswith("unmounted ") and text.endswith(" successfully"):
            stop.unmounted = True

    def explain(self, ln: _Line) -> str | None:
        m = _AGENT.search(ln.line)
        if m is None or m[3] != "ERROR" or not _BUSY.match(m[4]):
            return None
        stop = self._stops.get((ln.node, m[1], m[2]))
        if stop is None or not stop.explained:
            return None
        return ("harmless: the stop began right after Pacemaker SIGKILLed its in-flight Filesystem monitor, whose "
                "synchronous status-file write still held the mount; the agent found no process to signal, "
                "unmounted a second later and the stop succeeded")

