"""Fencing: a lost node's group may start elsewhere only after that node was fenced successfully.

Pacemaker's own rule (Pacemaker Explained, "Fencing"): a node that left uncleanly may still be
running its resources, so they are recovered elsewhere only once it is fenced. With a fence
device that fails or hangs, the right outcome is no takeover at all until the device works
again. This checker reads the broker's fence events (`cluster.fenced`: action, outcome, done)
and the group's starts and probe answers; it never asks the cluster.
"""

from __future__ import annotations

from dataclasses import dataclass

from harness.checkers.base import POLLER, PROBE, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import (
    CLUSTER_GROUP_STARTED,
    CLUSTER_NODE_JOINED,
    CLUSTER_NODE_LOST,
    FENCED,
    Event,
    Timeline,
)

NAME = "fencing"
POWER_ACTIONS = ("off", "reboot")


@dataclass(frozen=True)
class FenceAttempt:
    node: str
    device: str
    start: float      # mono, when the broker got the request
    end: float        # mono, when it answered (done)
    outcome: str      # "OK", "ERR …", "TIMEOUT …"

    @property
    def ok(self) -> bool:
        return self.outcome == "OK"


def attempts(events: list[Event], node: str, after: float) -> list[FenceAttempt]:
    """The power actions on ``node`` since ``after``, in order, as the fence devices answered them."""
    out = []
    for e in events:
        if e.kind != FENCED or e.node != node or e.mono < after or e.data.get("action", "off") not in POWER_ACTIONS:
            continue
        done = e.data.get("done")
        end = e.mono + max(0.0, float(done) - e.wall) if isinstance(done, (int, float)) else e.mono
        out.append(FenceAttempt(node, str(e.data.get("device", "fence")), e.mono, end, str(e.data.get("outcome", "OK"))))
    return out


def failed_fence_seen(timeline: Timeline, node: str, after: float) -> bool:
    """Whether a fence of ``node`` has failed or timed out since ``after`` (the runner holds a case until then)."""
    return any(not a.ok for a in attempts(timeline.sorted_events(), node, after))


def check_fencing(ctx: Context) -> Verdict:
    """No start of the group, and no answer from it, on another node before the victim's first successful fence.

    Judged when the expectation names a ``fence_victim`` (the lost node that ran the group); with
    ``fence_broken`` the fault broke the fence devices, and a case where the cluster never asked a
    broken device could not test that: "unknown". With ``clean_move_ok`` (a subdaemon kill, after which
    the cluster may ban the group from a node that stays a member) a start elsewhere is also right while
    the victim has not left the membership: its controller stopped the group there.
    """
    victim = ctx.expectation.get("fence_victim")
    if not victim:
        return ctx.not_judged(NAME, "node", "judged for the fence faults only (fence_fail, fence_hang), "
                                            "which name the victim whose fence must come first")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, None, "node", "no fault was injected")
    tried = attempts(ctx.events, str(victim), ctx.t0)
    fenced = next((a for a in tried if a.ok), None)
    failed = [a for a in tried if not a.ok]
    group = ctx.group or "the group"
    starts = [(e.mono, e.node) for e in ctx.of(CLUSTER_GROUP_STARTED, after=ctx.t0)
              if e.node and e.node != victim and (ctx.group is None or e.data.get("group") == ctx.group)]
    starts += [(p.mono, p.node) for p in ctx.samples if p.ok and p.mono >= ctx.t0 and p.node and p.node != victim]
    first = min(starts, default=None)
    tried_words = _describe(ctx, failed, fenced)
    lost = next((e for e in ctx.of(CLUSTER_NODE_LOST, after=ctx.t0) if e.node == victim), None)
    back = next((e for e in ctx.of(CLUSTER_NODE_JOINED, after=lost.mono) if e.node == victim), None) \
        if lost is not None else None
    if first is not None and back is not None and first[0] >= back.mono and (fenced is None or back.mono < fenced.end)\
            and (fenced is None or first[0] < fenced.end):  # a start after a fence is explained by the fence
        return ctx.vouch(Verdict(NAME, True, first[1], "after a successful fence", "node",
                                 f"{group} started on {first[1]} at {ctx.rel(first[0])}, after {victim} had rejoined "
                                 f"the cluster at {ctx.rel(back.mono)} (powered on, or its controller respawned): no fence needed "
                                 f"then; before it, no takeover ({tried_words})"), PROBE + POLLER)
    if first is not None and (fenced is None or first[0] < fenced.end) and ctx.expectation.get("clean_move_ok") \
            and (lost is None or lost.mono > first[0]):
        return ctx.vouch(Verdict(NAME, True, first[1], "after a fence, or a clean stop", "node",
                                 f"{group} started on {first[1]} at {ctx.rel(first[0])} while {victim} was still a "
                                 f"member: moved off it by the cluster, no fence needed ({tried_words}); a run on "
                                 f"both is split_brain's to judge"), PROBE + POLLER)
    if first is not None and (fenced is None or first[0] < fenced.end):
        when, node = first
        before = "although it was never fenced" if fenced is None else \
            f"{fmt_s(fenced.end - when)} s before it was fenced ({ctx.rel(fenced.end)})"
        return Verdict(NAME, False, node, "after a successful fence", "node",
                       f"{group} of {victim} started on {node} at {ctx.rel(when)}, {before}: a takeover without "
                       f"a successful fence ({tried_words})")
    if ctx.expectation.get("fence_broken") and not failed:
        return Verdict(NAME, UNKNOWN, None, None, "node",
                       f"the fence devices were broken, but no fence of {victim} failed or timed out: the cluster "
                       f"never asked them, so a takeover without a fence was not tested ({tried_words})")
    if first is None:
        verdict = Verdict(NAME, True, None, "after a successful fence", "node",
                          f"no takeover of {group} from {victim}: {tried_words}")
    else:
        verdict = Verdict(NAME, True, first[1], "after a successful fence", "node",
                          f"{group} started on {first[1]} at {ctx.rel(first[0])}, after {victim} was fenced "
                          f"({tried_words})")
    return ctx.vouch(verdict, PROBE + POLLER)


def _describe(ctx: Context, failed: list[FenceAttempt], fenced: FenceAttempt | None) -> str:
    parts = []
    if failed:
        first = failed[0]
        parts.append(f"{len(failed)} fence attempt(s) failed from {ctx.rel(first.start)} "
                     f"(first: device {first.device}: {first.outcome})")
    parts.append(f"fenced by device {fenced.device} at {ctx.rel(fenced.end)}" if fenced else "never fenced")
    return "; ".join(parts)
