"""Why the takeover did not come: the cluster's own account of itself at a deadline, in plain lines.

When a case waits for an outcome and it does not arrive, the verdicts can only say *that*
it did not (no takeover within 30 s). The person who reads the report needs *why*: a
start that failed on the takeover node, a node the cluster waits to fence, a fence that
failed, a resource blocked or unmanaged, no quorum, a ban. Pacemaker knows all of it;
this module asks it once (``crm_mon`` with its operation history and bans, and the fencing
history) and turns the answer into lines a person can act on. It only reads the cluster.
The parsing is pure (``explain``) so it is tested on recorded XML.
"""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import Any

from harness.errors import FalloverError
from harness.testbed.base import Testbed

CRM_MON = ["crm_mon", "--one-shot", "--inactive", "--output-as=xml", "--include=all"]
FENCE_HISTORY = ["stonith_admin", "--history", "*", "--output-as=xml"]
OCF_RC = {1: "generic error", 2: "invalid argument", 3: "unimplemented", 4: "insufficient privileges",
          5: "not installed", 6: "not configured", 7: "not running", 8: "running (promoted)", 9: "failed (promoted)"}


@dataclass
class Diagnosis:
    """What the cluster said about itself; ``lines`` are the report's "why" section, most telling first."""

    seen_from: str | None
    lines: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # what could not be read, so absence is not read as "fine"

    def to_dict(self) -> dict[str, Any]:
        return {"seen_from": self.seen_from, "lines": self.lines, "errors": self.errors}


def diagnose(testbed: Testbed, group: str | None = None, *, timeout: float = 10.0) -> Diagnosis:
    """Ask the first running node that answers; every failure to ask becomes an ``errors`` line."""
    errors: list[str] = []
    for node in testbed.topology.node_names:
        if not testbed.running(node):
            continue
        try:
            mon = testbed.node(node).run(CRM_MON, timeout=timeout, check=False)
        except FalloverError as e:
            errors.append(f"{node}: crm_mon: {e}")
            continue
        if not mon.stdout.lstrip().startswith("<") or "<summary" not in mon.stdout:
            errors.append(f"{node}: crm_mon exited {mon.exit_status}: {(mon.stderr or mon.stdout).strip()[:200]}")
            continue
        fence_xml = None
        try:
            fh = testbed.node(node).run(FENCE_HISTORY, timeout=timeout, check=False)
            if fh.stdout.lstrip().startswith("<"):
                fence_xml = fh.stdout
            else:
                errors.append(f"{node}: stonith_admin --history exited {fh.exit_status}: {fh.stderr.strip()[:200]}")
        except FalloverError as e:
            errors.append(f"{node}: stonith_admin --history: {e}")
        d = explain(mon.stdout, fence_xml, group=group, seen_from=node)
        d.errors = errors + d.errors
        return d
    return Diagnosis(None, [], errors or ["no node is running: nothing to ask"])


def _b(el: ET.Element | None, attr: str) -> bool:
    return el is not None and el.get(attr, "false") == "true"


def _when(text: str | None) -> float:
    """Seconds since the epoch of a crm_mon date ("Sun Nov 29 14:18:14 2026"), 0 when unreadable."""
    if not text:
        return 0.0
    try:
        parts = text.split()  # weekday month day time year → RFC 2822 for the stdlib parser
        return parsedate_to_datetime(f"{parts[0]}, {parts[2]} {parts[1]} {parts[4]} {parts[3]} +0000").timestamp()
    except (IndexError, ValueError, TypeError):
        return 0.0


def _rc(rc: str | int | None) -> str:
    try:
        n = int(rc or 0)
    except ValueError:
        return f"rc={rc}"
    return f"rc={n} ({OCF_RC[n]})" if n in OCF_RC else f"rc={n}"


def explain(mon_xml: str, fence_xml: str | None = None, *, group: str | None = None,
            seen_from: str | None = None) -> Diagnosis:
    """The lines of a diagnosis from ``crm_mon --include=all`` XML (+ ``stonith_admin --history`` XML)."""
    d = Diagnosis(seen_from)
    try:
        root = ET.fromstring(mon_xml)
    except ET.ParseError as e:
        d.errors.append(f"crm_mon XML unreadable: {e}")
        return d
    out = d.lines
    summary = root.find("summary")
    dc = summary.find("current_dc") if summary is not None else None
    opts = summary.find("cluster_options") if summary is not None else None
    if dc is None or not _b(dc, "present"):
        out.append(f"no DC: {seen_from or 'the node asked'} knows no designated controller, so nothing is "
                   "scheduled (a partition that is still electing, or a node whose stack is not up)")
    elif not _b(dc, "with_quorum"):
        policy = opts.get("no-quorum-policy", "?") if opts is not None else "?"
        out.append(f"no quorum: the partition of {dc.get('name')} has lost quorum and no-quorum-policy={policy}"
                   + (": it stops or will not start resources" if policy in ("stop", "freeze", "suicide") else ""))
    if opts is not None:
        if _b(opts, "maintenance-mode"):
            out.append("maintenance-mode=true: the cluster manages no resource, so nothing fails over")
        if _b(opts, "stop-all-resources"):
            out.append("stop-all-resources=true: every resource is meant to be stopped")
        if opts.get("stonith-enabled") == "false":
            out.append("stonith-enabled=false: a lost node is not fenced, so its resources may still be "
                       "active there (split brain risk)")
    for n in root.findall("nodes/node"):
        name = n.get("name", "?")
        if _b(n, "unclean"):
            out.append(f"{name} is UNCLEAN: the cluster must fence it before it recovers its resources elsewhere"
                       " (a fence device that cannot reach it blocks the takeover)")
        elif _b(n, "pending"):
            out.append(f"{name} is pending: it has not finished joining")
        elif not _b(n, "online"):
            out.append(f"{name} is offline")
        if _b(n, "standby"):
            out.append(f"{name} is in standby: it may not run resources")
        if _b(n, "maintenance"):
            out.append(f"{name} is in maintenance: its resources are not managed")
    out += _fencing(root, fence_xml, d)
    out += _failures(root)
    out += _bans(root, group)
    out += _fail_counts(root, group)
    out += _resources(root, group)
    out += _last_ran(root, group)
    return d


def _fencing(mon: ET.Element, fence_xml: str | None, d: Diagnosis) -> list[str]:
    """Fence actions that did not succeed, from crm_mon's fence history and stonith_admin's (deduplicated).

    crm_mon is the one to trust here: on Pacemaker 2.1.5, ``stonith_admin --history '*'`` asked
    on a peer listed no entry while crm_mon on the same node showed the failed fencing.
    """
    events = list(mon.iter("fence_event"))
    if fence_xml is None:
        d.errors.append("fencing history (stonith_admin) not read")
    else:
        try:
            events += list(ET.fromstring(fence_xml).iter("fence_event"))
        except ET.ParseError as e:
            d.errors.append(f"fencing history XML unreadable: {e}")
    out: list[str] = []
    for ev in events:
        status = ev.get("status", "?")
        if status == "success":
            continue
        target, action = ev.get("target", "?"), ev.get("action", "?")
        by = ev.get("delegate") or ev.get("origin") or "?"
        reason = f": {ev.get('exit-reason')}" if ev.get("exit-reason") else ""
        when = f" (last at {ev.get('completed') or ev.get('last-failed')})" if ev.get("completed") or \
            ev.get("last-failed") else ""
        line = (f"fencing ({action}) of {target} requested by {by}: {status}{reason}{when}"
                + (" — the cluster will not recover its resources until a fence succeeds" if status != "pending"
                   else " — still waiting for the fence device"))
        if line not in out:
            out.append(line)
    return out


def _failures(root: ET.Element) -> list[str]:
    out = []
    for f in root.findall("failures/failure"):
        rsc = f.get("op_key", "").rsplit("_", 2)[0] or "?"
        why = html.unescape(f.get("exitreason", ""))
        out.append(f"failed action: {rsc} {f.get('task', '?')} on {f.get('node', '?')}: "
                   f"{_rc(f.get('exitcode', f.get('rc')))}, {f.get('status', '?')}"
                   + (f", exit reason \"{why}\"" if why else ""))
    return out


def _members(root: ET.Element, group: str | None) -> list[ET.Element]:
    if group is None:
        return list(root.iter("resource"))
    g = next((el for el in root.iter("group") if el.get("id") == group), None)
    return list(g.findall("resource")) if g is not None else []


def _resources(root: ET.Element, group: str | None) -> list[str]:
    out = []
    unclean = {n.get("name") for n in root.findall("nodes/node") if _b(n, "unclean")}
    if group is not None and not any(el.get("id") == group for el in root.iter("group")):
        out.append(f"group {group} is not in the cluster's configuration")
    for r in _members(root, group):
        rid = r.get("id", "?")
        where = ",".join(n.get("name", "?") for n in r.findall("node")) or "nowhere"
        if _b(r, "blocked"):
            out.append(f"{rid} is BLOCKED on {where}: a stop failed and no fencing can clear it; "
                       "the cluster will not touch it until an operator cleans it up")
        if r.get("managed") == "false":
            out.append(f"{rid} is unmanaged: the cluster does not start, stop or move it")
        if _b(r, "failed"):
            out.append(f"{rid} is FAILED on {where}")
        if group is not None and r.get("role") != "Started":
            out.append(f"{rid} is {r.get('role', '?')} ({where})")
        stuck = [n.get("name") for n in r.findall("node") if n.get("name") in unclean]
        if stuck:
            out.append(f"{rid} counts as still running on {', '.join(map(str, stuck))} (UNCLEAN): "
                       "the cluster may not start it elsewhere before that node is fenced")
    return out


def _bans(root: ET.Element, group: str | None) -> list[str]:
    members = {r.get("id") for r in _members(root, group)} | ({group} if group else set())
    online = {n.get("name") for n in root.findall("nodes/node") if _b(n, "online") and not _b(n, "unclean")}
    out = []
    for ban in root.iter("ban"):
        rsc = ban.get("resource")
        if (group is None or rsc in members) and ban.get("node") in online:  # where it could run, it may not
            out.append(f"constraint {ban.get('id', '?')}: {rsc} banned from {ban.get('node', '?')} "
                       f"(score {ban.get('weight', '?')})")
    return out


def _fail_counts(root: ET.Element, group: str | None) -> list[str]:
    """Fail counts against migration-threshold: why a resource was restarted in place rather than moved."""
    members = {r.get("id") for r in _members(root, group)}
    out = []
    for node in root.findall("node_history/node"):
        for hist in node.findall("resource_history"):
            rid, count = hist.get("id"), hist.get("fail-count")
            if rid not in members or not count or count == "0":
                continue
            threshold = hist.get("migration-threshold", "?")
            where = node.get("name", "?")
            if count.isdigit() and threshold.isdigit() and int(count) < int(threshold):
                out.append(f"{rid} failed {count} time(s) on {where}, below migration-threshold={threshold}: "
                           f"the cluster restarts it in place on {where} instead of moving it")
            else:
                out.append(f"{rid} failed {count} time(s) on {where} (migration-threshold={threshold}): "
                           f"it may not run on {where} until the failure is cleaned up")
    return out


def _last_ran(root: ET.Element, group: str | None) -> list[str]:
    """Where each member of the group last ran: its newest successful start/monitor, per the operation history."""
    if group is None:
        return []
    last: dict[str, tuple[float, str, str]] = {}
    for node in root.findall("node_history/node"):
        for hist in node.findall("resource_history"):
            rid = hist.get("id", "")
            for op in hist.findall("operation_history"):
                ok = op.get("rc") in ("0", "8") and op.get("task") in ("start", "monitor", "promote")
                t = _when(op.get("last-rc-change"))
                if ok and t >= last.get(rid, (-1.0, "", ""))[0]:
                    last[rid] = (t, node.get("name", "?"), f"{op.get('task')} ok at {op.get('last-rc-change')}")
    out = []
    for r in _members(root, group):
        rid = r.get("id", "?")
        if rid in last:
            _, ran_on, what = last[rid]
            out.append(f"{rid} last ran on {ran_on} ({what})")
        else:
            out.append(f"{rid}: no online node has a successful start of it in its operation history")
    return out
