"""Fence faults without a cluster: the plan's cases and outcomes, the generated levels, the broker's switch,
and the `fencing` checker on literal histories (a takeover before a successful fence fails it)."""

from __future__ import annotations

import json
import socket
import threading
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from checker_history import BASE, ctx, ev, probe, topo  # type: ignore[attr-defined]

from harness.checkers import UNKNOWN
from harness.checkers.fencing import check_fencing
from harness.errors import UsageError
from harness.faults import FAULTS, Target
from harness.plan import Case, expect, plan
from harness.testbed import clusterconf, fencedev
from harness.testbed.fence_broker import Broker
from harness.testbed.layout import Layout
from harness.timeline import (
    CLUSTER_GROUP_STARTED,
    CLUSTER_NODE_JOINED,
    CLUSTER_NODE_LOST,
    FAULT_INJECTED,
    FENCED,
    Timeline,
)
from harness.topology import DEFAULT_TESTBED, Topology, load_topology

TOPO = load_topology(DEFAULT_TESTBED)
ALL = {k: None for k in ("power", "freeze", "spawn", "adapter", "network", "rules", "impair", "disk", "disk_modes",
                         "fence_device", "fencing", "resource_manager", "pacemaker", "shared_disk", "quorum")}


def two_levels() -> Topology:
    data = TOPO.model_dump(exclude={"source"})
    data["cluster"]["fencing_topology"] = ["fence", "backup"]
    return Topology.model_validate(data)


# -- the plan -----------------------------------------------------------------------------------


def test_fence_faults_strike_the_home_node_with_a_power_off_and_expect_no_takeover() -> None:
    cases = [c for c in plan(TOPO, capabilities=ALL) if c.fault in ("fence_fail", "fence_hang")]
    assert [c.id for c in cases] == ["fence_fail-node1", "fence_hang-node1"]
    assert all(c.trigger is None for c in cases)  # the fault powers the node off itself
    for c in cases:
        e = expect(TOPO, c, {"app": "node1"})[0]
        assert e.outcome == "outage" and e.takeover is None
        assert "no successful fence" in e.why and "must not recover app elsewhere" in e.why


def test_with_two_levels_a_broken_first_level_is_fenced_by_the_second() -> None:
    t = two_levels()
    cases = {c.id: c for c in plan(t, capabilities=ALL) if c.fault == "fence_fail"}
    assert set(cases) == {"fence_fail-node1", "fence_fail-node1-fence"}
    first_only = expect(t, cases["fence_fail-node1-fence"], {"app": "node1"})[0]
    assert (first_only.outcome, first_only.takeover) == ("fallover", "node2")
    assert "level 1 (fence) fails; level 2 (backup) fences node1" in first_only.why
    assert expect(t, cases["fence_fail-node1"], {"app": "node1"})[0].outcome == "outage"
    # a hang of level 1 only: fallover, later by the fence timeout
    hang = expect(t, Case("fence_hang", Target(node="node1", device="fence")), {"app": "node1"})[0]
    assert hang.outcome == "fallover" and hang.limits["max_fallover_s"] == pytest.approx(15 + 15 * 1.2)


def test_without_a_fence_device_capability_the_fence_cases_are_left_out_with_the_reason() -> None:
    from harness.plan import excluded
    left = [e for e in excluded(TOPO, ["fence_fail"], capabilities={**ALL, "fence_device": "no broker here"})]
    assert [e.case.id for e in left] == ["fence_fail-node1"] and "no broker here" in left[0].why


def test_an_unknown_fence_device_is_refused_in_one_line() -> None:
    with pytest.raises(UsageError, match="unknown fence device 'ipmi'; the topology has fence"):
        FAULTS["fence_fail"].validate(TOPO, Target(node="node1", device="ipmi"))
    assert Target(node="node1", device="fence").label == "node1-fence"


def test_fencing_topology_is_validated() -> None:
    data = TOPO.model_dump(exclude={"source"})
    for bad in (["fence", "fence"], ["Fence"], []):
        data["cluster"]["fencing_topology"] = bad
        with pytest.raises(Exception):
            Topology.model_validate(data)


# -- the generated configuration ------------------------------------------------------------------


def test_two_levels_make_two_devices_and_a_fencing_topology_that_crm_verify_accepts(tmp_path: Path) -> None:
    layout = Layout(two_levels(), instance="unit", state_root=tmp_path)
    xml = clusterconf.cib_xml(layout, clusterconf.empty_cib())
    (tmp_path / "cib.xml").write_text(xml)
    assert clusterconf.verify(str(tmp_path / "cib.xml")) == ""
    root = ET.fromstring(xml)
    brokers = {p.get("id"): p.find("instance_attributes/nvpair[@name='broker']").get("value")  # type: ignore[union-attr]
               for p in root.iter("primitive") if p.get("type") == "fence_fallover"}
    assert brokers == {"fence": str(tmp_path / "fo-local-unit" / "fence.sock"),
                       "backup": str(tmp_path / "fo-local-unit" / "fence.backup.sock")}
    levels = [(lv.get("target"), lv.get("index"), lv.get("devices")) for lv in root.iter("fencing-level")]
    assert ("node1", "1", "fence") in levels and ("node1", "2", "backup") in levels and len(levels) == 6
    props = {n.get("name"): n.get("value") for n in root.iter("nvpair")}
    assert props["stonith-timeout"] == "15s"


def test_one_level_is_the_single_device_without_a_topology(tmp_path: Path) -> None:
    root = ET.fromstring(clusterconf.cib_xml(Layout(TOPO, instance="unit", state_root=tmp_path),
                                             clusterconf.empty_cib()))
    assert root.find(".//fencing-topology") is None
    assert [p.get("id") for p in root.iter("primitive") if p.get("class") == "stonith"] == ["fence"]


# -- the broker's switch ------------------------------------------------------------------------------


@pytest.fixture
def broker(tmp_path: Path) -> Broker:
    layout = Layout(two_levels(), instance="unit", state_root=tmp_path)
    layout.state.mkdir(parents=True)
    return Broker(layout)


def events(b: Broker) -> list[dict[str, object]]:
    return [json.loads(x) for x in b.events.read_text().splitlines()] if b.events.exists() else []


def test_a_failed_device_answers_power_actions_with_an_error_and_records_it(broker: Broker) -> None:
    L = broker.layout
    L.fence_socket_for("fence").touch()  # what fencedev looks for: the broker is there
    fencedev.set_mode(L, "fence", "fail")
    assert fencedev.mode(L, "fence") == "fail" and fencedev.mode(L, "backup") is None  # no socket: not there
    assert broker.handle("off node1", "fence").startswith("ERR device fence failed")
    assert broker.handle("ping", "fence") == "OK"  # the monitor still answers: a jammed switch, not a dead port
    assert broker.handle("on node1", "fence").startswith("ERR")
    rec = events(broker)
    assert [(r["action"], r["device"]) for r in rec] == [("off", "fence")]  # `on` (the fault's own check): not
    assert str(rec[0]["outcome"]).startswith("ERR fence_fail")
    fencedev.set_mode(L, "fence", "ok")
    assert fencedev.mode(L, "fence") == "ok" and not L.fence_fault("fence").exists()


def test_a_hung_device_holds_the_request_until_the_agent_hangs_up(broker: Broker) -> None:
    L = broker.layout
    L.fence_fault("backup").parent.mkdir(parents=True, exist_ok=True)
    L.fence_fault("backup").write_text("hang\n")
    agent, ours = socket.socketpair()
    answer: list[str] = []
    t = threading.Thread(target=lambda: answer.append(broker.handle("off node2", "backup", ours)))
    t.start()
    time.sleep(0.5)
    assert not answer, "a hung device answered"
    agent.close()  # the fencer killed the agent at its timeout
    t.join(60)
    assert answer == ["ERR hung"]
    rec = events(broker)
    assert len(rec) == 1 and str(rec[0]["outcome"]).startswith("TIMEOUT fence_hang: device backup hung")


def test_a_hang_ends_with_the_heal(broker: Broker) -> None:
    L = broker.layout
    L.fence_fault("fence").parent.mkdir(parents=True, exist_ok=True)
    L.fence_fault("fence").write_text("hang\n")
    answer: list[str] = []
    t = threading.Thread(target=lambda: answer.append(broker.handle("off node2", "fence")))
    t.start()
    time.sleep(0.3)
    L.fence_fault("fence").unlink()
    t.join(60)
    assert answer and answer[0].startswith("ERR device fence hung")


# -- the checker ---------------------------------------------------------------------------------------


def fence_history(*extra: object, samples: list | None = None) -> Timeline:
    events = [ev(-5, CLUSTER_GROUP_STARTED, "node1", group="app"),
              ev(0, FAULT_INJECTED, "node1", fault="fence_fail", target="node1", family="fencing"),
              ev(2, CLUSTER_NODE_LOST, "node1"), *extra]
    return Timeline(events=list(events), probe=samples or probe(-1, 0, True, "node1") + probe(0, 8, False, None))  # type: ignore[arg-type]


def fence(t: float, outcome: str = "OK", device: str = "fence", took: float = 0.2) -> object:
    e = ev(t, FENCED, "node1", action="off", outcome=outcome, device=device)
    e.data["done"] = e.wall + took
    return e


EXP = {"group": "app", "fence_victim": "node1", "fence_broken": True, "expect_fallover": False}


def judge(t: Timeline, **exp: object):  # type: ignore[no-untyped-def]
    return check_fencing(ctx(t, **{**EXP, **exp}))


def test_no_takeover_while_every_fence_fails_passes() -> None:
    v = judge(fence_history(fence(2.5, "ERR fence_fail: device fence failed"), fence(3.5, "ERR x")))
    assert v.valid is True, v.explanation
    assert "no takeover of app from node1" in v.explanation and "2 fence attempt(s) failed" in v.explanation


def test_a_takeover_without_a_successful_fence_fails_and_says_so() -> None:
    t = fence_history(fence(2.5, "ERR fence_fail: device fence failed"), ev(4, CLUSTER_GROUP_STARTED, "node2",
                                                                            group="app"))
    v = judge(t)
    assert v.valid is False and v.measured == "node2"
    assert "started on node2 at +4.00 s, although it was never fenced" in v.explanation
    assert "a takeover without a successful fence" in v.explanation


def test_a_takeover_seen_only_by_the_probe_counts_too() -> None:
    t = fence_history(samples=probe(-1, 0, True, "node1") + probe(0, 3, False, None) + probe(3, 6, True, "node2"))
    v = judge(t, fence_broken=False)
    assert v.valid is False and "never fenced" in v.explanation


def test_a_takeover_after_the_second_level_fenced_passes() -> None:
    t = fence_history(fence(2.5, "ERR fence_fail", "fence"), fence(3.0, "OK", "backup", took=0.5),
                      ev(4, CLUSTER_GROUP_STARTED, "node2", group="app"))
    v = judge(t)
    assert v.valid is True and "after node1 was fenced" in v.explanation and "device backup" in v.explanation


def test_a_takeover_before_the_fence_completed_fails() -> None:
    t = fence_history(fence(3.0, "OK", took=2.0), ev(4, CLUSTER_GROUP_STARTED, "node2", group="app"))
    v = judge(t, fence_broken=False)
    assert v.valid is False and "before it was fenced" in v.explanation


def test_a_takeover_after_the_victim_rejoined_needs_no_fence() -> None:
    t = fence_history(fence(2.5, "ERR x"), ev(20, CLUSTER_NODE_JOINED, "node1"),
                      ev(25, CLUSTER_GROUP_STARTED, "node2", group="app"))
    assert judge(t).valid is True


def test_broken_devices_the_cluster_never_asked_are_unknown_and_no_victim_is_not_judged() -> None:
    assert judge(fence_history()).valid == UNKNOWN
    v = check_fencing(ctx(fence_history()))
    assert v.valid is True and not v.judged
    assert BASE  # the histories share checker_history's origin


def test_a_monitor_that_timed_out_is_a_failed_operation_and_a_cancelled_one_is_not() -> None:
    from harness.checkers.notification import op_failed
    # as alerted on the embedded cluster when the Filesystem monitor timed out on a hung disk (disk_hang)
    timed_out = {"kind": "resource", "rsc": "app-fs", "task": "monitor", "interval": 2000, "rc": 1, "target_rc": 0,
                 "status": 2, "desc": "Timed Out"}
    cancelled = {**timed_out, "rc": 0, "status": 1, "desc": "Cancelled"}
    assert op_failed(timed_out) and not op_failed(cancelled)
    assert not op_failed({**timed_out, "rc": 0, "status": 0, "desc": "ok"})
    assert not op_failed({**timed_out, "status": -1})  # pending
