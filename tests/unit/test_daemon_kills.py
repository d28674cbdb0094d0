"""Issue 14 item 5 without a cluster: a subdaemon kill expects what the installed Pacemaker's source says
(pcmk_source), the either-outcome is still judged (a move without a fence, or with the node lost, fails),
and the topology can give pacemakerd the environment a packaged node would (PCMK_fail_fast)."""

from __future__ import annotations

from typing import Any

import pytest
from checker_history import ctx, ev, probe  # type: ignore[attr-defined]

from harness.checkers.fencing import check_fencing
from harness.drivers.state import ClusterState
from harness.faults import FAULTS, Target, pcmk_source
from harness.faults.daemons import SUBDAEMON_KILLS
from harness.plan import Case, expect
from harness.runner import ASSERTED
from harness.testbed import nodes
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
HOME = {"app": "node1"}
RACE = ("based_kill", "execd_kill", "schedulerd_kill", "controld_kill")
QUIET = ("fenced_kill",)


@pytest.fixture
def version(monkeypatch: pytest.MonkeyPatch) -> Any:
    """Set the version `pacemakerd --version` answers on this host (the embedded nodes run its binaries)."""
    def use(v: tuple[int, int, int] | None) -> None:
        monkeypatch.setattr(pcmk_source, "_host_version", lambda: v)
    return use


def expected(fault: str, topo: Topology = TOPO, node: str = "node1") -> tuple[str, str]:
    e = expect(topo, Case(fault, Target(node=node)), HOME)[0]
    return e.outcome, e.describe()


def test_the_six_kills_are_one_class_from_one_table_under_their_own_names() -> None:
    assert [f.name for f in SUBDAEMON_KILLS] == ["based_kill", "fenced_kill", "execd_kill", "attrd_kill",
                                                 "schedulerd_kill", "controld_kill"]
    assert len({type(f).__mro__[1] for f in SUBDAEMON_KILLS}) == 1
    for f in SUBDAEMON_KILLS:
        assert FAULTS[f.name] is f and f.processes == (f"pacemaker-{f.name.removesuffix('_kill')}",)
        assert f.summary.startswith(f.processes[0]) and f.mechanism


@pytest.mark.parametrize("fault", RACE)
def test_a_kill_that_takes_the_controller_down_expects_either_outcome_with_one_owner(version: Any, fault: str) -> None:
    version((2, 1, 5))
    outcome, text = expected(fault)
    assert outcome == "planned"
    assert "node1 keeps it, or app moves to node2 once node1 is fenced or stopped there cleanly, never running twice" in text
    assert "peer process is no longer available" in text and "Pacemaker 2.1.5, source 2.0.0-3.0.2" in text
    assert "Documented: respawned, nothing happens" in text  # where the source and the prose differ
    # the move is judged: after a fence (or a clean stop), by one owner, within the outage SLA
    f = FAULTS[fault]
    assert f.extra_asserted == ("fencing",) and f.expectation == {"clean_move_ok": True}
    assert {"outage", "split_brain", "lost_writes"} <= set(ASSERTED[outcome])


def test_an_attrd_kill_expects_the_group_stays_or_moves_cleanly_as_its_respawn_wipes_the_attributes(
        version: Any) -> None:
    version((2, 1, 5))
    outcome, text = expected("attrd_kill")
    assert outcome == "planned" and "attrd_erase_attrs" in text and "ban it from node1" in text
    assert "or app moves to node2 after a clean stop on node1, never running twice" in text
    assert FAULTS["attrd_kill"].extra_asserted == ("fencing",)


def test_the_scheduler_kill_says_it_matters_on_the_dc_only(version: Any) -> None:
    version((2, 1, 5))
    assert "(on the DC only: is node1 it?)" in expected("schedulerd_kill")[1]


@pytest.mark.parametrize("fault", QUIET)
def test_a_kill_the_controller_rides_out_expects_the_group_to_stay(version: Any, fault: str) -> None:
    version((2, 1, 5))
    outcome, text = expected(fault)
    assert outcome == "stay" and "pacemakerd respawns pacemaker-" in text
    assert FAULTS[fault].extra_asserted == ()


def test_a_version_outside_the_source_read_gets_the_documented_outcome(version: Any) -> None:
    version((1, 1, 24))
    outcome, text = expected("controld_kill")
    assert outcome == "stay" and "Pacemaker 1.1.24 is outside the versions whose source was read (2.0.0-3.0.2)" in text
    version((3, 0, 2))
    assert expected("controld_kill")[0] == "planned"


def test_a_testbed_whose_nodes_are_not_this_host_is_not_asked_while_planning(version: Any) -> None:
    version((1, 0, 0))  # would be outside: it must not be used for another provider's nodes
    ssh = TOPO.model_copy(update={"provider": "ssh"})
    outcome, text = expected("based_kill", ssh)
    assert outcome == "planned" and "the Pacemaker of ssh nodes (unknown yet)" in text


def seen(dc: str, version: str = "2.1.5-a3f44794f94") -> ClusterState:
    return ClusterState("node2", dc, True, {}, {}, {}, stack_versions={"pacemaker": version})


def test_the_runners_look_at_the_cluster_decides_the_scheduler_kill(version: Any) -> None:
    version((2, 1, 5))
    elsewhere = expect(TOPO, Case("schedulerd_kill", Target(node="node1")), HOME, seen=seen("node2"))[0]
    assert elsewhere.outcome == "stay" and "node1 is not the DC (node2 is" in elsewhere.why
    on_dc = expect(TOPO, Case("schedulerd_kill", Target(node="node1")), HOME, seen=seen("node1"))[0]
    assert on_dc.outcome == "planned" and "(node1 is the DC)" in on_dc.why


def test_the_version_the_dc_runs_wins_over_the_one_planning_assumed(version: Any) -> None:
    version((2, 1, 5))
    e = expect(TOPO, Case("controld_kill", Target(node="node1")), HOME, seen=seen("node2", "1.1.24-1"))[0]
    assert e.outcome == "stay" and "Pacemaker 1.1.24 is outside" in e.why


def test_a_kill_on_a_node_the_group_does_not_run_on_expects_nothing(version: Any) -> None:
    version((2, 1, 5))
    assert expected("controld_kill", node="node2")[0] == "stay"


def test_the_version_is_read_from_pacemakerds_first_line() -> None:
    assert pcmk_source.parse_version("Pacemaker 2.1.5\nWritten by Andrew Beekhof") == (2, 1, 5)
    assert pcmk_source.parse_version("Pacemaker 3.0.1-rc2") == (3, 0, 1)
    assert pcmk_source.parse_version("pacemakerd: not found") is None


# -- the fencing verdict of an either-outcome ----------------------------------------------------------


def kill_history(*extra: object) -> Timeline:
    events = [ev(-5, CLUSTER_GROUP_STARTED, "node1", group="app"),
              ev(0, FAULT_INJECTED, "node1", fault="controld_kill", target="node1", family="cluster"), *extra]
    return Timeline(events=list(events), probe=probe(-1, 0, True, "node1") + probe(0, 3, False, None)
                    + probe(3, 8, True, "node2"))  # type: ignore[arg-type]


EITHER = {"group": "app", "fence_victim": "node1", "clean_move_ok": True, "expect_fallover": False}


def test_a_clean_move_off_a_node_that_stayed_a_member_passes() -> None:
    v = check_fencing(ctx(kill_history(ev(3, CLUSTER_GROUP_STARTED, "node2", group="app")), **EITHER))
    assert v.valid is True and "while node1 was still a member" in v.explanation, v.explanation


def test_a_move_after_the_node_left_unfenced_fails() -> None:
    """PCMK_fail_fast with fencing off: the node panics, nobody fences it, and the group moves."""
    t = kill_history(ev(1, CLUSTER_NODE_LOST, "node1"), ev(3, CLUSTER_GROUP_STARTED, "node2", group="app"))
    v = check_fencing(ctx(t, **EITHER))
    assert v.valid is False and "although it was never fenced" in v.explanation, v.explanation


def test_a_move_after_the_node_left_and_was_fenced_passes() -> None:
    fenced = ev(1.5, FENCED, "node1", action="off", outcome="OK", device="fence")
    fenced.data["done"] = fenced.wall + 0.2
    t = kill_history(ev(1, CLUSTER_NODE_LOST, "node1"), fenced, ev(3, CLUSTER_GROUP_STARTED, "node2", group="app"))
    assert check_fencing(ctx(t, **EITHER)).valid is True


def test_a_move_after_a_fence_that_came_just_after_the_controller_rejoined_is_put_down_to_the_fence() -> None:
    """Seen live (based_kill): the controller rejoined at +1.47 s, the DC's fence (decided before) at +1.51 s."""
    fenced = ev(1.51, FENCED, "node1", action="off", outcome="OK", device="fence")
    fenced.data["done"] = fenced.wall + 0.1
    t = kill_history(ev(0.3, CLUSTER_NODE_LOST, "node1"), ev(1.47, CLUSTER_NODE_JOINED, "node1"), fenced,
                     ev(6.75, CLUSTER_GROUP_STARTED, "node2", group="app"))
    v = check_fencing(ctx(t, **EITHER))
    assert v.valid is True and "after node1 was fenced" in v.explanation, v.explanation


def test_without_clean_move_ok_a_move_of_a_member_still_needs_a_fence() -> None:
    exp = {k: v for k, v in EITHER.items() if k != "clean_move_ok"}
    v = check_fencing(ctx(kill_history(ev(3, CLUSTER_GROUP_STARTED, "node2", group="app")), **exp))
    assert v.valid is False


# -- pacemakerd's environment --------------------------------------------------------------------------


def with_env(env: dict[str, str]) -> Topology:
    data = TOPO.model_dump(exclude={"source"})
    data["cluster"]["pacemaker_env"] = env
    return Topology.model_validate(data)


def test_pacemakerd_starts_with_the_declared_environment(tmp_path: Any) -> None:
    script = nodes.services_script(Layout(with_env({"PCMK_fail_fast": "yes"}), "t", tmp_path))
    assert "env PCMK_fail_fast=yes setsid -f pacemakerd" in script
    assert "\nsetsid -f pacemakerd" in nodes.services_script(Layout(TOPO, "t", tmp_path))


@pytest.mark.parametrize("env, words", [({"fail_fast": "yes"}, "is PCMK_"),
                                        ({"PCMK_fail_fast": "yes; reboot"}, "characters a shell would read")])
def test_a_bad_pacemaker_environment_is_refused_naming_it(env: dict[str, str], words: str) -> None:
    with pytest.raises(ValueError, match=words):
        with_env(env)
