"""The timeline: every event of a test from every source, in one order, saved as data.

Sources write events while a test runs (the fault journal, the cluster poller, the
notification log, the ARP watch, the probe, the load log); checkers only ever read a
saved timeline, so a run can be judged again offline. All sources run on this machine,
so `mono` (CLOCK_MONOTONIC, shared by every process and namespace here) orders them;
`wall` is for humans and for sources that only know wall time (alert agents).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Event kinds (source.kind). Checkers rely on these names.
FAULT_INJECTED = "fault.injected"        # data: fault, target, family, event
FAULT_HEALED = "fault.healed"
CLUSTER_NODE_LOST = "cluster.node_lost"  # node: a node left the membership (offline/unclean)
CLUSTER_LOGGED_LOSS = "cluster.logged_loss"  # node: a node that left, as a peer's own log stamped it
#                                               (harness/audits/departures); data: seen_from, what, line, clock_err_s
CLUSTER_NODE_JOINED = "cluster.node_joined"
CLUSTER_GROUP_STOPPED = "cluster.group_stopped"   # data: group, now (nodes), failed (members seen failed)
CLUSTER_GROUP_STARTED = "cluster.group_started"   # node: where; data: group
CLUSTER_GROUP_SPLIT = "cluster.group_split"       # data: group, nodes (active on >1 node)
CLUSTER_FAILED_ACTION = "cluster.failed_action"   # data: resource, task, node, rc
CLUSTER_QUORUM = "cluster.quorum"                 # node: seen from; data: quorate, running (groups started then)
CLUSTER_STATE = "cluster.state"                   # data: summary (every change the poller saw)
CLUSTER_PARTITIONED = "cluster.partitioned"       # data: views {node: [members]}
CLUSTER_REDUNDANT = "cluster.redundant"           # all nodes online, adapters up, no failed action, groups placed,
#                                                   and settled (nothing pending); mono: when that began;
#                                                   data: confirmed (mono when the poller could tell), quiet_s
CLUSTER_DEGRADED = "cluster.degraded"             # data: why (the first thing missing from redundancy)
CLUSTER_MOUNTS = "cluster.mounts"                 # data: mounts {disk: [nodes with its filesystem mounted]}
CLUSTER_ATTRIBUTE = "cluster.attribute"           # node; data: name, value, was (None: unset) — a node
#                                                   attribute changed in the CIB (link monitor, reachability)
NOTIFICATION = "notify.event"                     # node; data: the alert agent's fields
FENCED = "cluster.fenced"                         # node; data: action, outcome
ARP_GRATUITOUS = "arp.gratuitous"                 # data: ip, mac
ARP_REPLY = "arp.reply"                           # data: ip, mac
PROBE_DOWN = "probe.down"                         # first failed probe after a success
PROBE_UP = "probe.up"                             # first success after failures; node answering
PROBE_NODE_CHANGED = "probe.node_changed"         # data: from, to
POLLER_SLOW = "poller.slow"                       # data: took_s and its parts (tails_s, mounts_s, state_s), or mounts
TEST_MARK = "test.mark"                           # data: label (a test's own milestones)


def now() -> tuple[float, float]:
    return time.monotonic(), time.time()


@dataclass(frozen=True)
class Event:
    mono: float
    wall: float
    kind: str
    node: str | None = None
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return self.kind.split(".", 1)[0]


@dataclass(frozen=True)
class ProbeSample:
    """One probe request: sent at `mono`, `ok` when the service answered 200 within the timeout."""

    mono: float
    wall: float
    ok: bool
    latency_s: float
    node: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class Request:
    """One load request, as the locust profile logs it (JSONL, one object per line)."""

    mono: float
    wall: float
    kind: str  # "put" | "get" | "verify"
    ok: bool
    latency_s: float
    key: str | None = None
    value: str | None = None
    node: str | None = None
    status: int | None = None
    error: str | None = None


@dataclass
class Timeline:
    """Events + probe samples of one test; append from any thread, save once, load anywhere."""

    events: list[Event] = field(default_factory=list)
    probe: list[ProbeSample] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    dropped: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def add(self, kind: str, node: str | None = None, /, *, mono: float | None = None, wall: float | None = None,
            data: dict[str, Any] | None = None, **fields: Any) -> Event:
        """Append an event; ``data`` takes a source's own record whole (its keys may be any names)."""
        data = {**(data or {}), **fields}
        m, w = now()
        if mono is None and wall is not None:
            mono = m - (w - wall)  # a source that only knows wall time
        ev = Event(mono=m if mono is None else mono, wall=w if wall is None else wall, kind=kind, node=node,
                   data=data)
        with self._lock:
            self.events.append(ev)
        return ev

    def sorted_events(self) -> list[Event]:
        with self._lock:
            return sorted(self.events, key=lambda e: e.mono)

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.sorted_events() if e.kind == kind]

    def first(self, kind: str, after: float = float("-inf"), node: str | None = None) -> Event | None:
        return next((e for e in self.sorted_events()
                     if e.kind == kind and e.mono >= after and (node is None or e.node == node)), None)

    def to_dict(self) -> dict[str, Any]:
        return {"meta": self.meta, "dropped": self.dropped,
                "events": [asdict(e) for e in self.sorted_events()],
                "probe": [asdict(p) for p in sorted(self.probe, key=lambda p: p.mono)]}

    def save(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        tmp.replace(path)
        return path

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Timeline:
        return cls(events=[Event(**e) for e in d.get("events", [])],
                   probe=[ProbeSample(**p) for p in d.get("probe", [])],
                   meta=d.get("meta", {}), dropped=d.get("dropped", 0))

    @classmethod
    def load(cls, path: Path) -> Timeline:
        return cls.from_dict(json.loads(path.read_text()))


def load_requests(path: Path) -> list[Request]:
    """Read a load log; a torn last line (the load process was killed) is skipped, not fatal."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(Request(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return sorted(out, key=lambda r: r.mono)
