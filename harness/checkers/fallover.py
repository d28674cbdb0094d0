"""Fallover: fault injected → the service answers again from the takeover node (or stays put when told to)."""

from __future__ import annotations

from collections.abc import Callable

from harness.checkers.base import POLLER, PROBE, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import CLUSTER_GROUP_STARTED, PROBE_UP

NAME = "fallover"


def _takeover_filter(ctx: Context) -> tuple[Callable[[str | None], bool], str] | None:
    """Which answering node counts as the takeover: expected_node, else any node but the one serving before."""
    target = ctx.expectation.get("expected_node")
    if target:
        return (lambda node: node == target), str(target)
    before = ctx.serving_node
    if before is None:
        return None
    return (lambda node: node is not None and node != before), f"a node other than {before}"


def _answered(ctx: Context, takeover: Callable[[str | None], bool]) -> tuple[float, str | None] | None:
    """When the takeover node first answered after the fault: the earliest send + latency of such a sample.

    The answer time, not the send time: a probe sent into the outage that hangs until the takeover
    must not make fallover look faster than it was. Without samples, the first PROBE_UP event.
    """
    assert ctx.t0 is not None
    if ctx.samples:
        hits = [(p.mono + p.latency_s, p.node) for p in ctx.samples if p.ok and p.mono >= ctx.t0 and takeover(p.node)]
        return min(hits, key=lambda h: h[0], default=None)
    ups = [e for e in ctx.of(PROBE_UP, after=ctx.t0) if takeover(e.node)]
    return (ups[0].mono, ups[0].node) if ups else None


def _stayed(ctx: Context) -> Verdict:
    """No fallover expected: the group must not start, nor answer, anywhere else after the fault."""
    assert ctx.t0 is not None
    stay = ctx.expectation.get("expected_node") or ctx.serving_node
    if not stay:
        return Verdict(NAME, UNKNOWN, None, None, "node",
                       "no fallover expected, but where the group ran before the fault is not recorded")
    moves = [(e.mono, e.node) for e in ctx.of(CLUSTER_GROUP_STARTED, after=ctx.t0)
             if e.node != stay and (ctx.group is None or e.data.get("group") == ctx.group)]
    moves += [(p.mono, p.node) for p in ctx.samples if p.ok and p.mono >= ctx.t0 and p.node and p.node != stay]
    group = ctx.group or "the group"
    if moves:
        t, node = min(moves, key=lambda m: m[0])
        return Verdict(NAME, False, node, stay, "node",
                       f"{group} moved to {node} at {ctx.rel(t)} although no fallover was expected "
                       f"({ctx.fault_desc} at {ctx.rel(ctx.t0)}, it should have stayed on {stay})")
    last = [p for p in ctx.samples if p.ok and p.mono >= ctx.t0]
    seen = f"; last answer from {stay} at {ctx.rel(last[-1].mono)}" if last else ""
    return Verdict(NAME, True, stay, stay, "node",
                   f"no fallover expected and none happened: {group} stayed on {stay} after {ctx.fault_desc} "
                   f"at {ctx.rel(ctx.t0)}{seen}")


def check_fallover(ctx: Context) -> Verdict:
    """Fault start → the takeover node's first answer, vs max_fallover_s; or the stay check when no fallover.

    Probe slots skipped above their limit make a slow or missing takeover "unknown" (an in-time
    one still passes); for "stay", skipped slots or lost polls above their limits make it "unknown".
    """
    limit = ctx.limit("max_fallover_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was no fallover to time")
    if not ctx.expectation.get("expect_fallover", True):
        # a move seen only in a hole of the recording would be missed: a "stayed" pass needs both sources
        return ctx.vouch(_stayed(ctx), PROBE + POLLER)
    # the takeover time comes from probe answers: a skipped slot can only make it later
    return ctx.vouch(_took_over(ctx, limit), PROBE, pass_holds=True)


def _took_over(ctx: Context, limit: float) -> Verdict:
    assert ctx.t0 is not None
    found = _takeover_filter(ctx)
    if found is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s",
                       "cannot tell the takeover node: no expected_node, and where the group ran before "
                       "the fault is not recorded")
    takeover, who = found
    answered = _answered(ctx, takeover)
    if answered is None:
        until = f" (recording ends at {ctx.rel(ctx.end)})" if ctx.end is not None else ""
        return Verdict(NAME, False, None, limit, "s",
                       f"the service never answered from {who} after {ctx.fault_desc} at {ctx.rel(ctx.t0)}{until}")
    t, node = answered
    took = t - ctx.t0
    ok = took <= limit
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"fallover took {fmt_s(took)} s (limit {fmt_s(limit)} s): {ctx.fault_desc} at {ctx.rel(ctx.t0)}, "
                   f"service answered from {node or who} at {ctx.rel(t)}")
