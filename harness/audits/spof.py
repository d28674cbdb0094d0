"""Single-point-of-failure audit as data: what the declared topology and the running cluster leave without a spare."""

from __future__ import annotations

import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from harness.drivers.base import Driver
from harness.errors import CommandFailed, CommandTimedOut, TransportError
from harness.result import Result
from harness.testbed.base import Testbed
from harness.topology import Group, Topology

__all__ = ["DECLARED_CHECKS", "LIVE_CHECKS", "Finding", "SpofWarning", "Unreadable", "audit_declared", "audit_live"]

Severity = Literal["error", "warning"]

DECLARED_CHECKS: dict[str, str] = {  # check → readable id ("{}" is the subject)
    "group-nodes": "group-{}-has-two-nodes", "service-network": "group-{}-has-two-service-networks",
    "heartbeat-paths": "node-{}-has-two-heartbeat-paths", "fencing": "fencing-declared",
    "quorum-policy": "quorum-policy", "disk-mirror": "disk-{}-mirrored"}
LIVE_CHECKS: tuple[str, ...] = ("stonith-enabled", "stonith-resource-started", "no-quorum-policy",
                                "corosync-links", "shared-disk-device", "app-agent-idempotent")

AGENT = "/usr/lib/ocf/resource.d/fallover/fallover-app"
OCF_ROOT = "/usr/lib/ocf"
QUERY_TIMEOUT = 15.0
CRM_EX_NOSUCH = 105  # pacemaker's exit code for "No such object": an unset property, a missing resource
AGENT_TIMEOUT = 40.0  # above the 20 s the agent gives itself for a start


class SpofWarning(UserWarning):
    """A single point of failure the suites report but accept (e.g. the testbed's one shared disk)."""


@dataclass(frozen=True)
class Finding:
    """One check on one subject; suites fail on ``failed`` (an error), warnings are only reported.

    ``unknown``: the audit could not read its source (a query failed, no node answered); the
    finding is then not ok and an error whatever the check's usual severity, so a suite fails
    on it with the reason — an unread setting is never taken for its default, nor for ok.

    >>> Finding("fencing", "local", ok=False, detail="fencing is off").failed
    True
    >>> f = Finding.unreadable("stonith-enabled", "local", "crm_attribute exited 102")
    >>> (f.ok, f.failed, str(f))
    (False, True, '[unknown] stonith-enabled-local: cannot tell: crm_attribute exited 102')
    """

    check: str
    subject: str
    ok: bool
    detail: str
    severity: Severity = "error"
    unknown: bool = False

    @classmethod
    def unreadable(cls, check: str, subject: str, why: str) -> Finding:
        return cls(check, subject, False, f"cannot tell: {why}", "error", unknown=True)

    @property
    def failed(self) -> bool:
        return not self.ok and self.severity == "error"

    @property
    def status(self) -> str:
        """"ok", "unknown", or the severity of a finding that is not ok."""
        return "ok" if self.ok else "unknown" if self.unknown else self.severity

    @property
    def id(self) -> str:
        template = DECLARED_CHECKS.get(self.check)
        return template.format(self.subject) if template else f"{self.check}-{self.subject}"

    def __str__(self) -> str:
        return f"[{self.status}] {self.id}: {self.detail}"


def _quorum(policy: str, nodes: int, stonith: bool, two_node: bool = False) -> tuple[bool, Severity, str]:
    """(ok, severity, detail) of a no-quorum-policy for ``nodes`` nodes; shared by both audits."""
    if policy == "ignore" and (nodes >= 3 or not stonith):
        return False, "error", (f"no-quorum-policy is ignore with {nodes} nodes{'' if stonith else ' and no fencing'}:"
                                " a partitioned minority keeps running its groups, so a partition is split brain")
    if policy == "ignore":
        return False, "warning", "two nodes with no-quorum-policy ignore: only fencing stops split brain"
    if nodes == 2 and not two_node:
        # without `two_node: 1` (cluster.corosync.quorum) the survivor of a node loss holds 1 vote of 2
        return False, "error", (f"two nodes with no-quorum-policy {policy} and no corosync two_node: the survivor "
                                "of a node failure has no quorum and stops its groups")
    return True, "error", f"no-quorum-policy is {policy} with {nodes} nodes: a minority partition stops"


def audit_declared(topology: Topology) -> list[Finding]:
    """Single points of failure the topology itself declares; no cluster needed.

    >>> from harness.topology import DEFAULT_TESTBED, load_topology
    >>> [f.id for f in audit_declared(load_topology(DEFAULT_TESTBED)) if not f.ok]
    ['group-app-has-two-service-networks', 'disk-shared-mirrored']
    """
    t = topology
    out: list[Finding] = []
    for g in t.groups:
        nodes = list(dict.fromkeys(g.nodes))
        ok = len(nodes) >= 2
        out.append(Finding("group-nodes", g.name, ok,
                           f"group {g.name} can run on {', '.join(nodes)}" if ok else
                           f"group {g.name} can only run on {nodes[0]}: one node is a single point of failure"))
        # a group has exactly one network in the model: always a SPOF, accepted like the one disk
        out.append(Finding("service-network", g.name, False, f"group {g.name} reaches its clients over one network "
                           f"({g.network}): losing it stops the service on every node", "warning"))
    hb = [n.name for n in t.networks if n.heartbeat]
    for node in t.node_names:
        ok = len(hb) >= 2
        out.append(Finding("heartbeat-paths", node, ok,
                           f"node {node} has {len(hb)} heartbeat paths ({', '.join(hb)})" if ok else
                           f"node {node} has one heartbeat path ({hb[0]}): one cable or network is a single "
                           "point of failure for membership, and its loss looks like a dead node"))
    c = t.cluster
    out.append(Finding("fencing", t.name, c.stonith,
                       "fencing is declared (cluster.stonith: true)" if c.stonith else
                       "fencing is off (cluster.stonith: false): a hung or cut-off node cannot be shut out, "
                       "so a takeover can mount the shared disk twice"))
    ok, sev, detail = _quorum(c.no_quorum_policy, len(t.nodes), c.stonith,
                              str(c.corosync.quorum.get("two_node")) == "1")
    out.append(Finding("quorum-policy", t.name, ok, detail, sev))
    for d in t.disks:
        groups = [g.name for g in t.groups if g.disk == d.name]
        if groups:  # an unused disk stops nothing
            out.append(Finding("disk-mirror", d.name, False,
                               f"shared disk {d.name} has no mirror: a pulled disk stops every group on it "
                               f"({', '.join(groups)})", "warning"))
    return out


# -- live -----------------------------------------------------------------------------------------

def audit_live(testbed: Testbed, driver: Driver, checks: Collection[str] | None = None) -> list[Finding]:
    """Single points of failure of the running cluster; ``checks`` limits it to some of LIVE_CHECKS.

    Read-only but for app-agent-idempotent: it runs the agent with a temporary data dir and port on
    a node that does not run the group (never on the active one, and not at all when where the group
    runs cannot be read). A check that cannot read its source gives an ``unknown`` finding.
    """
    wanted = LIVE_CHECKS if checks is None else tuple(checks)
    if unknown := set(wanted) - set(LIVE_CHECKS):
        raise ValueError(f"unknown live check(s) {sorted(unknown)}; known: {', '.join(LIVE_CHECKS)}")
    live = _Live(testbed, driver)
    out: list[Finding] = []
    for check in LIVE_CHECKS:
        if check not in wanted:
            continue
        try:
            out += getattr(live, check.replace("-", "_"))()
        except Unreadable as e:
            out.append(Finding.unreadable(check, live.topo.name, str(e)))
    return out


class Unreadable(Exception):
    """A query of the live cluster failed: what it says is unknown (not "unset", not ok)."""


_LINK = re.compile(r"^LINK ID (\d+)")
_PEER = re.compile(r"^\s*nodeid:\s*(\d+):\s*(\S+)")


def parse_cfgtool(text: str) -> dict[int, set[int]]:
    """`corosync-cfgtool -s` → {peer nodeid: ids of the links on which it is connected}.

    >>> parse_cfgtool("LINK ID 0 udp\\n\\tstatus:\\n\\t\\tnodeid: 2:\\tconnected\\n\\t\\tnodeid: 1:\\tlocalhost\\n")
    {2: {0}}
    """
    out: dict[int, set[int]] = {}
    link: int | None = None
    for line in text.splitlines():
        if m := _LINK.match(line):
            link = int(m.group(1))
        elif (m := _PEER.match(line)) and link is not None and m.group(2) != "localhost":
            out.setdefault(int(m.group(1)), set()).update([link] if m.group(2) == "connected" else [])
    return out


class _Live:
    """One method per live check, each returning its findings."""

    def __init__(self, testbed: Testbed, driver: Driver) -> None:
        self.tb = testbed
        self.topo = testbed.topology
        self.driver = driver
        self.running = [n for n in self.topo.node_names if testbed.running(n)]

    def _any(self, argv: list[str]) -> Result:
        """Run a read-only query on the first node that answers (any exit status); Unreadable if none does."""
        last = ""
        for node in self.running:
            try:
                return self.tb.node(node).run(argv, timeout=QUERY_TIMEOUT, check=False)
            except CommandFailed as e:  # timed out: that node did not answer
                last = f"{node}: {e}"
            except TransportError as e:
                last = str(e)
                continue
        raise Unreadable(f"no running node could run {' '.join(argv)}"
                         + (f" ({last})" if self.running else " (no node is running)"))

    def _property(self, name: str) -> str | None:
        """A cluster property's value; None only when it is unset (pacemaker's default applies).

        crm_attribute exits 0 with the value, CRM_EX_NOSUCH (105, "No such object") when the
        property is unset; anything else (102 "not connected", a timeout, …) is no answer at all.
        """
        r = self._any(["crm_attribute", "--type", "crm_config", "--name", name, "--query", "--quiet"])
        if r.exit_status == 0:
            return r.stdout.strip() or None
        if r.exit_status == CRM_EX_NOSUCH:
            return None
        raise Unreadable(f"crm_attribute --query {name} on {r.node} exited {r.exit_status}: "
                         f"{r.tail(count=2) or r.tail('stdout', 2) or 'no output'}")

    def _stonith(self) -> tuple[bool, str]:
        value = self._property("stonith-enabled") or "true (default)"
        return value.split()[0].lower() in ("true", "1", "yes", "y", "on"), value

    def stonith_enabled(self) -> list[Finding]:
        ok, value = self._stonith()
        return [Finding("stonith-enabled", self.topo.name, ok,
                        f"stonith-enabled is {value}" if ok else
                        f"stonith-enabled is {value}: no failed node is ever fenced, so a takeover risks a "
                        "doubly mounted shared disk")]

    def stonith_resource_started(self) -> list[Finding]:
        state = self.driver.state()
        if state is None:
            return [Finding.unreadable("stonith-resource-started", self.topo.name, "no node answers crm_mon")]
        fences = [(r, r.role == "Started" and not r.failed) for r in state.resources.values()
                  if r.agent.startswith("stonith:")]
        return [Finding("stonith-resource-started", r.id, ok, f"{r.id} ({r.agent}) is {r.role} on "
                        f"{', '.join(r.nodes) or 'no node'}" + ("" if ok else ": nobody can be fenced"))
                for r, ok in fences] or [Finding("stonith-resource-started", self.topo.name, False,
                                                 "no stonith resource is configured: fencing cannot run")]

    def no_quorum_policy(self) -> list[Finding]:
        policy = self._property("no-quorum-policy") or "stop"
        r = self._any(["corosync-cmapctl", "-g", "quorum.two_node"])
        if r.ok:
            two_node = r.stdout.strip().endswith("= 1")
        elif "CS_ERR_NOT_EXIST" in r.stderr + r.stdout:  # not set: corosync's default, 0
            two_node = False
        else:
            raise Unreadable(f"corosync-cmapctl -g quorum.two_node on {r.node} exited {r.exit_status}: "
                             f"{r.tail(count=2) or 'no output'}")
        ok, sev, detail = _quorum(policy, len(self.topo.nodes), self._stonith()[0], two_node)
        return [Finding("no-quorum-policy", self.topo.name, ok, detail, sev)]

    def corosync_links(self) -> list[Finding]:
        index = {self.topo.node_index(n): n for n in self.topo.node_names}
        out = []
        for node in self.topo.node_names:
            try:
                r = self.tb.node(node).run(["corosync-cfgtool", "-s"], timeout=QUERY_TIMEOUT, check=False)
            except (TransportError, CommandFailed) as e:  # also a powered-off node
                out.append(Finding.unreadable("corosync-links", node, f"{node}: links not readable: {e}"))
                continue
            if r.failed:
                out.append(Finding.unreadable("corosync-links", node,
                                              f"{node}: corosync-cfgtool -s exited {r.exit_status}: {r.tail()}"))
                continue
            peers = parse_cfgtool(r.stdout)
            weak = [f"{index.get(p, p)} over {len(ls)} link(s) {sorted(ls)}" for p, ls in sorted(peers.items())
                    if len(ls) < 2] + [f"{n} not at all" for i, n in index.items() if n != node and i not in peers]
            out.append(Finding("corosync-links", node, not weak,
                               f"{node} reaches {'; '.join(weak)}: one cable is a single point of failure for "
                               "membership" if weak else f"{node} reaches its {len(peers)} peers over ≥ 2 links"))
        return out

    def shared_disk_device(self) -> list[Finding]:
        out = []
        for g in self.topo.groups:
            if g.disk is None:
                continue  # no shared disk declared: nothing to check the device of
            r = self._any(["crm_resource", "--resource", f"{g.name}-fs", "--get-parameter", "device"])
            device = r.stdout.strip()
            if r.exit_status not in (0, CRM_EX_NOSUCH):
                out.append(Finding.unreadable("shared-disk-device", g.name,
                                              f"crm_resource --get-parameter device of {g.name}-fs on {r.node} "
                                              f"exited {r.exit_status}: {r.tail(count=2) or 'no output'}"))
                continue
            if not device:  # the resource (105) or its device parameter (0, nothing printed) is not there
                out.append(Finding("shared-disk-device", g.name, False,
                                   f"group {g.name}: no device parameter on {g.name}-fs (exit {r.exit_status}: "
                                   f"{r.tail(count=1) or 'no output'})"))
                continue
            for node in g.nodes:
                try:
                    ok = self.tb.node(node).run(["test", "-b", device], timeout=QUERY_TIMEOUT, check=False).ok
                except TransportError:  # a powered-off node: the group cannot go there either
                    ok = False
                out.append(Finding("shared-disk-device", f"{g.name}@{node}", ok,
                                   f"{device} is {'' if ok else 'not '}a block device on {node}"
                                   + ("" if ok else f": {g.name} cannot start there")))
        return out

    def app_agent_idempotent(self) -> list[Finding]:
        state = self.driver.state()
        if state is None:  # where the groups run is unknown: running the agent anywhere could hit the active one
            return [Finding.unreadable("app-agent-idempotent", g.name, "no node answers crm_mon, so where the group "
                                       "runs is unknown and the agent is not run anywhere")
                    for g in self.topo.groups]
        out = []
        for g in self.topo.groups:
            active = set(state.groups[g.name].nodes) if g.name in state.groups else set()
            spare = next((n for n in g.nodes if n in self.running and n not in active), None)
            if spare is None:
                out.append(Finding("app-agent-idempotent", g.name, False,
                                   f"group {g.name}: no running node outside {sorted(active)} to test the agent on",
                                   "warning"))
                continue
            out.append(_agent_round(self.tb, spare, g))
        return out


_SEQUENCE: tuple[tuple[str, int, str], ...] = (  # OCF idempotency: stop when stopped, start/stop twice
    ("stop", 0, "stop of a stopped app"), ("start", 0, "first start"), ("start", 0, "second start"),
    ("monitor", 0, "monitor after start"), ("stop", 0, "first stop"), ("stop", 0, "second stop"),
    ("monitor", 7, "monitor after stop"),  # 7 is OCF_NOT_RUNNING
)


def _agent_round(tb: Testbed, node: str, g: Group) -> Finding:
    """Run the group's application through the agent on ``node`` with a throw-away data dir and port."""
    t = tb.node(node)
    what = f"{'user commands' if g.application.start else 'sample app'} of {g.name} on {node}"
    tmp, base = "", None
    try:
        tmp = t.run(["mktemp", "-d", "/tmp/fallover-spof-XXXXXX"], timeout=QUERY_TIMEOUT).stdout.strip()
        port = t.run(["python3", "-c", "import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); "
                                       "print(s.getsockname()[1])"], timeout=QUERY_TIMEOUT).stdout.strip()
        kvapp = t.run(["crm_resource", "--resource", f"{g.name}-app", "--get-parameter", "kvapp"],
                      timeout=QUERY_TIMEOUT, check=False).stdout.strip()
        env = {"OCF_ROOT": OCF_ROOT, "OCF_RESOURCE_INSTANCE": "fallover-spof-audit",
               "OCF_RESKEY_CRM_meta_timeout": "20000", "OCF_RESKEY_data_dir": tmp,
               "OCF_RESKEY_port": port, "OCF_RESKEY_state_dir": f"{tmp}/run", "OCF_RESKEY_logfile": f"{tmp}/agent.log",
               **({"OCF_RESKEY_kvapp": kvapp} if kvapp else {})}
        if g.application.start:
            env |= {"OCF_RESKEY_start_cmd": g.application.start, "OCF_RESKEY_stop_cmd": g.application.stop or "",
                    "OCF_RESKEY_monitor_cmd": g.application.monitor or ""}
        # env -i: the agent sees what pacemaker-execd gives it, not this harness's environment
        base = ["env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", *(f"{k}={v}" for k, v in env.items()), AGENT]
        for action, want, step in _SEQUENCE:
            try:
                rc = t.run([*base, action], timeout=AGENT_TIMEOUT, check=False).exit_status
            except CommandTimedOut:  # the agent's own answer: it hung
                return Finding("app-agent-idempotent", g.name, False,
                               f"{what}: {step} did not return within {AGENT_TIMEOUT:g} s")
            if rc != want:
                log = t.run(["tail", "-n", "3", f"{tmp}/agent.log"], timeout=QUERY_TIMEOUT, check=False).stdout
                return Finding("app-agent-idempotent", g.name, False, f"{what}: {step} returned {rc}, expected "
                               f"{want}; agent log: {' | '.join(log.strip().splitlines()) or '-'}")
        return Finding("app-agent-idempotent", g.name, True, f"{what}: stop/start/start/stop/stop 0, then monitor 7")
    except (TransportError, CommandFailed) as e:  # the audit could not run, which says nothing of the agent
        return Finding.unreadable("app-agent-idempotent", g.name, f"{what}: {e}")
    finally:
        try:  # never leave a test app running on the spare node, nor its files
            if base is not None:
                t.run([*base, "stop"], timeout=AGENT_TIMEOUT, check=False)
            if tmp:
                t.run(["rm", "-rf", "--one-file-system", tmp], timeout=QUERY_TIMEOUT, check=False)
        except TransportError:
            pass
