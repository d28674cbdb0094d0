"""Settled means nothing missing *and* nothing pending: the driver's definition (crm_mon, the settle query).

The poller that records it, and where the shared filesystem is mounted: test_settled_poller.py.
Scripted command output (`settle_script`), recorded crm_mon XML; no cluster.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from settle_script import ATTRD_OK, IDLE, PENDING, SETTLED, Script, driver, fake_tb

from harness.drivers.pacemaker import PacemakerDriver
from harness.drivers.settle import parse_settle_query
from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import CommandTimedOut
from harness.result import Result

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


def test_a_dc_caught_in_an_empty_recheck_run_is_asked_again_before_it_counts_as_busy() -> None:
    """cluster-recheck-interval makes the DC plan every 5 s; a look in that instant is no unsettled cluster."""
    class Sequence(Script):
        def __init__(self, *answers: str) -> None:
            super().__init__()
            self.answers = list(answers)

        def node(self, name: str) -> Any:
            inner = super().node(name)

            def run(argv: Any, **kw: Any) -> Result:
                if tuple(argv)[0] == "sh" and self.answers:
                    self.settle = self.answers.pop(0)
                return inner.run(argv, **kw)
            return SimpleNamespace(run=run)

    s = parse_crm_mon(SETTLED, "node1")
    blip = Sequence("S_POLICY_ENGINE\n@rc=0\n", IDLE + ATTRD_OK)
    assert driver(blip).busy(s) is None
    assert [cmd for _, cmd in blip.ran].count("sh") == 2
    working = Sequence("S_TRANSITION_ENGINE\n@rc=0\n", "S_TRANSITION_ENGINE\n@rc=0\n")
    assert driver(working).busy(s) == "the DC (node3) is in S_TRANSITION_ENGINE"
    electing = Sequence("S_ELECTION\n@rc=0\n", IDLE + ATTRD_OK)  # not a transition: no second look
    assert driver(electing).busy(s) == "the DC (node3) is in S_ELECTION"
    assert [cmd for _, cmd in electing.ran].count("sh") == 1


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


def _app_on_node2() -> str:
    """The settled cluster with group app on node2 (away from home)."""
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
    return moved


def test_settled_placement_and_powered_off_nodes() -> None:
    moved = _app_on_node2()
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


def test_wait_settled_does_not_poll_through_the_quiet_period(tmp_path: Path) -> None:
    """Settled but for the quiet period: the next look is when it ends, not a crm_mon every 0.25 s until then
    (the CPU the cluster needs, and a case's recovery ending up to a poll late)."""
    journal = tmp_path / "faults.journal"
    journal.write_text("")  # just healed
    script = Script()
    d = driver(script, journal=journal, quiet_s=1.0)
    d.wait_settled(timeout=5)
    assert d.quiet_left() == 0.0
    assert [what for _, what in script.ran].count("crm_mon") == 2, script.ran  # before and after the quiet period


def test_wait_settled_timeout_says_what_is_pending() -> None:
    from harness.errors import WaitTimeout
    d = driver(Script(settle=IDLE + 'name="ethmonitor-service" host="node1" value="1"\n@rc=0\n'
                                    'name="reach-service" host="node1" value="0"\n@rc=0\n'))
    with pytest.raises(WaitTimeout) as e:
        d.wait_settled(timeout=0.3)
    assert "reach-service on node1 is 0 in attrd" in str(e.value)


def _asked(frozen: set[str]) -> tuple[PacemakerDriver, list[str]]:
    """A driver whose nodes answer crm_mon as Script does, except the ``frozen`` ones (a timeout); who was asked."""
    script = Script()
    calls: list[str] = []

    def node(name: str) -> Any:
        inner = script.node(name)

        def run(argv: Any, **kw: Any) -> Result:
            calls.append(name)
            if name in frozen:
                raise CommandTimedOut(Result(name, tuple(argv), None, "", "", 8.0), 8.0)
            return inner.run(argv, **kw)
        return SimpleNamespace(run=run)
    tb = fake_tb(script)
    tb.node = node
    return PacemakerDriver(tb), calls  # type: ignore[arg-type]


def test_state_asks_the_last_good_node_first() -> None:
    d, calls = _asked({"node1"})
    assert d.state() is not None and calls == ["node1", "node2"]
    calls.clear()
    assert d.state() is not None and calls == ["node2"]


def test_state_asks_the_nodes_a_case_does_not_time_first() -> None:
    frozen: set[str] = set()
    d, calls = _asked(frozen)
    assert d.state() is not None and calls == ["node1"]
    d.ask_first(["node3"])
    assert d.state() is not None and d.state() is not None and calls == ["node1", "node3", "node3"]
    frozen.add("node3")  # the spare stops answering: the next in line, and it is kept
    calls.clear()
    assert d.state() is not None and calls == ["node3", "node1"]
    calls.clear()
    assert d.state() is not None and calls == ["node1"]
    d.ask_first([])  # no spare: the topology's order
    calls.clear()
    assert d.state() is not None and calls == ["node1"]


def test_spare_nodes_are_neither_struck_nor_timed() -> None:
    from harness.faults import Target
    from harness.plan import Case, Expected, spare_nodes
    topo = SimpleNamespace(node_names=["node1", "node2", "node3"])
    fallover = Expected(group="app", outcome="fallover", home="node1", takeover="node2")
    assert spare_nodes(topo, Case("node_stop", Target(node="node1")), fallover) == ["node3"]  # type: ignore[arg-type]
    stay = Expected(group="app", outcome="stay", home="node1")
    assert spare_nodes(topo, Case("partition", Target(nodes=("node3",))), stay) == ["node2"]  # type: ignore[arg-type]
    assert spare_nodes(topo, Case("node_stop", Target(node="node3")), fallover) == []  # type: ignore[arg-type]



# -- the runner's recovery: `up`'s last settled look, taken again when every group is placed ----------------


def test_a_settled_look_after_the_heal_is_reused_only_while_nothing_changed(tmp_path: Path) -> None:
    """`up` settles with groups anywhere; when its last look (after the quiet period) already had every group
    placed, the runner takes it rather than a second look. Never a look from before `since`, never across a
    fault change, never one whose group is away from home when placement counts."""
    journal = tmp_path / "faults.journal"
    journal.write_text("")
    script = Script()
    d = driver(script, journal=journal)
    up = driver(script, journal=journal)  # the testbed's `up` asks through a driver of its own
    assert d.settled_look(since=0.0) is None  # nothing looked yet
    t_heal = time.monotonic()
    up.wait_settled(timeout=5, placement=False)
    looks = len(script.ran)
    s = d.settled_look(since=t_heal, placement=True)
    assert s is not None and s.group_node("app") == "node1"
    assert len(script.ran) == looks  # no crm_mon, no settle query: the look that was made is the answer
    assert d.settled_look(since=time.monotonic()) is None  # made before `since`: another recovery's
    with open(journal, "a") as f:  # a fault injected or healed since: the look says nothing any more
        f.write('{"fault": "x"}\n')
    assert d.settled_look(since=t_heal) is None


def test_a_settled_look_with_the_group_away_does_not_count_for_placement(tmp_path: Path) -> None:
    journal = tmp_path / "faults.journal"
    journal.write_text("")
    script = Script(crm_mon=_app_on_node2())
    d = driver(script, journal=journal)
    t_heal = time.monotonic()
    s = d.wait_settled(timeout=5, placement=False)
    assert s.group_node("app") == "node2"
    assert d.settled_look(since=t_heal, placement=False) is not None
    assert d.settled_look(since=t_heal, placement=True) is None  # the runner then waits for the failback


# -- the testbed's pace ----------------------------------------------------------------------------------


def test_a_testbed_declares_how_often_and_how_patiently_its_nodes_are_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The embedded testbed's pace by default; a slow testbed's (emulated VMs) where it declares one: its
    nodes are then asked less often (the settle wait's pause between looks) and given longer to answer
    (every crm_mon runs with the declared timeout)."""
    import harness.drivers.pacemaker as pcmk
    from harness.testbed.base import Pace

    timeouts: list[float] = []
    pauses: list[float] = []

    def one_look(check: Any, *, interval: Any, **_: Any) -> Any:
        answer = check()
        pauses.append(interval())
        return answer or SETTLED

    monkeypatch.setattr(pcmk, "wait_until", one_look)
    script = Script(crm_mon=PENDING)  # not settled: the look is followed by a pause
    plain = driver(script)
    assert (plain.poll_interval, plain.query_timeout, plain.admin_timeout) == (0.25, 8.0, 30.0)
    plain.wait_settled(timeout=60)
    tb = fake_tb(script)
    tb.pace = Pace(poll_s=2.0, query_timeout_s=45.0, admin_timeout_s=120.0)
    inner = tb.node

    def node(n: str) -> SimpleNamespace:
        def run(argv: Any, *, timeout: float, **kw: Any) -> Result:
            timeouts.append(timeout)
            return inner(n).run(argv, timeout=timeout, **kw)  # type: ignore[no-any-return]
        return SimpleNamespace(run=run)

    tb.node = node
    slow = PacemakerDriver(tb, quiet_s=0.0)  # type: ignore[arg-type]
    assert slow.admin_timeout == 120.0
    slow.wait_settled(timeout=60)
    assert pauses == [0.25, 2.0]
    assert timeouts and set(timeouts) == {45.0}


def test_a_group_held_where_it_was_moved_is_released_however_the_block_ends() -> None:
    """A cascading group fails back as soon as its move is cleared: `moved_to` keeps the move for the
    block (the smoke test reads the moved data there) and clears it on an exception too."""
    d = driver(Script())
    admin: list[list[str]] = []
    d.admin = lambda argv, **_: admin.append(argv)  # type: ignore[method-assign]
    d.wait_until = lambda predicate, **_: "on node2"  # type: ignore[method-assign,assignment]
    with pytest.raises(RuntimeError), d.moved_to("app", "node2") as state:
        assert state == "on node2"
        assert admin == [["crm_resource", "--resource", "app", "--move", "--node", "node2"]]
        raise RuntimeError("the read failed")
    assert admin[-1] == ["crm_resource", "--resource", "app", "--clear"]
    admin.clear()
    assert d.move_group("app", "node2") == "on node2"
    assert [a[-1] for a in admin] == ["node2", "--clear"]  # move_group clears at once
