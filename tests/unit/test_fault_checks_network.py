"""No silent no-op, network faults: cables, networks, switch filters and impairments refuse or report a missing
effect (helpers in fault_checks.py, fixtures in conftest.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_testbed import FakeTestbed
from fault_checks import not_in_effect, refused

from harness.errors import FalloverError
from harness.faults.base import Target
from harness.faults.registry import FAULTS
from harness.testbed import nfqueue
from harness.testbed.local import LocalTestbed
from harness.topology import DEFAULT_TESTBED, load_topology

pytestmark = pytest.mark.usefixtures("quick")


# -- network ----------------------------------------------------------------------------------------

def test_adapter_down_on_a_powered_off_node_is_refused(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    tb.powered.discard("node1")
    msg = refused(tb, "adapter_down", node="node1", network="service")
    assert msg == "adapter_down on node1-service: node1 is powered off: its cable cannot be pulled"


def test_adapter_down_whose_port_is_gone_is_reported(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    tb.adapter_port = False  # set_adapter returns False: the port vanished with the node
    assert "node1 has no adapter on service" in not_in_effect(tb, "adapter_down", node="node1", network="service")


def test_adapter_down_that_leaves_the_carrier_is_reported_and_plugged_back(tb: FakeTestbed,
                                                                           switch: dict[str, Any]) -> None:
    msg = not_in_effect(tb, "network_down_local", node="node2", network="standby")
    assert "node2 still sees a carrier on standby" in msg
    assert tb.switched == [("adapter", "node2", "standby", "False"), ("adapter", "node2", "standby", "True")]


def test_adapter_heal_is_idempotent_when_the_port_is_gone(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    tb.adapter_port = False
    FAULTS["adapter_down"].heal(tb, Target(node="node1", network="service"), {})


def test_adapter_heal_that_leaves_no_carrier_raises(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    switch["carrier"] = False
    with pytest.raises(Exception, match="still has no carrier"):
        FAULTS["adapter_down"].heal(tb, Target(node="node1", network="service"), {})


def test_network_down_global_whose_bridge_stays_up_is_reported(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    assert "standby network is still up" in not_in_effect(tb, "network_down_global", network="standby")


def test_network_down_global_heal_waits_for_the_bridge_to_report_itself_up(tb: FakeTestbed,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """The kernel's link watch may report a bridge up a moment after it was set up: not a failed heal."""
    looks = iter([False, False])
    monkeypatch.setattr(tb, "network_up", lambda network: next(looks, True))
    FAULTS["network_down_global"].heal(tb, Target(network="standby"), {})
    monkeypatch.setattr(tb, "network_up", lambda network: False)
    with pytest.raises(FalloverError, match="standby network stays down"):
        FAULTS["network_down_global"].heal(tb, Target(network="standby"), {})


def test_network_down_global_on_a_missing_bridge_is_refused(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    switch["bridge_up"] = None
    assert "the testbed has no standby network" in refused(tb, "network_down_global", network="standby")


@pytest.mark.parametrize("name, kw", [("partition", {"nodes": ("node3",)}), ("heartbeat_loss", {"node": "node2"}),
                                      ("packet_loss", {"node": "node2", "network": "service"})])
def test_switch_filter_missing_from_the_ruleset_is_reported(tb: FakeTestbed, switch: dict[str, Any], name: str,
                                                            kw: dict[str, Any],
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tb, "add_rule", lambda rule_id, rule: 2)  # nft "succeeded", kept nothing
    assert "is not installed" in not_in_effect(tb, name, **kw)


def test_switch_filter_with_a_rule_missing_is_reported(tb: FakeTestbed, switch: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    def keeps_one(rule_id: str, rule: Any) -> int:
        switch["tables"][rule_id] = [rule]
        return 2

    monkeypatch.setattr(tb, "add_rule", keeps_one)
    assert "holds 1 rules, not 2" in not_in_effect(tb, "partition", nodes=("node3",))


def test_partition_of_powered_off_nodes_is_refused(tb: FakeTestbed, switch: dict[str, Any]) -> None:
    tb.powered.discard("node3")
    assert "every node of the cut-off side (node3) is powered off" in refused(tb, "partition", nodes=("node3",))


def test_rule_heal_that_cannot_delete_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.testbed import wire

    local = LocalTestbed(load_topology(DEFAULT_TESTBED), instance="unit", state_root=str(tmp_path))
    monkeypatch.setattr(wire, "remove_filter", lambda layout, table: False)
    monkeypatch.setattr(wire, "filter_rules", lambda layout, table: ["drop"])
    with pytest.raises(FalloverError, match="still in the switch's ruleset"):
        FAULTS["partition"].heal(local, Target(nodes=("node3",)), {"id": "x"})


@pytest.fixture
def local(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalTestbed:
    """The embedded testbed with every node "running" and nothing built: for its own mechanisms' checks."""
    testbed = LocalTestbed(load_topology(DEFAULT_TESTBED), instance="unit", state_root=str(tmp_path))
    monkeypatch.setattr(testbed, "running", lambda node: True)
    return testbed


@pytest.fixture
def dead_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    """An NFQUEUE worker that exits at once, tables that install to nothing (the cgroup is a tmp dir)."""
    from harness.testbed import cgroup

    proc = subprocess.Popen(["true"])
    proc.wait()
    monkeypatch.setattr(nfqueue, "start_worker", lambda *a, **kw: proc)
    monkeypatch.setattr(nfqueue, "install", lambda *a, **kw: None)
    monkeypatch.setattr(nfqueue, "remove", lambda *a, **kw: False)
    monkeypatch.setattr(nfqueue, "tables", lambda *a, **kw: [])
    monkeypatch.setattr(cgroup, "create", lambda path: path)
    monkeypatch.setattr(cgroup, "remove_tree", lambda path: None)
    monkeypatch.setattr(cgroup, "join_self", lambda path: None)


@pytest.mark.parametrize("name", ["packet_delay", "packet_corrupt"])
def test_impairment_whose_worker_died_is_reported(local: LocalTestbed, dead_worker: None, name: str) -> None:
    assert "the NFQUEUE worker (pid" in not_in_effect(local, name, node="node2", network="service")


def test_impairment_whose_tables_are_missing_is_reported(local: LocalTestbed, dead_worker: None,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.testbed import cgroup

    alive = subprocess.Popen(["sleep", "30"])  # a worker that runs, in its cgroup
    monkeypatch.setattr(nfqueue, "start_worker", lambda *a, **kw: alive)
    monkeypatch.setattr(cgroup, "procs", lambda path: [alive.pid])
    monkeypatch.setattr(nfqueue, "missing", lambda ns, table: [f"table inet {table}"])
    try:
        assert "missing from the switch's ruleset: table inet fallover_q" in \
            not_in_effect(local, "packet_delay", node="node2", network="service")
    finally:
        alive.kill()
        alive.wait()


def test_an_impairment_is_healed_from_its_entry_id_alone(tb: FakeTestbed) -> None:
    tb.impaired = "the worker is gone"
    assert "the worker is gone" in not_in_effect(tb, "packet_delay", node="node2", network="service")
    assert tb.switched[-1][0] == "unimpair"




def test_a_dropping_fault_counts_the_case_from_when_its_rules_were_whole(tb: FakeTestbed,
                                                                        switch: dict[str, Any]) -> None:
    """Over SSH the rules go in seconds after the inject began; those seconds are not the cluster's."""
    import time

    undo: dict[str, Any] = {"id": "r9"}
    switch.setdefault("in_effect", {})["r9"] = time.monotonic() - 2.5
    FAULTS["partition"].inject(tb, Target(nodes=("node1",)), undo)
    (label, mono, data), = undo["marks"]
    assert data == {"fault_start": True} and abs(mono - switch["in_effect"]["r9"]) < 1.0
    undo = {"id": "r10"}  # in effect when add_rule returned (one atomic table on the switch)
    before = time.monotonic()
    FAULTS["packet_loss"].inject(tb, Target(node="node1", network="service", rate=0.1), undo)
    assert undo["marks"][0][1] >= before and undo["marks"][0][2] == {"fault_start": True}
