"""keepalived state: each node's report parsed, the reports added up to a ClusterState, and what is unsettled."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest

from harness.drivers.keepalived import (
    GroupReport,
    KeepalivedDriver,
    NodeReport,
    build_state,
    parse_node_query,
)
from harness.topology import Topology, load_topology

ROOT = Path(__file__).resolve().parents[2]
VIP = ("service", "10.78.1.100")


@pytest.fixture
def topo() -> Topology:
    return load_topology(ROOT / "testbeds" / "local-keepalived.yaml")


def node(state: str, *, vip: bool = False, app: bool = False, failed: bool = False, busy: bool = False,
         pid: int | None = 7) -> NodeReport:
    return NodeReport(pid, frozenset({VIP} if vip else set()), {"app": GroupReport(state, failed, app, busy)})


def whole() -> dict[str, NodeReport | None]:
    return {"node1": node("MASTER", vip=True, app=True), "node2": node("BACKUP"), "node3": node("BACKUP")}


class FakeTestbed:
    """Only what the driver asks of a testbed while judging a snapshot."""

    def __init__(self, topology: Topology, off: tuple[str, ...] = ()) -> None:
        self.topology, self.off = topology, off

    def running(self, n: str) -> bool:
        return n not in self.off

    def adapter_states(self) -> dict[tuple[str, str], str]:
        return {(n, net.name): "up" for n in self.topology.node_names for net in self.topology.networks}


def test_parse_a_recorded_node_query() -> None:
    out = ('@keepalived 31\n@addr [{"ifname": "lo", "addr_info": [{"local": "127.0.0.1"}]}, {"ifname": "service", '
           '"addr_info": [{"local": "10.78.1.12"}, {"local": "10.78.1.100"}]}]\n'
           "@group app state=MASTER failed=1 app=yes busy=yes\n")
    r = parse_node_query(out)
    assert r.keepalived == 31 and VIP in r.addresses and ("lo", "127.0.0.1") in r.addresses
    assert r.groups["app"] == GroupReport("MASTER", True, True, True)
    dead = parse_node_query("@keepalived -\n@addr \n@group app state=- failed=- app=no busy=no\n")
    assert dead.keepalived is None and not dead.addresses and dead.groups["app"] == GroupReport("-", False, False, False)


def test_a_whole_cluster(topo: Topology) -> None:
    s = build_state(topo, whole())
    assert s.online == ["node1", "node2", "node3"] and s.group_node("app") == "node1"
    assert s.attributes["node2"]["vrrp-app"] == "BACKUP" and not s.failed_actions
    assert KeepalivedDriver(FakeTestbed(topo)).snapshot_gap(s, every_node=True) is None  # type: ignore[arg-type]


def test_a_powered_off_node_is_offline_and_the_group_moves(topo: Topology) -> None:
    s = build_state(topo, {"node1": None, "node2": node("MASTER", vip=True, app=True), "node3": node("BACKUP")})
    assert s.offline == ["node1"] and s.group_node("app") == "node2"
    driver = KeepalivedDriver(FakeTestbed(topo, off=("node1",)))  # type: ignore[arg-type]
    assert driver.snapshot_gap(s, placement=False) is None
    assert driver.snapshot_gap(s, every_node=True) == "keepalived not running on: node1"


@pytest.mark.parametrize("reports, gap", [
    ({"node1": node("MASTER", vip=True, app=True), "node2": node("MASTER", vip=True), "node3": node("BACKUP")},
     "app: the VIP is held by node1+node2"),
    ({"node1": node("STARTING", vip=True, busy=True), "node2": node("BACKUP"), "node3": node("BACKUP")},
     "app: the application runs on no node, the VIP is on node1"),
    ({"node1": node("MASTER", vip=True, app=True), "node2": node("FAULT"), "node3": node("BACKUP")},
     "app: VRRP state on node2 is FAULT"),
    ({"node1": node("FAULT", failed=True), "node2": node("MASTER", vip=True, app=True), "node3": node("BACKUP")},
     "failed action: app-app monitor on node1: rc=1 keepalived FAULT"),
    ({"node1": node("BACKUP"), "node2": node("MASTER", vip=True, app=True), "node3": node("BACKUP")},
     "group app on node2, not on node1"),
    ({"node1": node("MASTER", vip=True, app=True), "node2": node("BACKUP", busy=True), "node3": node("BACKUP")},
     "in flight: app-app notifying on node2 on node1"),
    ({"node1": node("MASTER", vip=True, app=True), "node2": node("BACKUP", pid=None), "node3": node("BACKUP")},
     "keepalived not running on: node2"),
])
def test_what_keeps_a_snapshot_from_being_whole(topo: Topology, reports: dict[str, NodeReport | None],
                                                 gap: str) -> None:
    driver = KeepalivedDriver(FakeTestbed(topo))  # type: ignore[arg-type]
    assert (driver.snapshot_gap(build_state(topo, reports)) or "").startswith(gap)


def test_the_app_left_running_where_the_vip_has_gone_is_stopping_not_a_second_copy(topo: Topology) -> None:
    s = build_state(topo, {"node1": node("MASTER", vip=True, app=True), "node2": node("BACKUP", app=True),
                           "node3": node("BACKUP")})
    assert s.groups["app"].nodes == ("node1",) and s.group_node("app") == "node1"
    assert s.pending_actions() == ["app-app notifying on node2 on node1"]


def test_capabilities_say_what_keepalived_lacks(topo: Topology) -> None:
    caps = KeepalivedDriver(FakeTestbed(topo)).capabilities()  # type: ignore[arg-type]
    assert caps == {"fencing": "keepalived has no fencing",
                    "resource_manager": "keepalived has no resource manager (no planned moves, standby or maintenance)",
                    "pacemaker": "the stack is keepalived", "shared_disk": "a keepalived group has no shared disk",
                    "quorum": "keepalived has no membership or quorum: a cut-off or hung master keeps its VIP "
                              "while another node takes it too"}
    from harness.drivers.base import DRIVER_CAPABILITIES

    assert set(caps) == set(DRIVER_CAPABILITIES)


def _script() -> ModuleType:
    path = ROOT / "harness" / "testbed" / "assets" / "fallover-keepalived"
    loader = importlib.machinery.SourceFileLoader("fallover_keepalived", str(path))
    spec = importlib.util.spec_from_loader("fallover_keepalived", loader)
    assert spec is not None
    mod = importlib.util.module_from_spec(spec)
    loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("me, preempt, log, lost", [
    ("node2", True, [("node1", "MASTER")], "node1"),                       # the master's adverts stopped
    ("node1", True, [("node1", "BACKUP"), ("node2", "MASTER")], None),    # failback: node1 preempts node2
    ("node1", False, [("node2", "MASTER")], "node2"),                      # nopreempt: only a lost master is replaced
    ("node2", True, [("node1", "MASTER"), ("node1", "STOP")], None),       # node1 resigned
    ("node1", True, [], None),                                            # first election
])
def test_a_takeover_names_the_master_it_replaced_only_when_that_one_did_not_resign(
        tmp_path: Path, me: str, preempt: bool, log: list[tuple[str, str]], lost: str | None) -> None:
    mod = _script()
    path = tmp_path / "notifications.log"
    path.write_text("".join(json.dumps({"stack": "keepalived", "rsc": "app-ip", "node": n, "desc": d}) + "\n"
                            for n, d in log) + "not json\n")
    cfg = {"group": "app", "node": me, "preempt": preempt, "notification_log": str(path),
           "priorities": {"node1": 250, "node2": 230, "node3": 210}}
    assert mod.lost_master(cfg) == lost


def test_notification_lines_have_the_alert_agents_format(tmp_path: Path) -> None:
    from harness.notifications import read_notifications

    mod = _script()
    path = tmp_path / "notifications.log"
    mod.record({"notification_log": str(path)}, kind="node", node="node1", desc="lost")
    [ev] = read_notifications(path)
    assert ev.node == "node1" and ev.data["kind"] == "node" and ev.data["desc"] == "lost"
