"""Detection: fault injected → the cluster first reports something that reflects the fault."""

from __future__ import annotations

from harness.checkers import notification
from harness.checkers.base import NOTIFY, POLLER, UNKNOWN, Context, Verdict, fmt_s
from harness.notifications import raised_wall
from harness.timeline import (CLUSTER_ATTRIBUTE, CLUSTER_FAILED_ACTION, CLUSTER_GROUP_STOPPED, CLUSTER_LOGGED_LOSS,
                              CLUSTER_NODE_LOST, FENCED, NOTIFICATION, Event)

NAME = "detection"
KINDS = (CLUSTER_NODE_LOST, CLUSTER_LOGGED_LOSS, CLUSTER_FAILED_ACTION, CLUSTER_ATTRIBUTE, NOTIFICATION, FENCED,
         CLUSTER_GROUP_STOPPED)
"""What can show the cluster noticing: membership loss (seen by the poller, or stamped in a peer's own
log: a slow `crm_mon` must not make a quick cluster look slow; a graceful stop's request to leave, too),
a failed action, a connectivity attribute dropping (the link monitor, the client reachability ping: how a
dead network is noticed), an alert reporting a failure, fencing, and a group stopping with a failed member
(see ``related``)."""


def related(ctx: Context, ev: Event) -> bool:
    """Whether a cluster event shows the cluster noticing *this* fault (not merely doing something).

    - notification: ``notification.relevant`` — reports of a failure only; a successful
      monitor, start or stop is never detection.
    - node lost (poller or log), fencing: of a fault node (any node when the fault has none, e.g. a whole
      network); node lost only where it is the cluster's membership (expectation ``membership``; keepalived
      has none).
    - attribute (the poller's view of the CIB): a connectivity attribute (``ethmonitor-*``,
      ``reach-*``) of a fault node dropping to 0 or unset — the cluster's own knowledge that a
      link or the clients are gone, whether or not the alerts report attributes (Pacemaker's do
      only with ``select_attributes``). Coming back after the heal is recovery, not detection.
    - failed action: of a group resource, or of any resource on a fault node.
    - group stopped: only when the poller saw a member *failed* (data "failed"). A group also
      stops when the cluster moves it on purpose — a planned move, the failback after the heal,
      or the reaction to something it had already noticed (which is then the detection, and
      earlier) — and crediting such a stop would time the cluster's decision, or a move
      unrelated to the fault, as its detection.
    """
    if ev.kind == NOTIFICATION:
        return notification.relevant(ctx, ev)
    if ev.kind in (CLUSTER_NODE_LOST, CLUSTER_LOGGED_LOSS) and ctx.expectation.get("membership", True) is False:
        return False  # the harness saw the node's daemon gone; a stack without membership noticed nothing
    if ev.kind in (CLUSTER_NODE_LOST, CLUSTER_LOGGED_LOSS, FENCED):
        return ctx.on_fault_node(ev.node)
    if ev.kind == CLUSTER_ATTRIBUTE:
        name = str(ev.data.get("name", ""))
        return notification.connectivity_lost(name, ev.data.get("value")) and \
            not notification.connectivity_lost(name, ev.data.get("was")) and ctx.on_fault_node(ev.node)
    if ev.kind == CLUSTER_GROUP_STOPPED:
        return bool(ev.data.get("failed")) and (ctx.group is None or ev.data.get("group") == ctx.group)
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
        failed = ", ".join(map(str, d.get("failed") or [])) or "?"
        return f"group {d.get('group', '?')} stopped ({failed} failed)"
    if ev.kind == FENCED:
        return f"{ev.node} fenced ({d.get('action', '?')})"
    if ev.kind == CLUSTER_ATTRIBUTE:
        return (f"attribute {d.get('name', '?')} on {ev.node} from {d.get('was') or 'unset'} "
                f"to {d.get('value') or 'unset'}")
    if ev.kind == CLUSTER_LOGGED_LOSS:
        return (f"{ev.node} {d.get('what', 'lost')} in {d.get('seen_from', '?')}'s log "
                f"(its clock read to ±{fmt_s(float(d.get('clock_err_s') or 0))} s)")
    return f"{ev.node} lost from the membership"


def check_detection(ctx: Context) -> Verdict:
    """Fault start → first related NODE_LOST / FAILED_ACTION / ATTRIBUTE / NOTIFICATION / FENCED / GROUP_STOPPED.

    Against max_detection_s. Not judged for a planned operation (nothing failed). Lost polls
    or unreadable alert lines above their limits make a late or missing detection "unknown"
    (the hole may hold the detection); an in-time one still passes.
    """
    limit = ctx.limit("max_detection_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to detect")
    if ctx.planned:
        return ctx.not_judged(NAME, "s", f"{ctx.fault_desc} is a planned operation: nothing failed to detect",
                              limit)
    return ctx.vouch(_judge(ctx, limit), POLLER + NOTIFY, pass_holds=True)


def noticed_at(ev: Event) -> float:
    """When an event shows the cluster knew (mono): an alert when Pacemaker raised it, not when its agent
    delivered it (seconds later on a busy node: `notifications.raised_wall`); anything else when recorded.
    Read from the alert's own fields, so a run saved before this rule is judged by it too."""
    if ev.kind != NOTIFICATION:
        return ev.mono
    raised = raised_wall({**ev.data, "wall": ev.wall})
    return ev.mono - (ev.wall - raised) if raised is not None else ev.mono


def _judge(ctx: Context, limit: float) -> Verdict:
    assert ctx.t0 is not None
    t0 = ctx.t0
    # an alert raised before the fault (delivered after it) reports something else
    hits = sorted((e for e in ctx.of(*KINDS, after=t0) if related(ctx, e) and noticed_at(e) >= t0), key=noticed_at)
    if not hits:
        until = f" (recording ends at {ctx.rel(ctx.end)})" if ctx.end is not None else ""
        return Verdict(NAME, False, None, limit, "s",
                       f"the cluster never reported {ctx.fault_desc} injected at {ctx.rel(ctx.t0)}{until}: "
                       f"no node lost, failed action, connectivity attribute lost, fencing or notification "
                       f"of a failure")
    first = hits[0]
    took = noticed_at(first) - t0
    ok = took <= limit
    delivered = f", delivered at {ctx.rel(first.mono)}" if noticed_at(first) != first.mono else ""
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"detection took {fmt_s(took)} s (limit {fmt_s(limit)} s): {ctx.fault_desc} at "
                   f"{ctx.rel(t0)}, {describe(first)} at {ctx.rel(noticed_at(first))}{delivered}")
