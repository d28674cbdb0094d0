"""Detection: fault injected → the cluster first reports something that relates to the fault."""

from __future__ import annotations

from harness.checkers import notification
from harness.checkers.base import UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import CLUSTER_FAILED_ACTION, CLUSTER_GROUP_STOPPED, CLUSTER_NODE_LOST, NOTIFICATION, Event

NAME = "detection"
KINDS = (CLUSTER_NODE_LOST, CLUSTER_FAILED_ACTION, NOTIFICATION, CLUSTER_GROUP_STOPPED)
"""What counts as the cluster noticing: membership loss, a failed action, an alert, the group stopping."""


def related(ctx: Context, ev: Event) -> bool:
    """Whether a cluster reaction is about this fault, so an unrelated failure elsewhere is not credited."""
    if ev.kind == NOTIFICATION:
        return notification.relevant(ctx, ev)
    if ev.kind == CLUSTER_NODE_LOST:
        return ctx.on_fault_node(ev.node)
    if ev.kind == CLUSTER_GROUP_STOPPED:
        return ctx.group is None or ev.data.get("group") == ctx.group
    if ev.kind == CLUSTER_FAILED_ACTION:
        return ctx.is_group_resource(ev.data.get("resource")) or ctx.on_fault_node(ev.data.get("node") or ev.node)
    return False


def describe(ev: Event) -> str:
    d = ev.data
    if ev.kind == NOTIFICATION:
        return f"notification ({notification.describe(ev)})"
    if ev.kind == CLUSTER_FAILED_ACTION:
        return f"failed action {d.get('resource', '?')} {d.get('task', '')} on {d.get('node') or ev.node} " \
               f"rc={d.get('rc', '?')}"
    if ev.kind == CLUSTER_GROUP_STOPPED:
        return f"group {d.get('group', '?')} stopped"
    return f"{ev.node} lost from the membership"


def check_detection(ctx: Context) -> Verdict:
    """Fault start → first related NODE_LOST / FAILED_ACTION / NOTIFICATION / GROUP_STOPPED, vs max_detection_s."""
    limit = ctx.limit("max_detection_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to detect")
    hits = [e for e in ctx.of(*KINDS, after=ctx.t0) if related(ctx, e)]
    if not hits:
        until = f" (recording ends at {ctx.rel(ctx.end)})" if ctx.end is not None else ""
        return Verdict(NAME, False, None, limit, "s",
                       f"the cluster never reported {ctx.fault_desc} injected at {ctx.rel(ctx.t0)}{until}")
    first = hits[0]
    took = first.mono - ctx.t0
    ok = took <= limit
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"detection took {fmt_s(took)} s (limit {fmt_s(limit)} s): {ctx.fault_desc} at "
                   f"{ctx.rel(ctx.t0)}, {describe(first)} at {ctx.rel(first.mono)}")
