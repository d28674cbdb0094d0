"""Notification: the cluster's alert hook told someone about the failure, in time."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from harness.checkers.base import NOTIFY, UNKNOWN, Context, Verdict, fmt_s
from harness.timeline import NOTIFICATION, Event

NAME = "notification"


# Pacemaker's execution status of an operation (CRM_alert_status, enum pcmk_exec_status in
# include/crm/common/results.h): -1 pending, 0 done (the rc is the agent's answer), 1 cancelled;
# 2 and up (timed out, not supported, error, hard error, fatal, not installed, not connected,
# invalid, no fence device, no secrets) failed. Measured: a monitor that timed out on a hung disk
# alerts with status 2 ("Timed Out"), a cancelled one with status 1 ("Cancelled").
EXEC_PENDING, EXEC_DONE, EXEC_CANCELLED = -1, 0, 1
FAIL_COUNT = re.compile(r"^fail-count-(?P<rsc>[^#]+)")
SHUTDOWN = "shutdown"
"""The node attribute Pacemaker's DC sets (to the time asked) on a node that asked to leave, and clears when
it is back: the cluster's own statement that the node is going, made before any of its resources stops."""


CONNECTIVITY = ("ethmonitor-", "reach-")
"""Node attributes that say a node can use a network: the link monitor's (1 = link up; deleted or 0 when
the link dies) and the client reachability ping's (the number of client hosts it reaches × multiplier)."""


def connectivity_lost(name: str, value: Any) -> bool:
    """A connectivity attribute at "nothing reachable": 0, empty, or unset (None)."""
    return name.startswith(CONNECTIVITY) and (value is None or str(value) in ("0", ""))


def op_failed(d: Mapping[str, Any]) -> bool:
    """Whether a resource alert reports a *failed* operation, not merely an operation.

    Failed: the execution itself failed (status ≥ 2: timeout, error, not installed, …), or it
    completed with an rc other than the one the cluster expected (``target_rc``). Without a
    target_rc (older agents, hand-written records) the OCF meaning decides: a recurring monitor
    succeeds with 0 (8: promoted), a probe (monitor with interval 0) answers 0, 7 (not running)
    or 8 and all three are answers, not failures; any other operation succeeds with 0. A record
    without an rc says nothing failed. A pending or cancelled operation has no result yet.
    """
    status = _int(d.get("status"))
    if status is not None and status not in (EXEC_DONE, EXEC_PENDING, EXEC_CANCELLED):
        return True
    if status in (EXEC_PENDING, EXEC_CANCELLED):
        return False
    rc, target = _int(d.get("rc")), _int(d.get("target_rc"))
    if rc is None:
        return False
    if target is not None:
        return rc != target
    if d.get("task") == "monitor":
        return rc not in ((0, 7, 8) if _int(d.get("interval")) == 0 else (0, 8))
    return rc != 0


def _int(value: Any) -> int | None:
    """An alert field as a number: the agent passes strings, the tail converts them, saved records vary."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        return int(str(value).strip())
    except ValueError:
        return None


def relevant(ctx: Context, ev: Event) -> bool:
    """A notification that reports this fault: something failed or was lost, on a fault node or in the group.

    Only reports of a failure count, because the alert agent also reports everything that goes
    *right*, and crediting that would pass a cluster that noticed nothing:

    - resource: only a failed operation (``op_failed``: rc ≠ target_rc, or a failed execution)
      of a group resource or of any resource on a fault node. A successful monitor is the cluster
      finding things fine; a successful stop or start is the cluster *acting* — in a planned move,
      in the recovery after the heal, or after it had already noticed by other means — so neither
      is the notification of the failure (a recurring monitor's rc=0 after a reprobe was once
      taken for the detection of a dead network).
    - node: "lost" for a fault node; "member" (a node joining) reports no failure.
    - fencing: of a fault node (the cluster shutting out a node it lost).
    - attribute: on a fault node, ``shutdown`` set (the node is leaving: the controller's first word of
      a graceful stop, while its stops are still to run), a connectivity attribute (the link monitor's ``ethmonitor-*``,
      the client reachability ``reach-*``) dropping to 0 or vanishing — how a dead network is
      noticed — or a fail count rising for a group resource or on a fault node. The same
      attributes coming back (1) after the heal are recovery, not detection.
    - anything else (an unknown kind) is not credited: an unrecognised record is no evidence.

    A fault without a node (a whole network) counts every node as a fault node (``on_fault_node``).
    """
    d = ev.data
    kind = d.get("kind")
    node = ev.node or d.get("node")
    if kind == "attribute":
        name, value = str(d.get("attribute_name", "")), str(d.get("attribute_value", ""))
        if name.startswith(CONNECTIVITY):
            return connectivity_lost(name, value) and ctx.on_fault_node(node)
        if name == SHUTDOWN:
            return value not in ("0", "") and ctx.on_fault_node(node)
        m = FAIL_COUNT.match(name)
        if m and value not in ("0", ""):
            return ctx.is_group_resource(m["rsc"]) or ctx.on_fault_node(node)
        return False
    if kind == "node":
        return d.get("desc") == "lost" and ctx.on_fault_node(node)
    if kind == "fencing":
        return ctx.on_fault_node(node)
    rsc = d.get("rsc")
    if kind == "resource" or (kind is None and rsc):
        if not op_failed(d):
            return False
        return ctx.is_group_resource(rsc) or ctx.on_fault_node(node)
    return False


def describe(ev: Event) -> str:
    """One notification as a report fragment: "resource g-app monitor on node1 rc=7"."""
    d = ev.data
    node = ev.node or d.get("node") or "?"
    if d.get("kind") == "attribute":
        return f"attribute {d.get('attribute_name')}={d.get('attribute_value') or '(unset)'} on {node}"
    if d.get("rsc"):
        rc = f" rc={d['rc']}" if d.get("rc") not in (None, "") else ""
        if rc and _int(d.get("target_rc")) not in (None, _int(d.get("rc"))):
            rc += f" (expected {d['target_rc']})"
        status = _int(d.get("status"))
        if status is not None and status not in (EXEC_DONE, EXEC_PENDING, EXEC_CANCELLED):
            rc += f" status={status}"
        return f"resource {d['rsc']} {d.get('task', '')} on {node}{rc}".replace("  ", " ")
    return f"{d.get('kind', 'event')} {node} {d.get('desc', '')}".strip()


def check_notification(ctx: Context) -> Verdict:
    """First relevant NOTIFICATION after the fault, within max_notification_s (default: max_detection_s).

    Not judged for a planned operation (nothing failed), nor where the testbed cannot see notifications
    (expectation notifications_unseen: why). "unknown" when unreadable alert lines
    exceed their limit and no relevant notification was found in time (one of them may be it).
    """
    limit = ctx.limit("max_notification_s", fallback="max_detection_s")
    if ctx.t0 is None:
        return Verdict(NAME, UNKNOWN, None, limit, "s", "no fault was injected, so there was nothing to notify")
    if ctx.planned:
        return ctx.not_judged(NAME, "s", f"{ctx.fault_desc} is a planned operation: nothing failed to notify about",
                              limit)
    unseen = ctx.expectation.get("notifications_unseen")
    if unseen:  # a silence fallover could not have heard is no verdict on the cluster
        return ctx.not_judged(NAME, "s", f"this testbed cannot see the cluster's notifications: {unseen}", limit)
    return ctx.vouch(_judge(ctx, limit), NOTIFY, pass_holds=True)


def _judge(ctx: Context, limit: float) -> Verdict:
    assert ctx.t0 is not None
    about = ", ".join(sorted(ctx.fault_nodes) + ([f"group {ctx.group}"] if ctx.group else [])) or "the fault"
    after = ctx.of(NOTIFICATION, after=ctx.t0)
    hits = [e for e in after if relevant(ctx, e)]
    if not hits:
        return Verdict(NAME, False, None, limit, "s",
                       f"no notification about {about} reporting a failure after {ctx.fault_desc} at {ctx.rel(ctx.t0)} "
                       f"({len(after)} notifications after the fault, none reporting a failure there; "
                       f"limit {fmt_s(limit)} s)")
    first = hits[0]
    took = first.mono - ctx.t0
    ok = took <= limit
    word = "notified" if ok else "notification late:"
    return Verdict(NAME, ok, round(took, 3), limit, "s",
                   f"{word} {fmt_s(took)} s after the fault (limit {fmt_s(limit)} s): {ctx.fault_desc} at "
                   f"{ctx.rel(ctx.t0)}, {describe(first)} at {ctx.rel(first.mono)}")
