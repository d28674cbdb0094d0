"""No silent no-op, faults on a node: disk, node and cluster software refuse or report a missing effect
(helpers in fault_checks.py, fixtures in conftest.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_testbed import FakeTestbed, Shell
from fault_checks import not_in_effect, refused

from harness.errors import TestbedError
from harness.faults.base import Target
from harness.faults.nemesis import Nemesis
from harness.faults.registry import FAULTS
from harness.testbed.local import LocalTestbed
from harness.topology import DEFAULT_TESTBED, load_topology

pytestmark = pytest.mark.usefixtures("quick")


# -- disk -------------------------------------------------------------------------------------------

def test_disk_pull_of_an_unmounted_disk_is_refused(tb: FakeTestbed) -> None:
    tb.mode = None
    assert "disk shared is not attached" in refused(tb, "disk_pull", disk="shared")


def test_disk_pull_of_a_disk_that_still_reads_is_reported_and_plugged_back(
        tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drivers.pacemaker import PacemakerDriver

    monkeypatch.setattr(PacemakerDriver, "state", lambda self, *a, **kw: None)
    assert "a direct read of its device still succeeds" in not_in_effect(tb, "disk_pull", disk="shared")
    assert tb.switched == [("disk", "shared", "eio"), ("disk", "shared", "ok")]


def test_disk_pull_of_a_disk_that_fails_otherwise_is_reported(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drivers.pacemaker import PacemakerDriver

    monkeypatch.setattr(PacemakerDriver, "state", lambda self, *a, **kw: None)
    tb.read_error = "no loop device behind /x"
    assert "got 'no loop device behind /x', not EIO or ENXIO" in not_in_effect(tb, "disk_pull", disk="shared")


def test_disk_pull_counts_an_offlined_scsi_device_as_pulled() -> None:
    """On the VMs the initiator gives the lost LUN up after its replacement timeout: opens fail with ENXIO."""
    from harness.faults.disk import pulled

    assert pulled("dd: failed to open '/dev/disk/by-path/ip-10.81.9.1:3260-iscsi-…-lun-1': No such device or address")
    assert pulled("dd: error reading '/dev/loop3': Input/output error")
    assert not pulled("no loop device behind /x") and not pulled(None)


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
    tb.shell = lambda node, cmd: (0, "42") if cmd == f"pidof {comm}" else \
        (0, "") if cmd.startswith("sh -c") else (1, "")  # the restart hold works; SIGKILL had no effect
    assert f"still running on node2 after SIGKILL: {comm} (pid 42)" in not_in_effect(tb, name, node="node2")


def test_daemon_kill_with_no_daemon_running_is_refused(tb: FakeTestbed) -> None:
    tb.shell = lambda node, cmd: (1, "")
    assert "none of corosync is running on node2" in refused(tb, "corosync_kill", node="node2")


