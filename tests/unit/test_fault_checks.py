"""No silent no-op: on a fake testbed whose switches do nothing, every fault refuses or reports it.

The real effects are checked on the embedded testbed (tests/testbed/test_faults.py); here each
verification is shown to *fail* when the effect is missing, and the nemesis to undo the fault,
journal nothing it should not, and collect every heal failure.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from fake_testbed import FakeTestbed

from harness.errors import FalloverError, HealError, TestbedError
from harness.faults import base
from harness.faults.base import Fault, FaultNotApplicable, FaultNotInEffect, Target
from harness.faults.nemesis import HealFailed, Nemesis
from harness.faults.registry import FAULTS
from harness.testbed import nfqueue
from harness.testbed.base import Testbed
from harness.testbed.local import LocalTestbed
from harness.timeline import Timeline
from harness.topology import DEFAULT_TESTBED, load_topology


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifications wait a moment for effects to show; a missing one need not be awaited for 5 s here."""
    monkeypatch.setattr(base, "SETTLE_S", 0.2)


@pytest.fixture
def tb(tmp_path: Path) -> FakeTestbed:
    return FakeTestbed(tmp_path)


@pytest.fixture
def switch(tb: FakeTestbed) -> dict[str, Any]:
    """The switch as the network faults see it: carrier per adapter, networks, rule tables."""
    return tb.net


def failed_start(tb: Testbed, error: type[Exception], name: str,
                 **kw: Any) -> tuple[Exception, Nemesis, Timeline]:
    timeline = Timeline()
    nemesis = Nemesis(tb, timeline)
    with pytest.raises(error) as caught:
        nemesis.start(name, **kw)
    assert len(str(caught.value).splitlines()) == 1
    return caught.value, nemesis, timeline


def not_in_effect(tb: Testbed, name: str, **kw: Any) -> str:
    """Start the fault, expect FaultNotInEffect; the nemesis must have healed it (journal empty)."""
    err, nemesis, timeline = failed_start(tb, FaultNotInEffect, name, **kw)
    assert nemesis.journal.entries() == [] and nemesis.active == []
    assert [e.kind for e in timeline.events] == ["fault.injected", "fault.healed"]
    return str(err)


def refused(tb: FakeTestbed, name: str, **kw: Any) -> str:
    """Start the fault, expect FaultNotApplicable with nothing journaled, put on the timeline or switched."""
    err, nemesis, timeline = failed_start(tb, FaultNotApplicable, name, **kw)
    assert not nemesis.journal.path.exists()
    assert timeline.events == []
    assert tb.switched == []
    return str(err)


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


# -- disk -------------------------------------------------------------------------------------------

def test_disk_pull_of_an_unmounted_disk_is_refused(tb: FakeTestbed) -> None:
    tb.mode = None
    assert "disk shared is not attached" in refused(tb, "disk_pull", disk="shared")


def test_disk_pull_of_a_disk_that_still_reads_is_reported_and_plugged_back(
        tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drivers.pacemaker import PacemakerDriver

    monkeypatch.setattr(PacemakerDriver, "state", lambda self, *a, **kw: None)
    assert "a direct read of its loop device still succeeds" in not_in_effect(tb, "disk_pull", disk="shared")
    assert tb.switched == [("disk", "shared", "eio"), ("disk", "shared", "ok")]


def test_disk_pull_of_a_disk_that_fails_otherwise_is_reported(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drivers.pacemaker import PacemakerDriver

    monkeypatch.setattr(PacemakerDriver, "state", lambda self, *a, **kw: None)
    tb.read_error = "no loop device behind /x"
    assert "got 'no loop device behind /x', not EIO" in not_in_effect(tb, "disk_pull", disk="shared")


@pytest.fixture
def disk_on_node1(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The group runs on node1, its filesystem shows `stat` free/total blocks; rm works unless told."""
    from harness.faults import disk

    monkeypatch.setattr(disk, "group_node", lambda testbed, group: "node1")
    fs: dict[str, Any] = {"free": 50_000, "total": 100_000, "kept_back": 0, "mounted": {"node1"}, "rm": 0}

    def shell(node: str, cmd: str) -> tuple[int, str]:
        if cmd.startswith("mountpoint -q") and "stat -f" in cmd:
            stat = f"{fs['free']} {fs['total']} 1024 {fs['kept_back']}"
            return (0, stat) if node in fs["mounted"] else (1, "")
        if cmd.startswith("rm -f"):
            return fs["rm"], "0" if node in fs["mounted"] else "1"
        return 0, ""

    tb.shell = shell
    return fs


def test_disk_full_that_left_ten_percent_free_is_reported_and_removed(tb: FakeTestbed,
                                                                     disk_on_node1: dict[str, Any]) -> None:
    def fill(node: str, cmd: str, shell: Shell = tb.shell) -> tuple[int, str]:
        if "fallocate" in cmd:
            disk_on_node1["free"] = 10_000  # 10 % left
        return shell(node, cmd)

    tb.shell = fill
    msg = not_in_effect(tb, "disk_full", disk="shared")
    assert "the fill left 10.0 % free (10000 of 100000 blocks)" in msg
    assert [c for n, c in tb.commands if c.startswith("rm -f")]  # the heal removed the fill file


def test_disk_full_counts_ext4s_reserved_clusters_as_used(tb: FakeTestbed, disk_on_node1: dict[str, Any]) -> None:
    """ext4 keeps min(2 %, 4096 clusters) back from every writer: `stat -f` %f still counts them."""
    def fill(node: str, cmd: str, shell: Shell = tb.shell) -> tuple[int, str]:
        if "fallocate -l" in cmd:
            assert "fallocate -l 25337856 " in cmd  # (50000 - 25000 kept back - 256) blocks of 1 KiB
            disk_on_node1["free"] = 25_060
        return shell(node, cmd)

    disk_on_node1["kept_back"] = 25_000
    tb.shell = fill
    inj = Nemesis(tb).start("disk_full", disk="shared")
    assert inj.entry.state == "injected"


def test_disk_full_of_a_full_filesystem_is_refused(tb: FakeTestbed, disk_on_node1: dict[str, Any]) -> None:
    disk_on_node1["free"] = 10
    assert "is full already" in refused(tb, "disk_full", disk="shared")


def test_disk_full_heal_fails_loudly(tb: FakeTestbed, disk_on_node1: dict[str, Any]) -> None:
    fault, target = FAULTS["disk_full"], Target(disk="shared")
    undo = {"id": "x", "file": "/mnt/app/.fallover-fill-x", "mnt": "/mnt/app"}
    fault.heal(tb, target, undo)  # removed where it is mounted: fine
    disk_on_node1["mounted"] = set()
    with pytest.raises(Exception, match="mounted on no running node"):
        fault.heal(tb, target, undo)
    disk_on_node1["mounted"], disk_on_node1["rm"] = {"node1"}, 1
    with pytest.raises(Exception, match="rm -f"):
        fault.heal(tb, target, undo)


def test_set_disk_mode_raises_for_a_pull_of_an_unmounted_disk_only(tmp_path: Path) -> None:
    local = LocalTestbed(load_topology(DEFAULT_TESTBED), instance="unit", state_root=str(tmp_path))
    with pytest.raises(TestbedError, match="disk shared: its FUSE layer .* is not mounted"):
        local.set_disk_mode("shared", "eio")
    local.set_disk_mode("shared", "ok")  # heal: the testbed is gone, nothing to do
    assert local.disk_mode("shared") is None


# -- node and cluster software ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["node_power_off", "node_stop", "node_hang", "cpu_overload",
                                  "corosync_kill", "pacemaker_kill"])
def test_node_faults_on_a_powered_off_node_are_refused(tb: FakeTestbed, name: str) -> None:
    tb.powered.discard("node2")
    assert "node2 is powered off: " in refused(tb, name, node="node2")


def test_node_power_off_that_leaves_the_node_running_is_reported(tb: FakeTestbed,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.faults import node

    monkeypatch.setattr(node, "make_whole", lambda testbed, n: None)
    assert "the init of node3 is still running" in not_in_effect(tb, "node_power_off", node="node3")


def test_node_hang_that_never_reads_frozen_is_reported(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.faults import node

    monkeypatch.setattr(node, "make_whole", lambda testbed, n: None)
    assert "the freezer of node3 reads THAWED, not FROZEN" in not_in_effect(tb, "node_hang", node="node3")


def test_node_hang_of_a_frozen_node_is_refused(tb: FakeTestbed) -> None:
    tb.freezer = "FROZEN"
    assert "reads FROZEN already" in refused(tb, "node_hang", node="node3")


def test_cpu_overload_without_stress_ng_is_reported(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    tb.shell = lambda node, cmd: (0, "sh\n") if "/comm" in cmd else (0, "")  # the shell never exec'd stress-ng
    msg = not_in_effect(tb, "cpu_overload", node="node2")
    assert "stress-ng is not running on node2 (its pidfile names sh)" in msg


@pytest.mark.parametrize("name, comm", [("corosync_kill", "corosync"), ("pacemaker_kill", "pacemakerd")])
def test_daemon_kill_whose_pid_survives_is_reported(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch,
                                                    name: str, comm: str) -> None:
    from harness.faults import cluster

    monkeypatch.setattr(cluster, "make_whole", lambda testbed, n: None)
    tb.shell = lambda node, cmd: (0, "42") if cmd == f"pidof {comm}" else (1, "")  # SIGKILL had no effect
    assert f"still running on node2 after SIGKILL: {comm} (pid 42)" in not_in_effect(tb, name, node="node2")


def test_daemon_kill_with_no_daemon_running_is_refused(tb: FakeTestbed) -> None:
    tb.shell = lambda node, cmd: (1, "")
    assert "none of corosync is running on node2" in refused(tb, "corosync_kill", node="node2")


# -- the nemesis: undo on failure, collect every heal failure -------------------------------------

def test_verify_failure_whose_undo_fails_too_says_both(tb: FakeTestbed, switch: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The carrier stays (verify fails), and plugging the cable back raises (the undo fails)."""

    def set_adapter(node: str, network: str, up: bool) -> bool:
        if up:
            raise TestbedError("netlink said no")
        return True

    monkeypatch.setattr(tb, "set_adapter", set_adapter)
    err, nemesis, _ = failed_start(tb, HealFailed, "adapter_down", node="node1", network="service")
    assert str(err).startswith("healing adapter_down on node1-service failed: adapter_down on node1-service did "
                               "not take effect: node1 still sees a carrier on service; undoing it failed too: "
                               "netlink said no")
    assert [e.fault for e in nemesis.journal.entries()] == ["adapter_down"]  # kept for `fallover heal`


class Flaky(Fault):
    """A fault whose heal fails while `broken` is set."""

    name = "flaky"
    family = "test"
    event = "test"
    target_kind = "node"
    broken: set[str] = set()

    def inject(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        pass

    def verify(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        pass

    def heal(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        if target.node in self.broken:
            raise TestbedError(f"{target.node} would not come back\nsecond line")


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[Flaky]:
    monkeypatch.setitem(FAULTS, "flaky", Flaky())
    Flaky.broken = set()
    return Flaky


def test_heal_all_heals_past_failures_and_reports_them_all(tb: FakeTestbed, flaky: type[Flaky]) -> None:
    nemesis = Nemesis(tb)
    for node in ("node1", "node2", "node3"):
        nemesis.start("flaky", node=node)
    flaky.broken = {"node3", "node1"}
    with pytest.raises(HealFailed) as caught:
        nemesis.heal_all()
    err = caught.value
    assert isinstance(err, HealError)
    assert err.failures == [("flaky on node3", "node3 would not come back second line"),
                            ("flaky on node1", "node1 would not come back second line")]  # each tried once
    assert err.healed == ["flaky on node2"]
    assert len(str(err).splitlines()) == 1 and str(err).startswith("2 faults could not be healed: flaky on node3")
    assert sorted(e.target["node"] for e in nemesis.journal.entries()) == ["node1", "node3"]
    flaky.broken = set()
    assert sorted(nemesis.heal_all()) == ["flaky on node1", "flaky on node3"]
    assert nemesis.journal.entries() == []


def test_replay_heals_past_an_unknown_fault_and_a_failing_heal(tb: FakeTestbed, flaky: type[Flaky]) -> None:
    from harness.faults.journal import Entry

    crashed = Nemesis(tb)
    crashed.start("flaky", node="node1")
    crashed.start("flaky", node="node2")
    crashed.journal.record(Entry(fault="meteor_strike", target={"node": "node3"}))
    flaky.broken = {"node2"}
    with pytest.raises(HealFailed) as caught:
        Nemesis(tb).replay()  # a new process, from the journal alone
    assert [label for label, _ in caught.value.failures] == ["meteor_strike on node3", "flaky on node2"]
    assert caught.value.healed == [f"flaky on node1 (injected by pid {os.getpid()})"]


# -- coverage of the catalogue ------------------------------------------------------------------------

NOT_YET_VERIFIED: set[str] = set()  # every fault checks its effect; keep it so


def test_every_fault_verifies_its_effect() -> None:
    """A fault that keeps the default verify() checks nothing; the list of those may only shrink."""
    unverified = {name for name, f in FAULTS.items() if type(f).verify is Fault.verify}
    assert unverified <= NOT_YET_VERIFIED, f"faults without a verify(): {sorted(unverified - NOT_YET_VERIFIED)}"
