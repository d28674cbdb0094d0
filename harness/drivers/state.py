"""A typed snapshot of a cluster, as one node sees it; parsed from `crm_mon --output-as=xml`."""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field


@dataclass(frozen=True)
class NodeState:
    name: str
    online: bool
    unclean: bool = False
    standby: bool = False
    maintenance: bool = False
    pending: bool = False
    shutdown: bool = False
    is_dc: bool = False

    @property
    def status(self) -> str:
        for flag in ("unclean", "pending", "maintenance", "standby"):
            if getattr(self, flag):
                return flag
        return "online" if self.online else "offline"


@dataclass(frozen=True)
class ResourceState:
    id: str
    agent: str
    role: str
    active: bool
    failed: bool
    managed: bool
    nodes: tuple[str, ...]
    pending: str | None = None  # an operation in flight (crm_mon's pending="Starting", "Monitoring", …)
    blocked: bool = False  # the cluster will not act on it (a failed stop without fencing, on-fail=block)
    clone: bool = False    # a clone's entry: one instance per node is right, not a multi-active primitive


@dataclass(frozen=True)
class GroupState:
    """Where a group runs: a node only when every member is started there, and only there."""

    name: str
    resources: tuple[ResourceState, ...]

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node any member runs on (more than one = the group is split or multi-active)."""
        return tuple(sorted({n for r in self.resources for n in r.nodes}))

    @property
    def started(self) -> bool:
        return bool(self.resources) and len(self.nodes) == 1 and all(
            r.role == "Started" and len(r.nodes) == 1 and not r.failed for r in self.resources)

    @property
    def node(self) -> str | None:
        return self.nodes[0] if self.started else None

    @property
    def started_count(self) -> int:
        return sum(1 for r in self.resources if r.role == "Started")


@dataclass(frozen=True)
class FailedAction:
    resource: str
    node: str
    task: str
    exitcode: int
    exitreason: str
    status: str

    def __str__(self) -> str:
        why = f" ({self.exitreason})" if self.exitreason else ""
        return f"{self.resource} {self.task} on {self.node}: rc={self.exitcode} {self.status}{why}"


@dataclass(frozen=True)
class ClusterState:
    """The cluster as reported by ``seen_from``; ``dc`` is None when that node knows no DC."""

    seen_from: str
    dc: str | None
    quorate: bool
    nodes: dict[str, NodeState]
    groups: dict[str, GroupState]
    resources: dict[str, ResourceState]
    failed_actions: tuple[FailedAction, ...] = ()
    stack_versions: dict[str, str] = field(default_factory=dict)
    attributes: dict[str, dict[str, str]] = field(default_factory=dict)
    """Transient node attributes as written in the CIB: node → name → value (crm_mon's node_attributes)."""
    attribute_expected: dict[str, dict[str, str]] = field(default_factory=dict)
    """The value crm_mon expects for an attribute, where it knows one (a ping resource's hosts × multiplier)."""

    def pending_actions(self) -> list[str]:
        """What crm_mon shows in flight: nodes still joining, resource operations recorded as pending."""
        out = [f"{n} joining" for n, st in sorted(self.nodes.items()) if st.pending]
        for r in self.resources.values():
            if r.pending:
                out.append(f"{r.id} {r.pending.lower()}{' on ' + ','.join(r.nodes) if r.nodes else ''}")
        return out

    def attributes_off(self) -> list[str]:
        """Attributes below what crm_mon expects of them on an online node (a ping that does not reach)."""
        out = []
        for node in self.online:
            for name, want in sorted(self.attribute_expected.get(node, {}).items()):
                have = self.attributes.get(node, {}).get(name)
                if have != want:
                    out.append(f"{name} on {node} is {have if have is not None else 'unset'} (expected {want})")
        return out

    @property
    def online(self) -> list[str]:
        return sorted(n for n, s in self.nodes.items() if s.online and not s.unclean)

    @property
    def offline(self) -> list[str]:
        return sorted(n for n, s in self.nodes.items() if not s.online or s.unclean)

    def group_node(self, group: str) -> str | None:
        g = self.groups.get(group)
        return g.node if g else None

    def summary(self) -> str:
        parts = [f"online={','.join(self.online) or '-'}", f"dc={self.dc or '-'}"]
        for name, g in sorted(self.groups.items()):
            parts.append(f"{name}={g.node or ('+'.join(g.nodes) or 'stopped')}"
                         f"({g.started_count}/{len(g.resources)})")
        if self.failed_actions:
            parts.append(f"failed={len(self.failed_actions)} ({self.failed_actions[0]})")
        return " ".join(parts)


def _bool(el: ET.Element, attr: str) -> bool:
    return el.get(attr, "false") == "true"


def _resource(el: ET.Element) -> ResourceState:
    return ResourceState(
        id=el.get("id", ""), agent=el.get("resource_agent", ""), role=el.get("role", "Stopped"),
        active=_bool(el, "active"), failed=_bool(el, "failed"), managed=el.get("managed", "true") == "true",
        nodes=tuple(n.get("name", "") for n in el.findall("node")), pending=el.get("pending") or None,
        blocked=_bool(el, "blocked"))


def parse_crm_mon(xml_text: str, seen_from: str) -> ClusterState:
    """Parse `crm_mon --one-shot --output-as=xml`; a pure function, tested on recorded output."""
    root = ET.fromstring(xml_text)
    summary = root.find("summary")
    dc_el = summary.find("current_dc") if summary is not None else None
    dc = dc_el.get("name") if dc_el is not None and _bool(dc_el, "present") else None
    quorate = dc_el is not None and _bool(dc_el, "with_quorum")
    nodes = {}
    for n in root.findall("nodes/node"):
        nodes[n.get("name", "")] = NodeState(
            name=n.get("name", ""), online=_bool(n, "online"), unclean=_bool(n, "unclean"),
            standby=_bool(n, "standby"), maintenance=_bool(n, "maintenance"), pending=_bool(n, "pending"),
            shutdown=_bool(n, "shutdown"), is_dc=_bool(n, "is_dc"))
    resources: dict[str, ResourceState] = {}
    groups: dict[str, GroupState] = {}
    res_root = root.find("resources")
    if res_root is not None:
        for el in res_root:
            if el.tag == "resource":
                r = _resource(el)
                resources[r.id] = r
            elif el.tag == "clone":  # one entry per clone, running wherever any instance runs
                inst = [_resource(r) for r in el.iter("resource")]
                if inst:
                    resources[el.get("id", "")] = ResourceState(
                        id=el.get("id", ""), agent=inst[0].agent,
                        role="Started" if any(i.role == "Started" for i in inst) else inst[0].role,
                        active=any(i.active for i in inst), failed=any(i.failed for i in inst),
                        managed=all(i.managed for i in inst), nodes=tuple(n for i in inst for n in i.nodes),
                        pending=next((i.pending for i in inst if i.pending), None),
                        blocked=any(i.blocked for i in inst), clone=True)
            elif el.tag == "group":
                members = tuple(_resource(r) for r in el.findall("resource"))
                groups[el.get("id", "")] = GroupState(name=el.get("id", ""), resources=members)
                resources.update({r.id: r for r in members})
    failed = tuple(
        FailedAction(resource=f.get("op_key", "").rsplit("_", 2)[0], node=f.get("node", ""),
                     task=f.get("task", ""), exitcode=int(f.get("exitcode", f.get("rc", "1")) or 1),
                     exitreason=html.unescape(f.get("exitreason", "")), status=f.get("status", ""))
        for f in root.findall("failures/failure"))
    versions = {}
    if dc_el is not None and dc_el.get("version"):
        versions["pacemaker"] = dc_el.get("version", "").split("-")[0]
    attributes: dict[str, dict[str, str]] = {}
    expected: dict[str, dict[str, str]] = {}
    for n in root.findall("node_attributes/node"):
        for a in n.findall("attribute"):
            attributes.setdefault(n.get("name", ""), {})[a.get("name", "")] = a.get("value", "")
            if a.get("expected") is not None:
                expected.setdefault(n.get("name", ""), {})[a.get("name", "")] = a.get("expected", "")
    return ClusterState(seen_from=seen_from, dc=dc, quorate=quorate, nodes=nodes, groups=groups,
                        resources=resources, failed_actions=failed, stack_versions=versions,
                        attributes=attributes, attribute_expected=expected)
