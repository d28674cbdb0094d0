"""The cluster's own reports as timeline events: the alert agent's notification log and the fence broker's log."""

# Both files are JSON lines with a `wall` timestamp and are appended to while a test runs,
# so they are tailed by byte offset: each poll returns only the events written since the
# last one, and a line still being written is left for the next poll. These sources know
# only wall time; `mono` is derived as Timeline.add(..., wall=...) does, from a (mono, wall)
# pair sampled at read time.

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.timeline import FENCED, NOTIFICATION, Event, now

if TYPE_CHECKING:
    from harness.testbed.base import Testbed

Clock = tuple[float, float]  # (mono, wall) sampled together
Parser = Callable[[dict[str, Any], Clock], Event]

# Pacemaker passes every alert field as a string; these are numbers to a checker (rc == 0).
INT_FIELDS = ("rc", "target_rc", "status", "interval", "exec_time", "nodeid", "node_sequence", "timestamp_epoch",
              "timestamp_usec")


MAX_AGENT_WAIT_S = 600.0
"""Longer between Pacemaker raising an alert and its agent running is no wait but a wrong stamp: not used."""


def raised_wall(rec: dict[str, Any]) -> float | None:
    """When Pacemaker raised the alert, on the clock of the line's `wall` (the harness's).

    The line's `wall` is when its agent ran (embedded testbed) or when it reached the harness (VMs, whose
    agent's own stamp is `guest_wall`). Pacemaker's stamp (`timestamp_epoch`, `timestamp_usec`) and the
    agent's are both on the node's clock, so the wait between them holds whatever that clock's offset is;
    it is taken off `wall`. On a busy TCG guest an alert waited 5-8 s for its agent (2026-11-30).

    >>> raised_wall({"wall": 100.0, "guest_wall": 57.0, "timestamp_epoch": 50, "timestamp_usec": 500000})
    93.5
    >>> raised_wall({"wall": 100.0}) is None
    True
    """
    try:
        stamp = float(rec["timestamp_epoch"]) + float(rec.get("timestamp_usec") or 0) / 1e6
        agent = float(rec.get("guest_wall", rec["wall"]))
        wall = float(rec["wall"])
    except (KeyError, TypeError, ValueError):
        return None
    waited = agent - stamp
    if -1.0 <= waited < 0:
        waited = 0.0  # the agent's stamp and Pacemaker's straddle a second boundary's rounding
    return wall - waited if 0 <= waited <= MAX_AGENT_WAIT_S else None


def _mono(wall: float, clock: Clock) -> float:
    m, w = clock
    return m - (w - wall)


def notification_event(rec: dict[str, Any], clock: Clock) -> Event:
    """One fallover-alert line -> NOTIFICATION; node = the node the alert is about, data = the other fields.

    data keeps the agent's field names: data["kind"] is the alert kind (node, resource,
    fencing, attribute), data["from"] the node whose agent wrote it.

    >>> e = notification_event({"wall": 100.0, "kind": "resource", "node": "node2", "rsc": "app-ip", "rc": "0"},
    ...                        (50.0, 110.0))
    >>> (e.kind, e.node, e.mono, e.data["rc"])
    ('notify.event', 'node2', 40.0, 0)
    """
    wall = float(rec["wall"])
    data = {k: v for k, v in rec.items() if k != "wall"}
    for k in INT_FIELDS:
        if isinstance(data.get(k), str):
            try:
                data[k] = int(data[k])
            except ValueError:
                pass
    node = data.get("node")
    return Event(_mono(wall, clock), wall, NOTIFICATION, str(node) if node else None, data)


def fence_event(rec: dict[str, Any], clock: Clock) -> Event:
    """One fence-events.jsonl line -> FENCED at the time the broker got the request; data: action, outcome, done."""
    wall = float(rec["wall"])
    data = {k: v for k, v in rec.items() if k not in ("wall", "node")}
    return Event(_mono(wall, clock), wall, FENCED, rec["node"], data)


class JsonlTail:
    """Incremental reader of a JSONL file that others append to; `offset` says how far it has read."""

    def __init__(self, path: Path, parse: Parser, offset: int = 0) -> None:
        self.path, self.parse, self.offset = path, parse, offset
        self.bad = 0  # unparsable complete lines: counted, never silently dropped

    @property
    def bad_lines(self) -> int:
        """Complete lines that could not be read as an event (the runner reports them as bad_notification_lines)."""
        return self.bad

    def poll(self, clock: Clock | None = None) -> list[Event]:
        """Events of the complete lines written since the last poll (none if the file does not exist yet)."""
        try:
            with open(self.path, "rb") as f:
                size = f.seek(0, 2)
                if size < self.offset:  # truncated or replaced (a new testbed): start over
                    self.offset = 0
                f.seek(self.offset)
                chunk = f.read()
        except FileNotFoundError:
            return []
        end = chunk.rfind(b"\n") + 1
        self.offset += end
        clock = clock or now()
        events = []
        for line in chunk[:end].splitlines():
            if not line.strip():
                continue
            try:
                events.append(self.parse(json.loads(line), clock))
            except (ValueError, KeyError, TypeError):
                self.bad += 1
        return events


class NotificationTail(JsonlTail):
    def __init__(self, path: Path, offset: int = 0) -> None:
        super().__init__(path, notification_event, offset)


class FenceTail(JsonlTail):
    def __init__(self, path: Path, offset: int = 0) -> None:
        super().__init__(path, fence_event, offset)


def testbed_tails(testbed: Testbed, *, from_end: bool = True) -> list[JsonlTail]:
    """Tails of the testbed's notification and fence logs; from_end skips what earlier tests wrote."""
    logs = testbed.event_logs()
    paths: list[tuple[Callable[[Path, int], JsonlTail], Path]] = [(NotificationTail, logs["notifications"]), (FenceTail, logs["fences"])]
    tails: list[JsonlTail] = []
    for cls, path in paths:
        tails.append(cls(path, _end_of_last_line(path) if from_end else 0))
    return tails


def _end_of_last_line(path: Path) -> int:
    """Offset just past the last complete line, so a tail never starts inside a half-written one."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    return data.rfind(b"\n") + 1


def read_notifications(path: Path) -> list[Event]:
    return NotificationTail(path).poll()


def read_fences(path: Path) -> list[Event]:
    return FenceTail(path).poll()
