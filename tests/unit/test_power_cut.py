"""nodes.power_off as the shared disk sees it: frozen, then cut, then killed, and its loop devices let go.

The order is the point: a node that ran between the cut and the kill could acknowledge a write
whose fsync the cut view discarded (a loss a real power cut cannot cause), and a node killed
before the cut would write its page cache back through its ext4's umount onto the image.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import TestbedError
from harness.testbed import cgroup, disk, network, nodes
from harness.testbed.layout import NODE_DISKS, Layout
from harness.topology import DEFAULT_TESTBED, load_topology


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[Layout, list[str]]:
    layout = Layout(load_topology(DEFAULT_TESTBED), instance="t", state_root=tmp_path)
    seen: list[str] = []
    monkeypatch.setattr(cgroup, "procs", lambda group: [4242])
    monkeypatch.setattr(cgroup, "set_state", lambda group, state: seen.append(f"{state} {group.name}"))
    monkeypatch.setattr(cgroup, "kill_all", lambda group: seen.append(f"kill {group.name}"))
    monkeypatch.setattr(disk, "cut_node", lambda lay, d, node: seen.append(f"cut {d} {node}") or {})
    monkeypatch.setattr(disk, "detach_node", lambda lay, d, node: seen.append(f"detach {d} {node}"))
    monkeypatch.setattr(network, "detach_node", lambda lay, node: seen.append(f"unplug {node}"))
    return layout, seen


def test_power_off_freezes_then_cuts_then_kills(calls: tuple[Layout, list[str]]) -> None:
    layout, seen = calls
    nodes.power_off(layout, "node1")
    assert seen == ["FROZEN node1", "cut shared node1", "kill node1", "detach shared node1", "unplug node1"]


def test_a_failed_cut_still_powers_off_and_then_says_so(calls: tuple[Layout, list[str]],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    layout, seen = calls

    def refuse(lay: Layout, d: str, node: str) -> dict[str, object]:
        raise TestbedError("disk shared: its FUSE layer did not do `cut node1.1`: connection refused")

    monkeypatch.setattr(disk, "cut_node", refuse)
    with pytest.raises(TestbedError, match="node1 is powered off, but its unflushed writes were not dropped: "
                                           "disk shared: .*connection refused"):
        nodes.power_off(layout, "node1")
    assert seen[:2] == ["FROZEN node1", "kill node1"]


def test_the_cluster_mounts_the_node_s_own_link(tmp_path: Path) -> None:
    layout = Layout(load_topology(DEFAULT_TESTBED), instance="t", state_root=tmp_path)
    assert layout.disk_link("shared") == NODE_DISKS / "shared.dev"  # what the Filesystem resource names
    assert layout.node_disk_link("node2", "shared") == layout.node_dir("node2") / "disks" / "shared.dev"
    assert "disks" in nodes.PRIVATE_DIRS  # node-init.sh binds it at NODE_DISKS
    init = (Path(nodes.__file__).parent / "assets" / "node-init.sh").read_text()
    assert f'mount --bind "$S/disks" {NODE_DISKS}' in init
