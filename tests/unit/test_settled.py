"""Settled means nothing missing *and* nothing pending: the driver's definition, and the poller that records it.

Also where the shared filesystem is mounted (the poller's mount reader). Scripted command output,
recorded crm_mon XML; no cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.drivers.pacemaker import PacemakerDriver
from harness.drivers.settle import parse_settle_query
from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import CommandTimedOut
from harness.poller import ClusterPoller, confirmed_mounts, shared_mounts
from harness.testbed.mounts import shared_mounts as local_mounts
from harness.result import Result
from harness.timeline import (CLUSTER_DEGRADED, CLUSTER_GROUP_STOPPED, CLUSTER_MOUNTS, CLUSTER_REDUNDANT,
                              FAULT_HEALED, Timeline)
from harness.topology import DEFAULT_TESTBED, load_topology

DATA = Path(__file__).resolve().parent.parent / "data"
SETTLED = (DATA / "crm_mon_settled.xml").read_text()   # the embedded cluster at rest, app on node1, DC node3
PENDING = (DATA / "crm_mon_pending.xml").read_text()   # mid-move to node2: app-fs started, monitor pending
IDLE = 'S_IDLE\n@rc=0\n'
ATTRD_OK = ''.join(f'name="{a}" host="node{i}" value="1"\n' for a in ("reach-service",) for i in (1, 2, 3)) + \
    '@rc=0\n' + ''.join(f'name="ethmonitor-service" host="node{i}" value="1"\n' for i in (1, 2, 3)) + '@rc=0\n'


class Script:
    """What each command answers on the fake nodes: crm_mon XML and the settle query's output."""

    def __init__(self, crm_mon: str = SETTLED, settle: str = IDLE + ATTRD_OK) -> None:
        self.crm_mon, self.settle = crm_mon, settle
        self.ran: list[tuple[str, str]] = []

    def node(self, name: str) -> Any:
        def run(argv: Any, *, timeout: float, check: bool = True, **_: Any) -> Result:
            argv = tuple(argv)
            self.ran.append((name, argv[0]))
            out = self.crm_mon if argv[0] == "crm_mon" else self.settle if argv[0] == "sh" else ""
            return Result(node=name, argv=argv, exit_status=0, stdout=out, stderr="", duration_s=0.001)
        return SimpleNamespace(run=run)


def fake_tb(script: Script, *, journal: Path | None = None, links: dict[tuple[str, str], str] | None = None,
            running: tuple[str, ...] = ("node1", "node2", "node3")) -> SimpleNamespace:
    topo = load_topology(DEFAULT_TESTBED)
    tb = SimpleNamespace(topology=topo, node=script.node, running=lambda n: n in running,
                         journal_path=journal or Path("/nonexistent/faults.journal"),
                         carrier=lambda node, net: True)
    if links is not None:
        tb.adapter_states = lambda: links
    return tb


def driver(script: Script, **kw: Any) -> PacemakerDriver:
    quiet_s = kw.pop("quiet_s", 0.0)
    return PacemakerDriver(fake_tb(script, **kw), quiet_s=quiet_s)  # type: ignore[arg-type]


# -- what crm_mon shows ------------------------------------------------------------------------------


def test_crm_mon_pending_operations_and_node_attributes_are_parsed() -> None:
    s = parse_crm_mon(PENDING, seen_from="node1")
    assert s.resources["app-fs"].pending == "Monitoring"
    assert s.pending_actions() == ["app-fs monitoring on node2"]
    assert s.attributes["node1"] == {"ethmonitor-service": "1", "reach-service": "1"}
    assert s.attribute_expected["node2"] == {"reach-service": "1"}
    assert s.attributes_off() == []
    calm = parse_crm_mon(SETTLED, seen_from="node1")
    assert calm.pending_actions() == [] and calm.group_node("app") == "node1"


def test_a_ping_attribute_below_what_crm_mon_expects_is_off() -> None:
    s = parse_crm_mon(SETTLED.replace('<attribute name="reach-service" value="1" expected="1"/>\n    </node>\n'
                                      '    <node name="node2">',
                                      '<attribute name="reach-service" value="0" expected="1"/>\n    </node>\n'
                                      '    <node name="node2">', 1), seen_from="node1")
    assert s.attributes_off() == ["reach-service on node1 is 0 (expected 1)"]


# -- the settle query ----------------------------------------------------------------------------------


@pytest.fixture
def calm() -> ClusterState:
    return parse_crm_mon(SETTLED, seen_from="node1")


def test_settle_query_idle_and_written(calm: ClusterState) -> None:
    assert parse_settle_query(IDLE + ATTRD_OK, calm, ["ethmonitor-service", "reach-service"]) is None


@pytest.mark.parametrize("out, why", [
    ("S_TRANSITION_ENGINE\n@rc=0\n", "the DC (node3) is in S_TRANSITION_ENGINE"),
    ("S_POLICY_ENGINE\n@rc=0\n", "the DC (node3) is in S_POLICY_ENGINE"),
    ("S_INTEGRATION\n@rc=0\n", "the DC (node3) is in S_INTEGRATION"),
    ("@rc=102\n", "cannot read the DC's (node3) state"),
    ("", "no answer about the DC's state"),
])
def test_settle_query_dc_not_idle(calm: ClusterState, out: str, why: str) -> None:
    got = parse_settle_query(out, calm, [])
    assert got is not None and got.startswith(why)


def test_settle_query_attribute_waiting_in_attrd(calm: ClusterState) -> None:
    held = IDLE + 'name="ethmonitor-service" host="node1" value="1"\n@rc=0\n' \
        'name="reach-service" host="node1" value="0"\nname="reach-service" host="node2" value="1"\n@rc=0\n'
    assert parse_settle_query(held, calm, ["ethmonitor-service", "reach-service"]) == \
        "reach-service on node1 is 0 in attrd, not yet written (CIB: 1)"
    deleting = IDLE + 'name="ethmonitor-service" host="node2" value=""\n@rc=0\n@rc=0\n'
    assert "ethmonitor-service on node2 is unset in attrd" in str(
        parse_settle_query(deleting, calm, ["ethmonitor-service", "reach-service"]))
    assert parse_settle_query(IDLE + '@rc=0\n', calm, ["ethmonitor-service", "reach-service"]) == \
        "the settle query was cut short"


# -- settled() and wait_settled() --------------------------------------------------------------------


def test_settled_needs_the_dc_idle_not_just_a_good_snapshot() -> None:
    assert driver(Script()).settled(parse_crm_mon(SETTLED, "node1"))
    busy = Script(settle="S_TRANSITION_ENGINE\n@rc=0\n")
    d = driver(busy)
    s = parse_crm_mon(SETTLED, "node1")
    assert not d.settled(s) and not d.settled(s, placement=False) and not d.settled(s, False)
    assert d.unsettled(s) == "the DC (node3) is in S_TRANSITION_ENGINE"


def test_settled_snapshot_gaps_cost_no_extra_query() -> None:
    script = Script()
    d = driver(script, links={("node2", "standby"): "down", ("node1", "service"): "up"})
    s = parse_crm_mon(SETTLED, "node1")
    assert d.unsettled(s) == "adapters down: node2/standby"
    mid_move = parse_crm_mon(PENDING, "node1")
    d = driver(script)
    assert d.unsettled(mid_move) == "group app not started"
    assert d.unsettled(mid_move, placement=False) == "group app not started"
    assert [cmd for _, cmd in script.ran] == []  # all from the snapshot: no settle query ran


def test_settled_placement_and_powered_off_nodes() -> None:
    moved = SETTLED.replace('<node name="node1" id="1" cached="true"/>\n      </resource>\n      <resource id="app-ip"',
                            '<node name="node2" id="2" cached="true"/>\n      </resource>\n      <resource id="app-ip"')
    moved = moved.replace('<resource id="app-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true" '
                          'orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" '
                          'nodes_running_on="1">\n        <node name="node1"',
                          '<resource id="app-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true" '
                          'orphaned="false" blocked="false" managed="true" failed="false" failure_ignored="false" '
                          'nodes_running_on="1">\n        <node name="node2"')
    moved = moved.replace('nodes_running_on="1">\n        <node name="node1" id="1" cached="true"/>\n'
                          '      </resource>\n    </group>',
                          'nodes_running_on="1">\n        <node name="node2" id="2" cached="true"/>\n'
                          '      </resource>\n    </group>')
    s = parse_crm_mon(moved, "node1")
    assert s.group_node("app") == "node2"
    d = driver(Script())
    assert d.unsettled(s) == "group app on node2, not on node1"
    assert d.settled(s, placement=False)
    # a powered-off node: settled for wait_settled (powered-on nodes), missing for redundancy
    off = driver(Script(), running=("node1", "node2"))
    whole = parse_crm_mon(SETTLED.replace('<node name="node3" id="3" online="true"', '<node name="node3" id="3" '
                                          'online="false"'), "node1")
    assert off.snapshot_gap(whole, every_node=True) == "nodes not online: node3"


def test_wait_settled_waits_out_the_quiet_period_after_a_fault_change(tmp_path: Path) -> None:
    journal = tmp_path / "faults.journal"
    journal.write_text("")  # just healed
    d = driver(Script(), journal=journal, quiet_s=0.6)
    t0 = time.monotonic()
    s = d.wait_settled(timeout=5)
    assert s.group_node("app") == "node1" and time.monotonic() - t0 >= 0.5
    os.utime(journal, (time.time() - 60, time.time() - 60))  # long ago: no wait
    t0 = time.monotonic()
    d.wait_settled(timeout=5)
    assert time.monotonic() - t0 < 0.5


def test_wait_settled_timeout_says_what_is_pending() -> None:
    from harness.errors import WaitTimeout
    d = driver(Script(settle=IDLE + 'name="ethmonitor-service" host="node1" value="1"\n@rc=0\n'
                                    'name="reach-service" host="node1" value="0"\n@rc=0\n'))
    with pytest.raises(WaitTimeout) as e:
        d.wait_settled(timeout=0.3)
    assert "reach-service on node1 is 0 in attrd" in str(e.value)


def test_state_asks_the_last_good_node_first() -> None:
    script = Script()
    calls: list[str] = []

    def node(name: str) -> Any:
        inner = script.node(name)

        def run(argv: Any, **kw: Any) -> Result:
            calls.append(name)
            if name == "node1":
                raise CommandTimedOut(Result(name, tuple(argv), None, "", "", 8.0), 8.0)
            return inner.run(argv, **kw)
        return SimpleNamespace(run=run)
    tb = fake_tb(script)
    tb.node = node
    d = PacemakerDriver(tb)  # type: ignore[arg-type]
    assert d.state() is not None and calls == ["node1", "node2"]
    calls.clear()
    assert d.state() is not None and calls == ["node2"]


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
