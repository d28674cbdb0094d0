"""The cluster poller: turns what the cluster driver reports into timeline events, as they happen.

A background thread polls `crm_mon` (through the driver) a few times a second and records
only changes: nodes lost and joined, groups stopped, started and split, new failed actions,
and the moments the cluster stops and starts being fully redundant. It also tails the
notification log and the fence broker's events. It reads; it never steers the cluster.
"""

from __future__ import annotations

import threading
import time
from harness.drivers.pacemaker import PacemakerDriver
from harness.drivers.state import ClusterState
from harness.timeline import (CLUSTER_DEGRADED, CLUSTER_FAILED_ACTION, CLUSTER_GROUP_SPLIT, CLUSTER_GROUP_STARTED,
                              CLUSTER_GROUP_STOPPED, CLUSTER_NODE_JOINED, CLUSTER_NODE_LOST, CLUSTER_REDUNDANT,
                              CLUSTER_STATE, FAULT_HEALED, Timeline)
from harness.notifications import JsonlTail


def degraded_reason(driver: PacemakerDriver, s: ClusterState, adapters_down: list[str]) -> str | None:
    """Why the cluster is not fully redundant (None when it is): the recovery definition of DESIGN.md."""
    topo = driver.topology
    missing = [n for n in topo.node_names if n not in s.online]
    if missing:
        return f"nodes not online: {', '.join(missing)}"
    if adapters_down:
        return f"adapters down: {', '.join(adapters_down)}"
    if s.failed_actions:
        return f"failed action: {s.failed_actions[0]}"
    for g in topo.groups:
        node = s.group_node(g.name)
        if node is None:
            return f"group {g.name} not started"
        if g.policy == "cascading" and node != driver.expected_node(g.name, s):
            return f"group {g.name} on {node}, not on {driver.expected_node(g.name, s)}"
    return None


class ClusterPoller:
    def __init__(self, driver: PacemakerDriver, timeline: Timeline, *, interval: float = 0.25,
                 tails: list[JsonlTail] | None = None) -> None:
        self.driver = driver
        self.timeline = timeline
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: ClusterState | None = None
        self._redundant: bool | None = None
        self._why: str | None = None
        self._failed_seen: set[str] = set()
        self._heals_seen = 0
        self.errors = 0
        self._tails = tails or []  # notification and fence logs, positioned where this recording starts

    def start(self) -> ClusterPoller:
        self._thread = threading.Thread(target=self._run, name="cluster-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self.poll_once()  # the final state, so the end of the recording is never stale

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.poll_once()
            except Exception:  # a poll failing is data (counted), not a reason to stop recording
                self.errors += 1
                self.timeline.dropped += 1
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def poll_once(self) -> None:
        for tail in self._tails:
            for ev in tail.poll():
                self.timeline.add(ev.kind, ev.node, mono=ev.mono, wall=ev.wall, data=ev.data)
        s = self.driver.state()
        if s is None:
            return
        self._diff(self._last, s)
        self._last = s
        heals = len(self.timeline.of(FAULT_HEALED))
        if heals != self._heals_seen:  # after a heal, redundancy must be re-established to count
            self._heals_seen = heals
            self._redundant = None
        why = degraded_reason(self.driver, s, self._adapters_down())
        if why is None and self._redundant is not True:
            self.timeline.add(CLUSTER_REDUNDANT, s.seen_from)
        elif why is not None and (self._redundant is not False or why != self._why):
            # every new reason is recorded: the last one says what kept the cluster from recovering
            self.timeline.add(CLUSTER_DEGRADED, s.seen_from, why=why)
        self._redundant = why is None
        self._why = why

    def _adapters_down(self) -> list[str]:
        links = getattr(self.driver.testbed, "adapter_states", None)
        if links is None:
            return []
        return [f"{node}/{net}" for (node, net), state in links().items()
                if state != "up" and self.driver.testbed.running(node)]

    def _diff(self, old: ClusterState | None, new: ClusterState) -> None:
        tl = self.timeline
        if old is None or old.summary() != new.summary():
            tl.add(CLUSTER_STATE, new.seen_from, summary=new.summary())
        before = set(old.online) if old else set(self.driver.topology.node_names)
        for n in sorted(before - set(new.online)):
            tl.add(CLUSTER_NODE_LOST, n, seen_from=new.seen_from)
        for n in sorted(set(new.online) - before):
            tl.add(CLUSTER_NODE_JOINED, n, seen_from=new.seen_from)
        for name, g in new.groups.items():
            was = old.groups.get(name) if old else None
            if g.node is not None and (was is None or was.node != g.node):
                tl.add(CLUSTER_GROUP_STARTED, g.node, group=name)
            elif g.node is None and was is not None and was.node is not None:
                tl.add(CLUSTER_GROUP_STOPPED, was.node, group=name, now=list(g.nodes))
            if len(g.nodes) > 1 and (was is None or len(was.nodes) <= 1):
                tl.add(CLUSTER_GROUP_SPLIT, None, group=name, nodes=list(g.nodes))
        for f in new.failed_actions:
            key = str(f)
            if key not in self._failed_seen:
                self._failed_seen.add(key)
                tl.add(CLUSTER_FAILED_ACTION, f.node, resource=f.resource, task=f.task, rc=f.exitcode,
                       reason=f.exitreason)
        if not new.failed_actions:
            self._failed_seen.clear()
