"""Recovery (reintegration): heal → the cluster is fully redundant again, within max_recovery_s."""

from __future__ import annotations

from harness.checkers.base import UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import CLUSTER_DEGRADED, CLUSTER_REDUNDANT

NAME = "redundancy_restored"


def check_redundancy_restored(ctx: Context) -> Verdict:
    """Last FAULT_HEALED → first CLUSTER_REDUNDANT at or after it, vs max_recovery_s.

    The last heal, because a cluster cannot be redundant while any part of the fault is still on.
    A REDUNDANT event from before the heal does not count: redundancy has to be re-established.
    """
    limit = ctx.limit("max_recovery_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to recover from")
    if ctx.healed is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s",
                       f"{ctx.fault_desc} injected at {ctx.rel(ctx.t0)} was never healed in the recording")
    heal = ctx.healed
    back = ctx.of(CLUSTER_REDUNDANT, after=heal)
    if not back:
        until = f" (recording ends at {ctx.rel(ctx.end)})" if ctx.end is not None else ""
        why = [e for e in ctx.of(CLUSTER_DEGRADED) if e.data.get("why")]
        last = f"; still missing: {why[-1].data['why']}" if why else ""
        return Verdict(NAME, False, None, limit, "s",
                       f"the cluster never became fully redundant again after the heal at {ctx.rel(heal)}{until}{last}")
    took = back[0].mono - heal
    ok = took <= limit
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"redundancy restored {fmt_s(took)} s after the heal (limit {fmt_s(limit)} s): healed at "
                   f"{ctx.rel(heal)}, fully redundant at {ctx.rel(back[0].mono)}")
