"""The cluster poller: turns what the cluster driver reports into timeline events, as they happen.

A background thread polls `crm_mon` (through the driver) a few times a second and records
only changes: nodes lost and joined, groups stopped, started and split, new failed actions,
where each shared disk's filesystem is mounted, and the moments the cluster stops and starts
being fully redundant. It also tails the notification log and the fence broker's events. It
reads; it never steers the cluster.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from harness.drivers.base import Driver
from harness.drivers.state import ClusterState
from harness.notifications import JsonlTail
from harness.timeline import (CLUSTER_ATTRIBUTE, CLUSTER_DEGRADED, CLUSTER_FAILED_ACTION, CLUSTER_GROUP_SPLIT,
                              CLUSTER_GROUP_STARTED, CLUSTER_GROUP_STOPPED, CLUSTER_MOUNTS, CLUSTER_NODE_JOINED,
                              CLUSTER_NODE_LOST, CLUSTER_QUORUM, CLUSTER_REDUNDANT, CLUSTER_STATE, FAULT_HEALED,
                              FAULT_INJECTED, POLLER_SLOW, Timeline)


def degraded_reason(driver: Driver, s: ClusterState, adapters_down: list[str] | None = None) -> str | None:
    """Why the snapshot is not fully redundant (None when it looks so): the recovery definition of DESIGN.md.

    Every declared node online (a powered-off one is missing redundancy), adapters up, no failed
    action, groups where their policy puts them, nothing in flight: ``Driver.snapshot_gap``.
    Whether the cluster is also *settled* (nothing pending beyond the snapshot) is ``driver.busy``.
    ``adapters_down`` is accepted for old callers; the driver reads the links itself.
    """
    return driver.snapshot_gap(s, placement=True, every_node=True)


def shared_mounts(testbed: object) -> dict[str, list[str]] | None:
    """Where each shared disk's filesystem is mounted (`Testbed.mounts`); None when the testbed cannot tell."""
    mounts = getattr(testbed, "mounts", None)
    return mounts() if callable(mounts) else None


def confirmed_mounts(read: Callable[[], dict[str, list[str]] | None]) -> dict[str, list[str]] | None:
    """``read()`` twice; a disk counts on a node only if both reads saw it there.

    One read visits the nodes one after the other, so a handover between two visits (unmounted
    on node1 just after node1 was read, mounted on node2 just before node2 is read) would look
    like a double mount. A real double mount is in both reads; a handover is not.
    """
    first = read()
    if first is None or all(len(v) <= 1 for v in first.values()):
        return first
    second = read()
    if second is None:
        return first
    return {disk: [n for n in nodes if n in second.get(disk, [])] for disk, nodes in first.items()}


SLOW_POLL_S = 2.0
"""A poll that takes longer than this is recorded (`poller.slow`, with where the time went)."""


class ClusterPoller:
    """Polls the cluster every ``interval`` seconds and records what changed (see the module doc).

    CLUSTER_REDUNDANT is recorded only for a *settled* cluster, with the driver's definition
    (``Driver.unsettled``: the snapshot whole and nothing pending), and only once it
    has stayed settled until ``driver.quiet_s`` after the last fault change (a heal in the
    timeline or the fault journal): results in flight across a heal land within that time. The
    event is stamped with the first poll of that settled stretch (when redundancy really came
    back) and carries ``confirmed`` (when the poller could tell). Counts: ``errors`` (polls
    that observed nothing: an exception, or no node answered crm_mon).
    """

    def __init__(self, driver: Driver, timeline: Timeline, *, interval: float = 0.25,
                 tails: list[JsonlTail] | None = None, mounts: bool = True) -> None:
        self.driver = driver
        self.timeline = timeline
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last: ClusterState | None = None
        self._redundant: bool | None = None
        self._stretch: float | None = None  # first poll of the current settled stretch (not yet confirmed)
        self._why: str | None = None
        self._failed_seen: set[str] = set()
        self._changes_seen = 0
        self._change_at: float | None = None  # the last fault injected or healed, as the timeline has it
        self._mounts: dict[str, list[str]] | None = None
        self._read_mounts = mounts
        self.errors = 0
        self.last_error: str | None = None
        self._tails = tails or []  # notification and fence logs, positioned where this recording starts

    @property
    def bad_notification_lines(self) -> int:
        return sum(t.bad_lines for t in self._tails)

    def start(self) -> ClusterPoller:
        self._thread = threading.Thread(target=self._run, name="cluster-poller", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        try:
            self.poll_once()  # the final state, so the end of the recording is never stale
        except Exception as e:
            self._count_error(e)
        if self._redundant is not True and self._stretch is not None:
            # settled at the end, but not yet for long enough to tell: say so, rather than leave the
            # last degradation reason standing as if it still held
            self.timeline.add(CLUSTER_DEGRADED, None, why=f"settled since {self._stretch_desc()}, but the "
                              f"recording ended before {self.driver.quiet_s:g} s had passed since the last "
                              "fault change, so not confirmed")

    def _run(self) -> None:
        while not self._stop.is_set():
            t0 = time.monotonic()
            try:
                self.poll_once()
            except Exception as e:  # a poll failing is data (counted), not a reason to stop recording
                self._count_error(e)
            self._stop.wait(max(0.0, self.interval - (time.monotonic() - t0)))

    def _count_error(self, e: Exception) -> None:
        self.errors += 1
        self.timeline.dropped += 1
        self.last_error = f"{type(e).__name__}: {e}"

    def poll_once(self) -> None:
        t0 = time.monotonic()
        for tail in self._tails:
            for ev in tail.poll():
                self.timeline.add(ev.kind, ev.node, mono=ev.mono, wall=ev.wall, data=ev.data)
        t_tails = time.monotonic()
        self._poll_mounts()
        t_poll = time.monotonic()
        s = self.driver.state()
        took = time.monotonic() - t0
        if took > SLOW_POLL_S:  # the view went stale for that long: evidence for any late verdict
            self.timeline.add(POLLER_SLOW, None, took_s=round(took, 3), tails_s=round(t_tails - t0, 3),
                              mounts_s=round(t_poll - t_tails, 3), state_s=round(time.monotonic() - t_poll, 3))
        if s is None:  # blind: nothing observed (counted, so a verdict can say its data has a hole)
            self.errors += 1
            self.last_error = "no node answered crm_mon"
            return
        self._diff(self._last, s)
        self._last = s
        self._judge_redundancy(s, t_poll)

    def _judge_redundancy(self, s: ClusterState, t_poll: float) -> None:
        heals = self.timeline.of(FAULT_HEALED)
        if len(heals) != self._changes_seen:  # after a heal, redundancy must be re-established to count
            self._changes_seen = len(heals)
            self._redundant = None
            self._stretch = None
        changes = heals + self.timeline.of(FAULT_INJECTED)
        self._change_at = max((e.mono for e in changes), default=None)
        if self._change_at is not None and t_poll < self._change_at:
            # the snapshot was asked for before the last fault change (a heal landed while crm_mon ran):
            # it says nothing about the cluster after it, and must not start a settled stretch before it
            return
        why = degraded_reason(self.driver, s)
        if why is None and self._redundant is not True:
            why = self.driver.busy(s)  # only while not (yet) redundant: one more query per poll
        if why is None:
            if self._redundant is True:
                return
            if self._stretch is None:
                self._stretch = t_poll
            since = max(filter(None, (self._change_at, self.driver.fault_changed_at())), default=None)
            if self.driver.quiet_left(since) > 0:
                return  # settled, but results may still be in flight: confirm later
            self.timeline.add(CLUSTER_REDUNDANT, s.seen_from, mono=self._stretch,
                              wall=time.time() - (time.monotonic() - self._stretch),
                              confirmed=time.monotonic(), quiet_s=self.driver.quiet_s)
            self._redundant, self._why, self._stretch = True, None, None
            return
        self._stretch = None
        if self._redundant is not False or why != self._why:
            # every new reason is recorded: the last one says what kept the cluster from recovering
            self.timeline.add(CLUSTER_DEGRADED, s.seen_from, why=why)
        self._redundant = False
        self._why = why

    def _stretch_desc(self) -> str:
        assert self._stretch is not None
        return f"{time.monotonic() - self._stretch:.1f} s"

    def _poll_mounts(self) -> None:
        if not self._read_mounts:
            return
        mounts = confirmed_mounts(lambda: shared_mounts(self.driver.testbed))
        if mounts is None:
            self._read_mounts = False  # this testbed cannot tell; the split-brain verdict says so
            self.timeline.add(POLLER_SLOW, None, mounts="unreadable: no more mount reads in this recording")
            return
        if mounts != self._mounts:
            self._mounts = mounts
            self.timeline.add(CLUSTER_MOUNTS, None, mounts={d: list(n) for d, n in mounts.items()})

    def _diff(self, old: ClusterState | None, new: ClusterState) -> None:
        tl = self.timeline
        if old is None or old.summary() != new.summary():
            tl.add(CLUSTER_STATE, new.seen_from, summary=new.summary())
        if old is None or old.quorate != new.quorate:  # whole-cluster checks: nothing may run without quorum
            tl.add(CLUSTER_QUORUM, new.seen_from, quorate=new.quorate,
                   running=sorted(n for n, g in new.groups.items() if g.node is not None))
        before = set(old.online) if old else set(self.driver.topology.node_names)
        for n in sorted(before - set(new.online)):
            tl.add(CLUSTER_NODE_LOST, n, seen_from=new.seen_from)
        for n in sorted(set(new.online) - before):
            tl.add(CLUSTER_NODE_JOINED, n, seen_from=new.seen_from)
        for name, g in new.groups.items():
            was = old.groups.get(name) if old else None
            if g.node is not None and (was is None or was.node != g.node):
                tl.add(CLUSTER_GROUP_STARTED, g.node, group=name, quorate=new.quorate)
            elif g.node is None and was is not None and was.node is not None:
                tl.add(CLUSTER_GROUP_STOPPED, was.node, group=name, now=list(g.nodes),
                       failed=[r.id for r in g.resources if r.failed])
            if len(g.nodes) > 1 and (was is None or len(was.nodes) <= 1):
                tl.add(CLUSTER_GROUP_SPLIT, None, group=name, nodes=list(g.nodes))
        if old is not None:  # attributes: changes only (the first snapshot is the baseline)
            for node in sorted(set(old.attributes) | set(new.attributes)):
                had, has = old.attributes.get(node, {}), new.attributes.get(node, {})
                for name in sorted(set(had) | set(has)):
                    if had.get(name) != has.get(name):
                        tl.add(CLUSTER_ATTRIBUTE, node, name=name, value=has.get(name), was=had.get(name),
                               seen_from=new.seen_from)
        for f in new.failed_actions:
            key = str(f)
            if key not in self._failed_seen:
                self._failed_seen.add(key)
                tl.add(CLUSTER_FAILED_ACTION, f.node, resource=f.resource, task=f.task, rc=f.exitcode,
                       reason=f.exitreason)
        if not new.failed_actions:
            self._failed_seen.clear()
