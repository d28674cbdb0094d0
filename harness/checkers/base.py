"""Verdicts, the context every checker reads, and the safe runner: checkers compose, an error is "unknown"."""

from __future__ import annotations

import re
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypeAlias

from harness.timeline import (CLUSTER_GROUP_STARTED, FAULT_HEALED, FAULT_INJECTED, Event, ProbeSample, Request,
                              Timeline)
from harness.topology import Sla, Topology

Valid: TypeAlias = bool | Literal["unknown"]
UNKNOWN: Literal["unknown"] = "unknown"
NOT_JUDGED = "not judged"
_RANK: dict[Valid, int] = {True: 0, UNKNOWN: 1, False: 2}


@dataclass(frozen=True)
class Verdict:
    """One measurement against its limit; `explanation` is the line an engineer reads in the report."""

    name: str
    valid: Valid
    measured: float | int | str | None
    limit: float | int | str | None
    unit: str
    explanation: str
    judged: bool = True
    """False: nothing to judge in this run (e.g. lost writes with --no-load). Then ``valid`` is True,
    so the case does not fail on it and ``merge_valid`` is unchanged, and ``status`` is "not judged"
    so a report says so instead of "pass"."""

    @property
    def status(self) -> str:
        if not self.judged:
            return NOT_JUDGED
        return "pass" if self.valid is True else "fail" if self.valid is False else UNKNOWN

    def __str__(self) -> str:
        return f"{self.name}: {self.status}: {self.explanation}"


def merge_valid(items: Iterable[Verdict | Valid]) -> Valid:
    """Overall validity: false beats unknown beats true (Jepsen's merge-valid); nothing to merge is true."""
    worst: Valid = True
    for item in items:
        v = item.valid if isinstance(item, Verdict) else item
        if _RANK[v] > _RANK[worst]:
            worst = v
    return worst


def fmt_s(seconds: float) -> str:
    """Seconds for a report line: at most two decimals, no trailing zeros (4.2, 15, 0.35)."""
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


# -- what the recorders lost ---------------------------------------------------------------------
# The runner fills timeline.meta["counts"]; a checker whose source lost more than its limit says
# "unknown" instead of judging a recording with holes in it (Context.vouch).

POLLER = ("poller_errors", "timeline_dropped")
"""The cluster poller's losses: polls that observed nothing, events that could not be added."""
NOTIFY = ("bad_notification_lines",)
"""Alert-log lines that could not be read: one of them may be the very notification being judged."""
PROBE = ("probe_skipped",)
"""Probe send slots skipped (the probe fell behind its schedule): gaps in the client's view."""

COUNT_LIMITS: dict[str, float] = {
    "poller_errors": 4,           # ~1 s without a cluster observation at the poller's 4 Hz
    "timeline_dropped": 4,
    "bad_notification_lines": 0,  # any: the unreadable line may be the notification
    "probe_skipped": 100,         # 1 s of slots at 100 Hz, or PROBE_SKIPPED_SHARE of all slots if more
}
"""Default limits (inclusive) per count; an expectation ``max_<count>`` overrides one for a test."""
PROBE_SKIPPED_SHARE = 0.05
COUNT_ALIASES = {"dropped": "timeline_dropped", "bad_notifications": "bad_notification_lines",
                 "bad_lines": "bad_notification_lines"}
COUNT_WORDS = {"poller_errors": "cluster polls that observed nothing", "timeline_dropped": "timeline events dropped",
               "bad_notification_lines": "unreadable notification lines", "probe_skipped": "probe slots skipped"}


@dataclass(frozen=True)
class Context:
    """Everything a checker may read, built once per test from a live or a saved run; never a cluster.

    `expectation` carries what the test expects: expect_fallover (bool, default true), group,
    expected_node (the takeover node, or the node a group must stay on), fault_node, and optional
    limit overrides (max_detection_s, max_fallover_s, max_outage_s, max_recovery_s,
    max_notification_s, max_failed_requests, max_failed_share, split_brain_window_s), load (False
    when the run had no load, e.g. --no-load: lost_writes and failed_requests are then not judged),
    and limits on the recorders' losses (max_poller_errors, max_timeline_dropped,
    max_bad_notification_lines, max_probe_skipped; see COUNT_LIMITS).

    ``timeline.meta["counts"]`` carries what the recorders lost (poller_errors, timeline_dropped,
    bad_notification_lines, probe_skipped); see ``counts`` and ``vouch``.
    """

    timeline: Timeline
    requests: Sequence[Request] = ()
    topology: Topology | None = None
    fault_start: float | None = None
    expectation: Mapping[str, Any] = field(default_factory=dict)

    @cached_property
    def counts(self) -> dict[str, int]:
        """What the recorders lost, from timeline.meta["counts"] (aliases folded in) and timeline.dropped."""
        out: dict[str, int] = {}
        for raw, value in dict(self.timeline.meta.get("counts") or {}).items():
            key = str(COUNT_ALIASES.get(raw, raw))
            try:
                out[key] = max(out.get(key, 0), int(value))
            except (TypeError, ValueError):
                continue
        if self.timeline.dropped:
            out["timeline_dropped"] = max(out.get("timeline_dropped", 0), int(self.timeline.dropped))
        return out

    def count_limit(self, key: str) -> float:
        """The most of ``key`` a judged recording may have lost: expectation max_<key>, else COUNT_LIMITS."""
        if f"max_{key}" in self.expectation:
            return float(self.expectation[f"max_{key}"])
        limit = COUNT_LIMITS.get(key, 0)
        if key == "probe_skipped":  # relative to how long the probe ran
            limit = max(limit, PROBE_SKIPPED_SHARE * (len(self.samples) + self.counts.get(key, 0)))
        return limit

    def over_limit(self, keys: Iterable[str]) -> list[str]:
        """One phrase per count above its limit: "7 cluster polls that observed nothing (limit 4)"."""
        out = []
        for key in keys:
            n, limit = self.counts.get(key, 0), self.count_limit(key)
            if n > limit:
                out.append(f"{n} {COUNT_WORDS.get(key, key)} (limit {limit:g})")
        return out

    def vouch(self, verdict: Verdict, keys: Iterable[str], *, pass_holds: bool = False) -> Verdict:
        """The verdict, unless the recorders behind it lost more than their limits: then "unknown", with why.

        ``pass_holds``: the measurement can only come out later (never earlier) from lost
        observations — a time to the first sign of something — so a pass is still a pass (said
        in its explanation), while a fail may be an artefact of the holes and becomes "unknown".
        """
        if not verdict.judged:
            return verdict
        over = self.over_limit(keys)
        if not over:
            return verdict
        why = "; ".join(over)
        if verdict.valid is True and pass_holds:
            return replace(verdict, explanation=f"{verdict.explanation} (the recording has {why}; lost "
                                                f"observations could only have made this later, so the pass holds)")
        if verdict.valid == UNKNOWN:
            return replace(verdict, explanation=f"{verdict.explanation}; also, the recording has {why}")
        return replace(verdict, valid=UNKNOWN,
                       explanation=f"cannot be judged: the recording has {why}; as recorded: {verdict.explanation}")

    def not_judged(self, name: str, unit: str, why: str, limit: float | int | str | None = None) -> Verdict:
        """Nothing to judge in this run (valid, so the case does not fail on it, but marked not judged)."""
        return Verdict(name, True, None, limit, unit, f"not judged: {why}", judged=False)

    @cached_property
    def events(self) -> list[Event]:
        return self.timeline.sorted_events()

    @cached_property
    def samples(self) -> list[ProbeSample]:
        return sorted(self.timeline.probe, key=lambda p: p.mono)

    def of(self, *kinds: str, after: float = float("-inf")) -> list[Event]:
        return [e for e in self.events if e.kind in kinds and e.mono >= after]

    @cached_property
    def fault(self) -> Event | None:
        """The injection being judged: the FAULT_INJECTED event nearest to `fault_start` (else the first)."""
        faults = self.of(FAULT_INJECTED)
        if self.fault_start is None:
            return faults[0] if faults else None
        start = self.fault_start
        return min(faults, key=lambda e: abs(e.mono - start), default=None)

    @cached_property
    def planned(self) -> bool:
        """The injection is a planned operation (move, standby, rolling restart): nothing failed.

        From expectation "planned" if given, else the fault event's family.
        """
        if "planned" in self.expectation:
            return bool(self.expectation["planned"])
        return self.fault is not None and self.fault.data.get("family") == "planned"

    @cached_property
    def t0(self) -> float | None:
        """Fault start (mono); every "+x.xx s" in an explanation is relative to it."""
        if self.fault_start is not None:
            return self.fault_start
        return self.fault.mono if self.fault else None

    @cached_property
    def healed(self) -> float | None:
        """The last FAULT_HEALED after the fault: from then on the cluster may become redundant again."""
        heals = self.of(FAULT_HEALED, after=self.t0 if self.t0 is not None else float("-inf"))
        return heals[-1].mono if heals else None

    @cached_property
    def origin(self) -> float:
        if self.t0 is not None:
            return self.t0
        times = [e.mono for e in self.events[:1]] + [p.mono for p in self.samples[:1]] + \
            [r.mono for r in self.requests]
        return min(times, default=0.0)

    @cached_property
    def end(self) -> float | None:
        """The last moment anything was recorded: how far "never happened" was looked for."""
        times = [e.mono for e in self.events[-1:]] + [p.mono for p in self.samples[-1:]] + \
            [r.mono for r in self.requests]
        return max(times, default=None)

    def rel(self, t: float) -> str:
        return f"{t - self.origin:+.2f} s"

    @property
    def sla(self) -> Sla:
        return self.topology.sla if self.topology is not None else Sla()

    def limit(self, key: str, fallback: str | None = None) -> float:
        """A limit from the expectation (a test may tighten one), else the topology's SLA."""
        if key in self.expectation:
            return float(self.expectation[key])
        value = getattr(self.sla, key, None)
        if value is None and fallback is not None:
            return self.limit(fallback)
        if value is None:
            raise KeyError(f"no limit {key!r} in the expectation or the SLA")
        return float(value)

    @cached_property
    def group(self) -> str | None:
        if self.expectation.get("group"):
            return str(self.expectation["group"])
        if self.topology is not None and self.topology.groups:
            return self.topology.groups[0].name
        return None

    def is_group_resource(self, rsc: str | None) -> bool:
        """A resource of the judged group: the group itself or a member named `<group>-…` (clusterconf)."""
        g = self.group
        return bool(g and rsc and (rsc == g or rsc.startswith(g + "-")))

    @cached_property
    def fault_nodes(self) -> frozenset[str]:
        """Nodes the fault hit: expectation fault_node, else the fault event's node (or its data "nodes"),
        else its target label.

        Labels look like `node1-service` or `node2+node3` (faults.base.Target.label); a part counts
        only when the topology names it a node, since "service" may be a network.
        """
        raw: Any = self.expectation.get("fault_node")
        if raw is None and self.fault is not None:
            raw = self.fault.node or self.fault.data.get("nodes") or None
            if raw is None and self.topology is not None:
                raw = re.split(r"[+\-]", str(self.fault.data.get("target") or ""))
        names = [raw] if isinstance(raw, str) else list(raw or [])
        if self.topology is not None:
            names = [n for n in names if n in self.topology.node_names]
        return frozenset(str(n) for n in names)

    def on_fault_node(self, node: str | None) -> bool:
        """True for a fault node; when the fault has no node (unlocated), every node counts."""
        return not self.fault_nodes or node in self.fault_nodes

    @cached_property
    def fault_desc(self) -> str:
        if self.fault is None:
            return "fault"
        name = str(self.fault.data.get("fault") or "fault")
        first = self.of(FAULT_INJECTED)[0]
        if first is not self.fault:  # the case's trigger, after the fault that set the stage (app_start_fail)
            name = f"{name} after {first.data.get('fault') or 'fault'}"
        where = ",".join(sorted(self.fault_nodes)) or self.fault.data.get("target")
        return f"{name} on {where}" if where else name

    @cached_property
    def serving_node(self) -> str | None:
        """Where the group ran before the fault: its last start, else the last probe answer before it.

        Not the fault node: a test may well break a standby node, and a guess here would be a wrong verdict.
        """
        before = self.t0 if self.t0 is not None else float("inf")
        starts = [e for e in self.of(CLUSTER_GROUP_STARTED) if e.mono < before and e.node
                  and (self.group is None or e.data.get("group") == self.group)]
        if starts:
            return starts[-1].node
        answered = [p for p in self.samples if p.mono < before and p.ok and p.node]
        return answered[-1].node if answered else None


Checker: TypeAlias = Callable[[Context], Verdict]


def check_safe(checker: Callable[..., Verdict], *args: Any, name: str | None = None) -> Verdict:
    """Run one checker; an exception (or a non-Verdict) becomes valid="unknown", never a crash of the run."""
    label = name or getattr(checker, "__name__", repr(checker)).removeprefix("check_")
    try:
        verdict = checker(*args)
    except Exception as e:  # a checker bug or odd data must not hide the other verdicts
        frame = traceback.extract_tb(e.__traceback__)[-1] if e.__traceback__ else None
        where = f" at {Path(frame.filename).name}:{frame.lineno}" if frame else ""
        return Verdict(label, UNKNOWN, None, None, "", f"checker raised {type(e).__name__}: {e}{where}")
    if not isinstance(verdict, Verdict):
        return Verdict(label, UNKNOWN, None, None, "", f"checker returned {type(verdict).__name__}, not a Verdict")
    return verdict


def run_all(ctx: Context, checkers: Mapping[str, Checker]) -> dict[str, Verdict]:
    """Every checker over one context, in the registry's order, keyed by its registry name."""
    return {name: check_safe(checker, ctx, name=name) for name, checker in checkers.items()}
