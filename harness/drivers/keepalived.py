"""The keepalived driver: a ClusterState read from every node (keepalived, the VIP, the application).

keepalived has no membership, no resource manager and no fencing: each node only knows its own
VRRP state. So the state is assembled from each running node's own report (one shell command,
``NODE_QUERY``): keepalived's PID, the addresses it holds (``ip -j addr``), and per group the VRRP
state and failure mark the notify/check script keeps (harness/testbed/vrrp.py), whether the
application runs, and whether a notify is still starting or stopping it. A node is "online" when
its keepalived runs. Steering is limited to what keepalived has: stop and start it on a node,
clear the failure marks; planned moves are refused (``capabilities``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field

from harness.drivers.polling import Polling
from harness.drivers.state import (
    ClusterState,
    FailedAction,
    GroupState,
    NodeState,
    ResourceState,
)
from harness.errors import CommandFailed, FalloverError, TransportError, WaitTimeout
from harness.testbed import vrrp
from harness.testbed.base import Capabilities, Progress, Testbed, quiet
from harness.topology import Topology
from harness.wait import wait_until

SETTLE_QUIET_S = round(vrrp.MASTER_DOWN_S + 0.4, 1)
"""After a fault change: a backup takes over only after the master-down interval (vrrp.MASTER_DOWN_S,
~1.2 s); a snapshot taken inside that window can look whole while a takeover is about to happen."""
STACK_PROCESSES = ("keepalived",)
NODE_QUERY = r"""
p=$(cat {pid} 2>/dev/null); if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "@keepalived $p"; else echo "@keepalived -"; fi
echo "@addr $(ip -j addr show 2>/dev/null)"
for g in "$@"; do
  s=$(cat {run}/$g.state 2>/dev/null || echo -); f=$(cat {run}/$g.failed 2>/dev/null || echo -)
  app=no; set -- $(cat /run/fallover-app-$g/$g-app.pid 2>/dev/null) ""
  if [ -n "$1" ] && [ -e "/proc/$1" ]; then app=yes; elif [ -e /run/fallover-app-$g/$g-app.track ]; then app=yes; fi
  busy=no; [ -e {run}/$g.lock ] && ! flock -s -n {run}/$g.lock true 2>/dev/null && busy=yes
  echo "@group $g state=$s failed=$f app=$app busy=$busy"
done
""".replace("{pid}", vrrp.PID_FILE).replace("{run}", vrrp.RUN_DIR)
"""One shell on one node: `@keepalived PID|-`, `@addr <ip -j addr>`, then `@group G state= failed= app= busy=`."""


@dataclass(frozen=True)
class GroupReport:
    state: str          # the VRRP state the last notify wrote (MASTER, BACKUP, FAULT, STOP, STARTING, FAILED, -)
    failed: bool        # the failure mark is set (the instance is held in FAULT until cleanup)
    app: bool           # the application runs here
    busy: bool          # a notify is starting or stopping the application right now


@dataclass(frozen=True)
class NodeReport:
    keepalived: int | None
    addresses: frozenset[tuple[str, str]]   # (device, address)
    groups: dict[str, GroupReport] = field(default_factory=dict)


def parse_node_query(out: str) -> NodeReport:
    """NODE_QUERY's output as a NodeReport (a pure function, tested on recorded output).

    >>> r = parse_node_query('@keepalived 42\n@addr [{"ifname": "service", "addr_info": '
    ...     '[{"local": "10.0.0.11"}, {"local": "10.0.0.100"}]}]\n'
    ...     '@group app state=MASTER failed=0 app=yes busy=no\n')
    >>> r.keepalived, ("service", "10.0.0.100") in r.addresses, r.groups["app"].state
    (42, True, 'MASTER')
    """
    pid: int | None = None
    addrs: set[tuple[str, str]] = set()
    groups: dict[str, GroupReport] = {}
    for line in out.splitlines():
        tag, _, rest = line.partition(" ")
        if tag == "@keepalived":
            pid = int(rest) if rest.strip().isdigit() else None
        elif tag == "@addr":
            try:
                links = json.loads(rest or "[]")
            except ValueError:
                links = []
            addrs |= {(link.get("ifname", ""), a.get("local", "")) for link in links
                      for a in link.get("addr_info", [])}
        elif tag == "@group":
            name, *pairs = rest.split()
            kv = dict(p.partition("=")[::2] for p in pairs)
            groups[name] = GroupReport(state=kv.get("state", "-"), failed=kv.get("failed", "-") not in ("0", "-", ""),
                                       app=kv.get("app") == "yes", busy=kv.get("busy") == "yes")
    return NodeReport(pid, frozenset(addrs), groups)


def build_state(topology: Topology, reports: dict[str, NodeReport | None]) -> ClusterState:
    """The cluster as the nodes' own reports add up (None: the node is off or did not answer).

    Per group two resources: ``<g>-ip`` (the VRRP address, on whichever nodes hold it) and
    ``<g>-app`` (where the application runs on a node holding the VIP; a notify in flight, or the
    application still running where the VIP has gone, is ``pending``). A set
    failure mark is a failed action of ``<g>-app`` on that node. The VRRP state of each node is
    given as a node attribute ``vrrp-<g>``.
    """
    nodes = {n: NodeState(name=n, online=r is not None and r.keepalived is not None,
                          pending=r is not None and r.keepalived is not None
                          and any(gr.state == "-" for gr in r.groups.values()))
             for n, r in ((n, reports.get(n)) for n in topology.node_names)}
    live = {n: r for n, r in reports.items() if r is not None and r.keepalived is not None}
    groups: dict[str, GroupState] = {}
    resources: dict[str, ResourceState] = {}
    failed: list[FailedAction] = []
    attributes: dict[str, dict[str, str]] = {}
    for g in topology.groups:
        holders = tuple(n for n in topology.node_names if n in reports and reports[n] is not None
                        and (g.network, str(g.service_ip)) in reports[n].addresses)  # type: ignore[union-attr]
        running = [n for n, r in live.items() if g.name in r.groups and r.groups[g.name].app]
        # The group's application is where the VIP is: clients reach it only there. On a node that lost the
        # VIP it runs on until the notify there has stopped it (~0.2 s after a preemption): pending, not a
        # second active copy (no shared disk for two copies to corrupt, no address to reach this one).
        apps = tuple(n for n in running if n in holders)
        busy = sorted({n for n, r in live.items() if g.name in r.groups and r.groups[g.name].busy}
                      | {n for n in running if n not in holders})
        ip = ResourceState(id=f"{g.name}-ip", agent="keepalived:vrrp", role="Started" if holders else "Stopped",
                           active=bool(holders), failed=False, managed=True, nodes=holders)
        app = ResourceState(id=f"{g.name}-app", agent="ocf:fallover:fallover-app",
                            role="Started" if apps else "Stopped", active=bool(apps), failed=False, managed=True,
                            nodes=apps, pending=f"Notifying on {','.join(busy)}" if busy else None)
        groups[g.name] = GroupState(name=g.name, resources=(ip, app))
        resources |= {ip.id: ip, app.id: app}
        for n, r in live.items():
            gr = r.groups.get(g.name)
            if gr is None:
                continue
            attributes.setdefault(n, {})[f"vrrp-{g.name}"] = gr.state
            if gr.failed:
                failed.append(FailedAction(resource=app.id, node=n, task="monitor", exitcode=1,
                                           exitreason="failure mark set: the instance is held in FAULT until cleanup",
                                           status="keepalived FAULT"))
    seen = next(iter(live), next((n for n, r in reports.items() if r is not None), "harness"))
    return ClusterState(seen_from=seen, dc=None, quorate=False, nodes=nodes, groups=groups, resources=resources,
                        failed_actions=tuple(failed), attributes=attributes)


class KeepalivedDriver(Polling):
    """Reads every running node (in parallel) and steers keepalived through the testbed."""

    membership = False  # a node "lost" is keepalived seen gone by the harness: VRRP has no membership
    poll_interval = 0.2

    def __init__(self, testbed: Testbed, *, query_timeout: float = 5.0, quiet_s: float = SETTLE_QUIET_S) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        self.query_timeout = query_timeout
        self.quiet_s = quiet_s

    def capabilities(self) -> Capabilities:
        disk = None if any(g.disk for g in self.topology.groups) else "a keepalived group has no shared disk"
        return {"fencing": "keepalived has no fencing",
                "resource_manager": "keepalived has no resource manager (no planned moves, standby or maintenance)",
                "pacemaker": "the stack is keepalived", "shared_disk": disk,
                "quorum": "keepalived has no membership or quorum: a cut-off or hung master keeps its VIP "
                          "while another node takes it too"}

    # -- reading ------------------------------------------------------------------------------

    def report(self, node: str) -> NodeReport | None:
        try:
            r = self.testbed.node(node).run(["sh", "-c", NODE_QUERY, "sh", *(g.name for g in self.topology.groups)],
                                            timeout=self.query_timeout, check=False)
        except (TransportError, CommandFailed):
            return None
        return parse_node_query(r.stdout) if r.ok else None

    def reports(self) -> dict[str, NodeReport | None]:
        running = [n for n in self.topology.node_names if self.testbed.running(n)]
        with ThreadPoolExecutor(max_workers=max(1, len(running))) as pool:
            answers = dict(zip(running, pool.map(self.report, running)))
        return {n: answers.get(n) for n in self.topology.node_names}

    def state(self) -> ClusterState | None:
        reports = self.reports()
        if all(r is None for r in reports.values()):
            return None
        return build_state(self.topology, reports)

    def expected_node(self, group: str, state: ClusterState) -> str | None:
        """The first node of the group's list whose keepalived runs (the highest VRRP priority)."""
        return next((n for n in self.topology.group(group).nodes if n in state.online), None)

    # -- settled ------------------------------------------------------------------------------

    def snapshot_gap(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None:
        """Why the snapshot is not a whole cluster (None when it is).

        Every (powered-on, or with ``every_node`` every declared) node runs keepalived; adapters up;
        no failure mark; per group exactly one node holds the VIP, the application runs there and
        only there, that node says MASTER and every other node of the group BACKUP; a cascading
        group on its expected node (``placement``); no notify in flight.
        """
        want = self.topology.node_names if every_node else [n for n in self.topology.node_names
                                                               if self.testbed.running(n)]
        gap = self.members_gap(s, want, "keepalived not running on")
        if gap:
            return gap
        for g in self.topology.groups:
            gs = s.groups[g.name]
            ip, app = gs.resources
            if len(ip.nodes) != 1:
                return f"{g.name}: the VIP is held by {'+'.join(ip.nodes) or 'no node'}"
            holder = ip.nodes[0]
            if app.nodes != (holder,):
                return f"{g.name}: the application runs on {'+'.join(app.nodes) or 'no node'}, the VIP is on {holder}"
            for n in g.nodes:
                st = s.attributes.get(n, {}).get(f"vrrp-{g.name}")
                if n in s.online and st != ("MASTER" if n == holder else "BACKUP"):
                    return f"{g.name}: VRRP state on {n} is {st or 'unknown'}"
            if placement and g.policy == "cascading" and holder != self.expected_node(g.name, s):
                return f"group {g.name} on {holder}, not on {self.expected_node(g.name, s)}"
        pending = s.pending_actions()
        return f"in flight: {', '.join(pending)}" if pending else None

    def adapters_down(self) -> list[str]:
        links = getattr(self.testbed, "adapter_states", None)
        if links is not None:
            return [f"{node}/{net}" for (node, net), st in links().items() if st != "up" and self.testbed.running(node)]
        return [f"{n}/{net.name}" for n in self.topology.node_names if self.testbed.running(n)
                for net in self.topology.networks if self.testbed.carrier(n, net.name) is False]

    def busy(self, s: ClusterState) -> str | None:
        """Nothing beyond the snapshot: a notify in flight is already in it (the app resource's ``pending``)."""
        return None

    def unsettled(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None:
        return self.snapshot_gap(s, placement, every_node=every_node)

    def settled(self, s: ClusterState, placement: bool = True) -> bool:
        return self.unsettled(s, placement) is None

    def wait_settled(self, *, timeout: float = 90.0, progress: Progress = quiet,
                     placement: bool = True) -> ClusterState:
        what = "cluster settling" if placement else "cluster whole (groups anywhere)"
        why = ["no node answered"]
        last: list[ClusterState | None] = [None]
        shown = [""]

        def check() -> ClusterState | None:
            s = self.state()
            last[0] = s
            reason = "no node answers" if s is None else self.unsettled(s, placement)
            if reason is None and (left := self.quiet_left()) > 0:
                reason = f"waiting {left:.1f} s more after the last fault change"
            why[0] = reason or ""
            line = (s.summary() if s else "no node answers") + (f" ({reason})" if reason else "")
            if line != shown[0]:
                progress(f"{what}: {line}")
                shown[0] = line
            return s if reason is None else None

        s = wait_until(check, timeout=timeout, what=what, interval=0.2,
                       describe=lambda: f"{last[0].summary() if last[0] else 'no node answers'}; "
                                        f"not settled: {why[0]}")
        assert s is not None  # wait_until returns only a truthy answer
        return s

    def recover(self, *, timeout: float = 90.0, progress: Progress = quiet, placement: bool = True) -> ClusterState:
        """The operator's step after a repair: clear failure marks, then wait until every node runs
        keepalived, exactly one holds each VIP and the application answers there (powering stopped
        nodes on is the testbed's business)."""
        s = self.state()
        if s is not None and s.failed_actions:
            progress(f"clearing {len(s.failed_actions)} failure mark(s)")
            self.cleanup()
        return self.wait_settled(timeout=timeout, progress=progress, placement=placement)

    # -- steering -----------------------------------------------------------------------------

    def _no_resource_manager(self, what: str) -> FalloverError:
        return FalloverError(f"{what}: {self.capabilities()['resource_manager']}")

    def move_group(self, group: str, node: str, *, timeout: float = 60.0, progress: Progress = quiet) -> ClusterState:
        raise self._no_resource_manager(f"move {group} to {node}")

    def moved_to(self, group: str, node: str, *, timeout: float = 60.0,
                 progress: Progress = quiet) -> AbstractContextManager[ClusterState]:
        raise self._no_resource_manager(f"move {group} to {node}")

    def restart_group(self, group: str, *, timeout: float = 120.0) -> None:
        raise self._no_resource_manager(f"restart {group}")

    def clear_move(self, group: str) -> None:
        """Nothing to clear: keepalived never made a move constraint."""

    def config_dump(self) -> str:
        raise self._no_resource_manager("back up the cluster configuration")

    def config_restore(self, cib_xml: str) -> None:
        raise self._no_resource_manager("restore the cluster configuration")

    def application_stopped(self, group: str, *, timeout: float = 60.0,
                            progress: Progress = quiet) -> AbstractContextManager[str]:
        raise self._no_resource_manager(f"stop {group}'s application and keep its data where it is")

    def cleanup(self, resource: str | None = None) -> None:
        """Clear the failure marks on every running node (keepalived's track_file sees it at once)."""
        marks = " ".join(vrrp.failed_file(g.name) for g in self.topology.groups
                         if resource in (None, g.name, f"{g.name}-app"))
        for n in self.topology.node_names:
            if self.testbed.running(n):
                self.testbed.node(n).run(["sh", "-c", f'for f in {marks}; do [ -e "$f" ] && echo 0 >"$f"; done; true'],
                                         timeout=10)

    def admin(self, argv: list[str], timeout: float = 30.0) -> None:
        """Run a command on the first running node (keepalived has no cluster-wide administration)."""
        for n in self.topology.node_names:
            if self.testbed.running(n):
                self.testbed.node(n).run(argv, timeout=timeout)
                return
        raise TransportError("cluster", "no running node to run " + " ".join(argv))

    def stop_services(self, node: str, *, timeout: float = 60.0, signalled: Callable[[], None] = lambda: None) -> None:
        """Graceful stop: SIGTERM keepalived; it resigns (priority 0) and its notify_stop stops the application."""
        t = self.testbed.node(node)
        t.run(f"kill -TERM $(cat {vrrp.PID_FILE})", timeout=10)
        signalled()
        deadline = time.monotonic() + timeout
        while t.run(f"kill -0 $(cat {vrrp.PID_FILE}) 2>/dev/null || pidof keepalived", timeout=10, check=False).ok:
            if time.monotonic() > deadline:
                raise WaitTimeout(f"keepalived on {node} to stop", timeout)
            time.sleep(0.1)

    def start_services(self, node: str) -> None:
        self.testbed.start_services(node)

    def stack_processes(self) -> tuple[str, ...]:
        return STACK_PROCESSES

    def versions(self, node: str) -> dict[str, str]:
        try:
            r = self.testbed.node(node).run(["keepalived", "--version"], timeout=10, check=False)
        except TransportError:
            return {"keepalived": "?"}
        text = (r.stderr or r.stdout).split()
        return {"keepalived": text[1].lstrip("v") if len(text) > 1 else "?"}
