"""Verdicts of whole-cluster operations: the group starts once, on the right node, never without quorum, and
how long clients wait for it (`starts`); a reattach leaves the application's processes alone (`untouched`).

Both read the marks the operation left (harness/faults/whole.py) and the poller's group and quorum
events; for any other case they are "not judged".
"""

from __future__ import annotations

from harness.checkers.base import POLLER, PROBE, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import (
    CLUSTER_GROUP_STARTED,
    CLUSTER_GROUP_STOPPED,
    CLUSTER_QUORUM,
    TEST_MARK,
    Event,
)

START, QUORATE = "cluster start", "cluster start with quorum"  # harness.faults.whole's marks (checkers load no faults)


def _mark(ctx: Context, label: str) -> Event | None:
    return next((e for e in ctx.of(TEST_MARK) if e.data.get("label") == label), None)


def check_starts(ctx: Context) -> Verdict:
    """Exactly one start of the group after the cluster start, on its first node, with quorum; never running
    without quorum for longer than the detection SLA; time to service (the first answer after the start of the
    node that makes a majority) within max_recovery_s."""
    if not ctx.expectation.get("whole_cluster"):
        return ctx.not_judged("starts", "s", "not a whole-cluster operation")
    return ctx.vouch(ctx.vouch(_starts(ctx), POLLER), PROBE)


def _starts(ctx: Context) -> Verdict:
    name, group = "starts", ctx.group
    home = ctx.expectation.get("home")
    start = _mark(ctx, START)
    if start is None or group is None:
        return Verdict(name, UNKNOWN, None, None, "", "the operation left no 'cluster start' mark: nothing to measure")
    problems = []
    starts = [e for e in ctx.of(CLUSTER_GROUP_STARTED, after=start.mono) if e.data.get("group") == group]
    if len(starts) != 1:
        where = ", ".join(f"{e.node} at {ctx.rel(e.mono)}" for e in starts) or "never"
        problems.append(f"{group} started {len(starts)} times after the cluster start ({where}), not once")
    if starts and home and starts[0].node != home:
        problems.append(f"{group} first started on {starts[0].node}, not on {home}")
    for e in ctx.of(CLUSTER_GROUP_STARTED, after=ctx.t0 or float("-inf")):
        if e.data.get("group") == group and e.data.get("quorate") is False:
            problems.append(f"{group} started on {e.node} at {ctx.rel(e.mono)} in a partition without quorum")
    problems += _ran_without_quorum(ctx, group)
    limit = ctx.limit("max_recovery_s")
    quorate = _mark(ctx, QUORATE) or start  # before a majority runs, the group must not: clients wait from there
    answered = next((p for p in ctx.samples if p.ok and p.mono >= quorate.mono), None)
    measured = round(answered.mono - quorate.mono, 3) if answered else None
    if answered is None:
        problems.append("the service never answered after the cluster start")
    elif measured is not None and measured > limit:
        problems.append(f"time to service {fmt_s(measured)} s exceeds {fmt_s(limit)} s")
    served = f"time to service {fmt_s(measured)} s from {quorate.data.get('label')} at {ctx.rel(quorate.mono)} " \
        f"(limit {fmt_s(limit)} s)" if measured is not None else ""
    if problems:
        return Verdict(name, False, measured, limit, "s", "; ".join(problems + ([served] if served else [])))
    return Verdict(name, True, measured, limit, "s",
                   f"{group} started once, on {starts[0].node} at {ctx.rel(starts[0].mono)}, with quorum; never ran "
                   f"without it; {served}")


def _ran_without_quorum(ctx: Context, group: str) -> list[str]:
    """Quorum lost with the group running: it must stop within the detection SLA (no-quorum-policy)."""
    out = []
    grace = ctx.limit("max_detection_s")
    for lost in ctx.of(CLUSTER_QUORUM, after=ctx.t0 or float("-inf")):
        if lost.data.get("quorate") is not False or group not in (lost.data.get("running") or []):
            continue
        stop = next((e for e in ctx.of(CLUSTER_GROUP_STOPPED, after=lost.mono) if e.data.get("group") == group), None)
        back = next((e for e in ctx.of(CLUSTER_QUORUM, after=lost.mono) if e.data.get("quorate") is True), None)
        ended = min((e.mono for e in (stop, back) if e is not None), default=None)
        if ended is None or ended - lost.mono > grace:
            how = f"for {fmt_s(ended - lost.mono)} s" if ended is not None else "until the recording ended"
            out.append(f"{group} kept running without quorum from {ctx.rel(lost.mono)} {how} "
                       f"(limit {fmt_s(grace)} s, as seen from {lost.node})")
    return out


def check_untouched(ctx: Context) -> Verdict:
    """The application processes after a reattach are the ones before it (node, PID and start time)."""
    name = "untouched"
    before, after = _mark(ctx, "application before"), _mark(ctx, "application after")
    if before is None and after is None:
        return ctx.not_judged(name, "groups", "not a reattach")
    if before is None or after is None:
        return Verdict(name, UNKNOWN, None, None, "", "the reattach did not record the application on both sides")
    was, now = before.data.get("processes") or {}, after.data.get("processes") or {}
    changed = sorted(g for g in set(was) | set(now) if was.get(g) != now.get(g))
    if changed:
        told = [f"{g}'s application is not running after the reattach ({was.get(g)} before)" if not now.get(g)
                else f"{g}'s application was restarted: {was.get(g)} before, {now.get(g)} after" for g in changed]
        return Verdict(name, False, len(changed), 0, "groups", "; ".join(told + _why_touched(ctx)))
    shown = "; ".join(f"{g}: {', '.join(p)}" for g, p in sorted(now.items()))
    return Verdict(name, True, 0, 0, "groups", f"the same application processes before and after ({shown})")


def _why_touched(ctx: Context) -> list[str]:
    """What the reattach noted that explains it: node attributes the restart erased and nothing set again
    (a location rule on them then stops or moves the group), a cluster that did not settle afterwards."""
    out = []
    lost = _mark(ctx, "attributes lost")
    if lost is not None:
        shown = "; ".join(f"{n}: {', '.join(a)}" for n, a in sorted((lost.data.get("attributes") or {}).items()))
        out.append(f"node attributes the stack restart erased and nothing set again before maintenance mode ended "
                   f"({shown})")
    unsettled = _mark(ctx, "not settled after maintenance")
    if unsettled is not None:
        out.append(f"after maintenance mode: {unsettled.data.get('why')}")
    return out
