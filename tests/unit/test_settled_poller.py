"""The poller records REDUNDANT only once the cluster is settled, and where the shared filesystem is mounted.

Scripted command output (`settle_script`), recorded crm_mon XML; no cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from settle_script import ATTRD_OK, IDLE, PENDING, SETTLED, Script, driver

from harness.drivers.state import ClusterState
from harness.poller import ClusterPoller, confirmed_mounts, shared_mounts
from harness.testbed.mounts import shared_mounts as local_mounts
from harness.timeline import (
    CLUSTER_DEGRADED,
    CLUSTER_GROUP_STOPPED,
    CLUSTER_MOUNTS,
    CLUSTER_REDUNDANT,
    FAULT_HEALED,
    Timeline,
)
from harness.topology import DEFAULT_TESTBED, load_topology

# -- the poller records REDUNDANT only when settled ----------------------------------------------------


class Seq:
    """A driver stand-in over a real PacemakerDriver whose crm_mon and settle answers change per poll."""

    def __init__(self, steps: list[tuple[str, str]], quiet_s: float = 0.0) -> None:
        self.script = Script()
        self.driver = driver(self.script, quiet_s=quiet_s)
        self.steps = steps

    def poll(self, poller: ClusterPoller) -> None:
        self.script.crm_mon, self.script.settle = self.steps.pop(0)
        poller.poll_once()


def test_poller_redundant_only_once_settled_like_the_packet_loss_case() -> None:
    """The heal; a snapshot that looks redundant while reach-service=0 waits in attrd; the group moves to
    node2 and back; only then is the cluster settled: one REDUNDANT, at the start of the final stretch."""
    held = IDLE + 'name="ethmonitor-service" host="node1" value="1"\n@rc=0\nname="reach-service" host="node1" ' \
        'value="0"\n@rc=0\n'
    seq = Seq([(SETTLED, IDLE + ATTRD_OK), (SETTLED, held), (SETTLED, "S_TRANSITION_ENGINE\n@rc=0\n"),
               (PENDING, IDLE), (SETTLED, "S_TRANSITION_ENGINE\n@rc=0\n"), (SETTLED, IDLE + ATTRD_OK),
               (SETTLED, IDLE + ATTRD_OK)])
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    seq.poll(poller)                                   # before the fault: settled
    tl.add(FAULT_HEALED, "node1", fault="packet_loss")
    for _ in range(6):
        seq.poll(poller)
    kinds = [(e.kind, e.data.get("why")) for e in tl.sorted_events() if e.kind in (CLUSTER_REDUNDANT, CLUSTER_DEGRADED)]
    assert kinds == [
        (CLUSTER_REDUNDANT, None),
        (CLUSTER_DEGRADED, "reach-service on node1 is 0 in attrd, not yet written (CIB: 1)"),
        (CLUSTER_DEGRADED, "the DC (node3) is in S_TRANSITION_ENGINE"),
        (CLUSTER_DEGRADED, "group app not started"),
        (CLUSTER_DEGRADED, "the DC (node3) is in S_TRANSITION_ENGINE"),
        (CLUSTER_REDUNDANT, None)]
    assert poller.errors == 0


def test_poller_confirms_after_the_quiet_period_and_stamps_the_start_of_the_stretch() -> None:
    seq = Seq([(SETTLED, IDLE + ATTRD_OK)] * 40, quiet_s=0.5)
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    heal = tl.add(FAULT_HEALED, "node1", fault="x")
    seq.poll(poller)
    first = time.monotonic()
    assert tl.of(CLUSTER_REDUNDANT) == []              # settled, but not for long enough
    while not tl.of(CLUSTER_REDUNDANT):
        time.sleep(0.05)
        seq.poll(poller)
    (red,) = tl.of(CLUSTER_REDUNDANT)
    assert heal.mono < red.mono <= first               # when it became settled, not when it was confirmed
    assert red.data["confirmed"] >= heal.mono + 0.5 and red.data["quiet_s"] == 0.5


def test_poller_at_stop_says_an_unconfirmed_stretch_was_not_confirmed() -> None:
    seq = Seq([(SETTLED, IDLE + ATTRD_OK)] * 3, quiet_s=30)
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    tl.add(FAULT_HEALED, "node1", fault="x")
    seq.poll(poller)
    seq.script.crm_mon, seq.script.settle = SETTLED, IDLE + ATTRD_OK
    poller.stop()
    (deg,) = tl.of(CLUSTER_DEGRADED)
    assert "not confirmed" in deg.data["why"] and tl.of(CLUSTER_REDUNDANT) == []


def test_poller_counts_polls_where_no_node_answers() -> None:
    seq = Seq([("not xml", "")])
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    seq.poll(poller)
    assert poller.errors == 1 and poller.last_error == "no node answered crm_mon"


def test_poller_records_attribute_changes_in_the_cib() -> None:
    from harness.timeline import CLUSTER_ATTRIBUTE
    lost = SETTLED.replace('<node name="node1">\n      <attribute name="ethmonitor-service" value="1"/>\n'
                           '      <attribute name="reach-service" value="1" expected="1"/>',
                           '<node name="node1">\n      <attribute name="reach-service" value="0" expected="1"/>')
    assert lost != SETTLED
    seq = Seq([(SETTLED, IDLE + ATTRD_OK), (lost, IDLE), (SETTLED, IDLE + ATTRD_OK)])
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    for _ in range(3):
        seq.poll(poller)
    got = [(e.node, e.data["name"], e.data["was"], e.data["value"]) for e in tl.of(CLUSTER_ATTRIBUTE)]
    assert got == [("node1", "ethmonitor-service", "1", None), ("node1", "reach-service", "1", "0"),
                   ("node1", "ethmonitor-service", None, "1"), ("node1", "reach-service", "0", "1")]
    assert tl.of(CLUSTER_DEGRADED)[0].data["why"] == "reach-service on node1 is 0 (expected 1)"


def test_group_stopped_names_its_failed_members() -> None:
    failed = SETTLED.replace('<resource id="app-app" resource_agent="ocf:fallover:fallover-app" role="Started" '
                             'active="true" orphaned="false" blocked="false" managed="true" failed="false"',
                             '<resource id="app-app" resource_agent="ocf:fallover:fallover-app" role="Started" '
                             'active="true" orphaned="false" blocked="false" managed="true" failed="true"')
    seq = Seq([(SETTLED, IDLE + ATTRD_OK), (failed, IDLE)])
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    seq.poll(poller)
    seq.poll(poller)
    (stop,) = tl.of(CLUSTER_GROUP_STOPPED)
    assert stop.data["failed"] == ["app-app"] and stop.node == "node1"


# -- where the shared filesystem is mounted ------------------------------------------------------------


def _mountinfo(dev: str) -> str:
    return ("22 1 0:21 / / rw,relatime shared:1 - ext4 /dev/root rw\n"
            f"321 22 {dev} / /var/lib/fallover/fo-local/mnt/app rw,relatime - ext4 /dev/loop3 rw,errors=remount-ro\n")


def mount_tb(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mounted: dict[str, bool]) -> tuple[Any, Path]:
    """Nodes with pids 101..103 whose mountinfo shows the shared disk (here /dev/null's number) or not."""
    topo = load_topology(DEFAULT_TESTBED)
    link = tmp_path / "shared.dev"
    link.symlink_to("/dev/null")
    null = os.stat("/dev/null").st_rdev
    dev = f"{os.major(null)}:{os.minor(null)}"
    proc = tmp_path / "proc"
    pids = {"node1": 101, "node2": 102, "node3": 103}
    for node, pid in pids.items():
        (proc / str(pid)).mkdir(parents=True)
        (proc / str(pid) / "mountinfo").write_text(_mountinfo(dev if mounted.get(node) else "7:99"))
    layout = SimpleNamespace(node_disk_link=lambda node, d: link if d == "shared" else tmp_path / "absent")
    from harness.testbed import nodes
    monkeypatch.setattr(nodes, "init_pid", lambda lay, node: pids.get(node) if node != "node3" or
                        mounted.get("node3") is not None else None)
    return SimpleNamespace(topology=topo, layout=layout), proc


def test_shared_mounts_reads_each_running_nodes_mountinfo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, proc = mount_tb(tmp_path, monkeypatch, {"node1": True, "node2": False})  # node3 powered off
    assert local_mounts(tb, proc) == {"shared": ["node1"]}
    assert shared_mounts(SimpleNamespace(topology=tb.topology)) is None  # a testbed that cannot tell


def test_double_mount_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, proc = mount_tb(tmp_path, monkeypatch, {"node1": True, "node2": True, "node3": False})
    assert confirmed_mounts(lambda: local_mounts(tb, proc)) == {"shared": ["node1", "node2"]}


def test_a_handover_between_two_reads_is_not_a_double_mount() -> None:
    reads = iter([{"shared": ["node1", "node2"]}, {"shared": ["node2"]}])
    assert confirmed_mounts(lambda: next(reads)) == {"shared": ["node2"]}


def test_poller_records_mount_changes_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, proc = mount_tb(tmp_path, monkeypatch, {"node1": True, "node2": False, "node3": False})
    import harness.poller as poller_mod
    monkeypatch.setattr(poller_mod, "shared_mounts", lambda testbed: local_mounts(tb, proc))
    seq = Seq([(SETTLED, IDLE + ATTRD_OK)] * 3)
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl)
    seq.poll(poller)
    seq.poll(poller)
    (proc / "102" / "mountinfo").write_text(_mountinfo(f"{os.major(os.stat('/dev/null').st_rdev)}:"
                                                       f"{os.minor(os.stat('/dev/null').st_rdev)}"))
    seq.poll(poller)
    assert [e.data["mounts"] for e in tl.of(CLUSTER_MOUNTS)] == [{"shared": ["node1"]},
                                                                 {"shared": ["node1", "node2"]}]


def test_a_snapshot_asked_for_before_a_heal_does_not_start_the_settled_stretch() -> None:
    """Measured under -n 2: a poll began, the heal landed while crm_mon ran, and the REDUNDANT event was
    stamped 0.02 s *before* the heal, so the redundancy verdict never found one after it. A snapshot
    older than the last fault change says nothing about the cluster after it."""
    seq = Seq([(SETTLED, IDLE + ATTRD_OK)] * 3)
    tl = Timeline()
    poller = ClusterPoller(seq.driver, tl, mounts=False)
    real_state = seq.driver.state

    def state_while_healing() -> ClusterState | None:
        s = real_state()
        tl.add(FAULT_HEALED, "node1", fault="cpu_overload")  # lands between t_poll and the judgement
        seq.driver.state = real_state  # type: ignore[method-assign]
        return s

    seq.driver.state = state_while_healing  # type: ignore[method-assign]
    seq.poll(poller)
    heal = tl.of(FAULT_HEALED)[0].mono
    assert [e for e in tl.of(CLUSTER_REDUNDANT) if e.mono < heal] == []
    seq.poll(poller)
    after = tl.of(CLUSTER_REDUNDANT)
    assert len(after) == 1 and after[0].mono >= heal
