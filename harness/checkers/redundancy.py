"""Recovery (reintegration): heal → the cluster is fully redundant again, and stays so, within max_recovery_s."""

from __future__ import annotations

from dataclasses import dataclass

from harness.checkers.base import POLLER, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import CLUSTER_DEGRADED, CLUSTER_REDUNDANT, FAULT_INJECTED, Event

NAME = "redundancy_restored"


@dataclass(frozen=True)
class Lapse:
    """Redundant from ``since`` (a REDUNDANT event) until ``lost`` (the DEGRADED event that ended it)."""

    since: Event
    lost: Event

    @property
    def why(self) -> str:
        return str(self.lost.data.get("why") or "degraded")


def _walk(events: list[Event]) -> tuple[Event | None, list[Lapse]]:
    """(the REDUNDANT that began the final redundant stretch, or None if it ends degraded; the lapses)."""
    since: Event | None = None
    lapses: list[Lapse] = []
    for e in events:
        if e.kind == CLUSTER_REDUNDANT:
            since = since or e
        else:
            if since is not None:
                lapses.append(Lapse(since, e))
            since = None
    return since, lapses


def check_redundancy_restored(ctx: Context) -> Verdict:
    """Last FAULT_HEALED → the start of the redundant stretch that lasts to the end, vs max_recovery_s.

    The last heal, because a cluster cannot be redundant while any part of the fault is still on.
    A REDUNDANT event from before the heal does not count: redundancy has to be re-established.
    Redundancy is restored only when it *stays*: a REDUNDANT followed by a DEGRADED before the
    recording ends (with no new fault in between) is a cluster still settling — it lost
    redundancy again without being hurt — so the time counts to the REDUNDANT that begins the
    final stretch, and the flaps are named. A cluster that is degraded again when the recording
    ends (or when the next fault is injected) never recovered: invalid, naming when it was
    briefly redundant and what it lost. Lost cluster polls above their limit make the verdict
    "unknown": a hole may hide a lapse or the recovery itself.
    """
    limit = ctx.limit("max_recovery_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to recover from")
    if ctx.healed is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s",
                       f"{ctx.fault_desc} injected at {ctx.rel(ctx.t0)} was never healed in the recording")
    return ctx.vouch(_judge(ctx, limit, ctx.healed), POLLER)


def _judge(ctx: Context, limit: float, heal: float) -> Verdict:
    nxt = ctx.of(FAULT_INJECTED, after=heal)
    until = nxt[0].mono if nxt else None  # a new fault: what follows is that fault's recovery
    events = [e for e in ctx.of(CLUSTER_REDUNDANT, CLUSTER_DEGRADED, after=heal) if until is None or e.mono < until]
    since, lapses = _walk(events)
    end = until if until is not None else ctx.end
    ends = (f" (the next fault at {ctx.rel(until)})" if until is not None else
            f" (recording ends at {ctx.rel(end)})" if end is not None else "")
    if since is None:
        if lapses:
            last = lapses[-1]
            return Verdict(NAME, False, None, limit, "s",
                           f"the cluster did not stay fully redundant after the heal at {ctx.rel(heal)}: redundant "
                           f"at {ctx.rel(last.since.mono)}, then lost it at {ctx.rel(last.lost.mono)} ({last.why})"
                           f"{_more(ctx, lapses[:-1])} and was not redundant again{ends}")
        why = [e for e in ctx.of(CLUSTER_DEGRADED) if e.data.get("why") and (until is None or e.mono < until)]
        missing = f"; still missing: {why[-1].data['why']}" if why else ""
        return Verdict(NAME, False, None, limit, "s",
                       f"the cluster never became fully redundant again after the heal at {ctx.rel(heal)}{ends}"
                       f"{missing}")
    took = since.mono - heal
    ok = took <= limit
    settled = " and stayed so" + (f" to the end{ends}" if ends else "")
    flaps = ""
    if lapses:
        first = lapses[0]
        flaps = (f"; before that it was redundant at {ctx.rel(first.since.mono)} but lost it again at "
                 f"{ctx.rel(first.lost.mono)} ({first.why}){_more(ctx, lapses[1:])}")
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"redundancy restored {fmt_s(took)} s after the heal (limit {fmt_s(limit)} s): healed at "
                   f"{ctx.rel(heal)}, fully redundant at {ctx.rel(since.mono)}{settled}{flaps}")


def _more(ctx: Context, lapses: list[Lapse]) -> str:
    if not lapses:
        return ""
    return f", and {len(lapses)} more lapse{'s' if len(lapses) > 1 else ''} (last at {ctx.rel(lapses[-1].lost.mono)})"
