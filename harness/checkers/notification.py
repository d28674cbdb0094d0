"""Notification: the cluster's alert hook told someone about the failure, in time."""

from __future__ import annotations

from harness.checkers.base import UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import NOTIFICATION, Event

NAME = "notification"


def relevant(ctx: Context, ev: Event) -> bool:
    """A notification about this fault: a node/fencing event for a fault node, or a resource event of the group.

    Attribute updates count when they say something broke: a connectivity attribute (the link
    monitor's `ethmonitor-*`, the client reachability `reach-*`) dropping to 0 — how a dead
    network is noticed — or a fail count rising. "member" node events (a node joining) report
    no failure. With neither a fault node nor a group known, every other notification counts.
    """
    d = ev.data
    kind = d.get("kind")
    if kind == "attribute":
        name, value = str(d.get("attribute_name", "")), str(d.get("attribute_value", ""))
        return (name.startswith(("ethmonitor-", "reach-")) and value in ("0", "")) or \
            (name.startswith("fail-count-") and value not in ("0", ""))
    if kind == "node" and d.get("desc") == "member":
        return False
    rsc = d.get("rsc")
    if kind == "resource" or (kind is None and rsc):
        return ctx.is_group_resource(rsc) or (ctx.group is None and ctx.on_fault_node(ev.node or d.get("node")))
    return ctx.on_fault_node(ev.node or d.get("node"))


def describe(ev: Event) -> str:
    """One notification as a report fragment: "resource g-app monitor on node1 rc=7"."""
    d = ev.data
    node = ev.node or d.get("node") or "?"
    if d.get("kind") == "attribute":
        return f"attribute {d.get('attribute_name')}={d.get('attribute_value') or '(unset)'} on {node}"
    if d.get("rsc"):
        rc = f" rc={d['rc']}" if d.get("rc") not in (None, "") else ""
        return f"resource {d['rsc']} {d.get('task', '')} on {node}{rc}".replace("  ", " ")
    return f"{d.get('kind', 'event')} {node} {d.get('desc', '')}".strip()


def check_notification(ctx: Context) -> Verdict:
    """First relevant NOTIFICATION after the fault, within max_notification_s (default: max_detection_s)."""
    limit = ctx.limit("max_notification_s", fallback="max_detection_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to notify")
    about = ", ".join(sorted(ctx.fault_nodes) + ([f"group {ctx.group}"] if ctx.group else [])) or "the fault"
    after = ctx.of(NOTIFICATION, after=ctx.t0)
    hits = [e for e in after if relevant(ctx, e)]
    if not hits:
        return Verdict(NAME, False, None, limit, "s",
                       f"no notification about {about} after {ctx.fault_desc} at {ctx.rel(ctx.t0)} "
                       f"({len(after)} other notifications; limit {fmt_s(limit)} s)")
    first = hits[0]
    took = first.mono - ctx.t0
    ok = took <= limit
    word = "notified" if ok else "notification late:"
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"{word} {fmt_s(took)} s after the fault (limit {fmt_s(limit)} s): {ctx.fault_desc} at "
                   f"{ctx.rel(ctx.t0)}, {describe(first)} at {ctx.rel(first.mono)}")
