"""The test plan: every fault × target of the topology, with the outcome a correct cluster gives."""

from __future__ import annotations

import pytest

from harness.faults import FAULTS, Target
from harness.plan import Case, PlanExclusion, excluded, expect, plan, repetitions
from harness.topology import DEFAULT_TESTBED, load_topology

TOPO = load_topology(DEFAULT_TESTBED)
HOME = {"app": "node1"}


def outcome(fault: str, **target: object) -> tuple[str, str | None]:
    e = expect(TOPO, Case(fault, Target(**target)), HOME)[0]  # type: ignore[arg-type]
    return e.outcome, e.takeover


def test_every_catalogue_fault_is_planned_with_readable_unique_ids() -> None:
    cases = plan(TOPO)
    ids = [c.id for c in cases]
    assert len(ids) == len(set(ids))
    assert {c.fault for c in cases} == {name for name, f in FAULTS.items() if f.targets(TOPO)}
    assert {name for name, f in FAULTS.items() if not f.targets(TOPO)} == {"app_kill_threshold", "app_failure_expiry"}
    assert "node_power_off-node1" in ids and "adapter_down-node1-service" in ids and "partition-node3" in ids
    for c in cases:  # every case has an expectation
        assert expect(TOPO, c, HOME)[0].outcome in ("fallover", "stay", "outage", "planned", "restart")


@pytest.mark.parametrize("fault, target, expected", [
    ("node_power_off", {"node": "node1"}, ("fallover", "node2")),
    ("node_power_off", {"node": "node2"}, ("stay", None)),
    ("node_hang", {"node": "node1"}, ("fallover", "node2")),
    ("cpu_overload", {"node": "node1"}, ("stay", None)),
    ("adapter_down", {"node": "node1", "network": "service"}, ("fallover", "node2")),
    ("adapter_down", {"node": "node1", "network": "standby"}, ("stay", None)),
    ("network_down_global", {"network": "service"}, ("outage", None)),
    ("network_down_global", {"network": "standby"}, ("stay", None)),
    ("partition", {"nodes": ("node1",)}, ("fallover", "node2")),
    ("partition", {"nodes": ("node2", "node3")}, ("fallover", "node2")),  # node1 alone has no quorum
    ("disk_pull", {"disk": "shared"}, ("outage", None)),
    ("app_kill", {"group": "app"}, ("fallover", "node2")),
    ("app_start_fail", {"group": "app", "node": "node2"}, ("fallover", "node3")),
    ("group_move", {"group": "app", "node": "node3"}, ("fallover", "node3")),
    ("node_maintenance", {"node": "node1"}, ("stay", None)),
])
def test_expected_outcomes(fault: str, target: dict, expected: tuple[str, str | None]) -> None:
    assert outcome(fault, **target) == expected


def test_takeover_follows_the_priority_list_from_where_the_group_runs() -> None:
    e = expect(TOPO, Case("node_power_off", Target(node="node2")), {"app": "node2"})[0]
    assert (e.outcome, e.takeover) == ("fallover", "node3")
    e = expect(TOPO, Case("node_power_off", Target(node="node3")), {"app": "node3"})[0]
    assert (e.outcome, e.takeover) == ("fallover", "node1")


def test_a_start_that_fails_on_the_chosen_node_allows_the_declared_fallover_for_each_of_its_two_takeovers() -> None:
    sla = TOPO.sla
    e = expect(TOPO, Case("app_start_fail", Target(group="app", node="node2"), trigger="app_kill"), HOME)[0]
    assert e.limits == {"max_fallover_s": 2 * sla.max_fallover_s, "max_outage_s": sla.max_outage_s + sla.max_fallover_s}
    assert expect(TOPO, Case("app_kill", Target(group="app")), HOME)[0].limits == {}  # one takeover: as declared


def test_declared_expectations_override_and_say_so() -> None:
    topo = TOPO.model_copy(update={"expectations": {"network_down_global": "stay"}})
    e = expect(topo, Case("network_down_global", Target(network="service")), HOME)[0]
    assert e.outcome == "stay" and "declared" in e.why


# -- user applications: where app_kill/app_hang find them, and what is left out of the plan --------

USERAPP = load_topology(DEFAULT_TESTBED.parent / "local-userapp.yaml")


def with_application(**app: object):  # type: ignore[no-untyped-def]
    g = USERAPP.groups[0]
    return USERAPP.model_copy(update={"groups": [g.model_copy(update={
        "application": g.application.model_copy(update=app)})]})


def test_a_user_application_is_planned_like_the_sample_one() -> None:
    assert [c.id for c in plan(USERAPP)] == [c.id for c in plan(TOPO)]
    assert excluded(USERAPP) == []


@pytest.mark.parametrize("app", [{"pid_file": "/run/my.pid"}, {"process": "my-daemon"}])
def test_a_detached_application_that_says_where_it_is_is_planned(app: dict) -> None:
    topo = with_application(detached=True, **app)
    assert excluded(topo) == []
    assert {"app_kill-app", "app_hang-app"} <= {c.id for c in plan(topo)}


def test_a_detached_application_leaves_app_kill_app_hang_and_their_trigger_out_with_a_reason() -> None:
    topo = with_application(detached=True)
    with pytest.warns(PlanExclusion) as warned:
        ids = {c.id for c in plan(topo)}
    left = {e.case.id: e for e in excluded(topo)}
    assert set(left) == {"app_kill-app", "app_hang-app", "app_start_fail-node2-app"}
    assert not set(left) & ids
    assert ids == {c.id for c in plan(TOPO)} - set(left)
    assert [str(w.message) for w in warned] == [str(e) for e in excluded(topo)]
    for e in left.values():
        line = str(e)
        assert "\n" not in line and line.startswith(f"{e.case.id} left out of the plan: group app: ")
        assert "detached" in line and "pid_file or process" in line
    assert "its trigger app_kill cannot run" in str(left["app_start_fail-node2-app"])


def test_only_the_requested_faults_are_left_out() -> None:
    topo = with_application(detached=True)
    assert [e.case.id for e in excluded(topo, ["app_hang", "node_power_off"])] == ["app_hang-app"]
    assert excluded(topo, ["node_power_off"]) == []


@pytest.mark.parametrize("app, error", [
    ({"pid_file": "/run/x.pid"}, "pid_file needs your own start, stop and monitor commands"),
    ({"detached": True}, "detached needs your own start, stop and monitor commands"),
    ({"start": "a", "stop": "b", "monitor": "c", "pid_file": "x.pid"}, "pid_file must be an absolute path"),
    ({"start": "a", "stop": "b", "monitor": "c", "process": "(oops"}, "process is not a regular expression"),
    ({"start": "a", "stop": "b", "monitor": "c", "pid_file": "/x", "process": "y"}, "give one"),
])
def test_application_location_keys_are_checked_with_one_line_naming_the_field(tmp_path, app: dict,
                                                                               error: str) -> None:
    import yaml

    from harness.errors import TopologyError

    raw = yaml.safe_load(DEFAULT_TESTBED.read_text())
    raw["groups"][0]["application"] = app
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(raw))
    with pytest.raises(TopologyError) as e:
        load_topology(bad)
    assert str(e.value).startswith(f"{bad}: groups[0].application") and error in str(e.value)
    assert "\n" not in str(e.value)


def test_the_agent_gets_the_location_keys_and_the_topology_directory() -> None:
    import xml.etree.ElementTree as ET

    from harness.testbed.clusterconf import cib_xml
    from harness.testbed.layout import Layout

    empty = '<cib validate-with="pacemaker-3.0"><configuration><crm_config/><nodes/><resources/>' \
            '<constraints/></configuration><status/></cib>'

    def params(topo) -> dict[str, str]:  # type: ignore[no-untyped-def]
        root = ET.fromstring(cib_xml(Layout(topo, instance="unit"), empty))
        prim = root.find(".//primitive[@id='app-app']")
        assert prim is not None
        return {nv.get("name"): nv.get("value") for nv in prim.iter("nvpair")}  # type: ignore[misc]

    p = params(USERAPP)
    assert p["workdir"] == str(DEFAULT_TESTBED.parent) and p["start_cmd"] == "../examples/userapp/start.sh"
    assert "pid_file" not in p and "process" not in p
    assert params(with_application(process="my-daemon"))["process"] == "my-daemon"
    assert params(with_application(pid_file="/run/my.pid"))["pid_file"] == "/run/my.pid"
    assert "workdir" not in params(TOPO)  # the sample app needs none


def test_a_stack_without_quorum_or_a_resource_manager_leaves_out_what_it_cannot_do() -> None:
    ka = load_topology("testbeds/local-keepalived.yaml")
    why = {e.case.id: e.why for e in excluded(ka)}
    assert "it needs quorum" in why["partition-node1"] and "keepalived has no membership" in why["partition-node1"]
    assert "it needs quorum" in why["node_hang-node1"]
    assert "it needs quorum" in why["network_down_global-service"]
    assert "network_down_global-standby" not in why  # not the group's network: nobody takes anything
    assert "it needs resource_manager" in why["group_move-node2-app"]
    assert "it needs pacemaker" in why["heartbeat_loss-node1"] and "it needs pacemaker" in why["corosync_kill-node1"]
    with pytest.warns(PlanExclusion):
        planned = {c.id for c in plan(ka)}
    assert {"node_power_off-node1", "adapter_down-node1-service", "app_kill-app"} <= planned


def test_a_missing_capability_of_the_testbed_leaves_the_fault_out_with_the_reason() -> None:
    from harness.plan import capabilities_of

    caps = {**capabilities_of(TOPO), "impair": "the kernel has no sch_netem"}
    why = {e.case.id: e.why for e in excluded(TOPO, capabilities=caps)}
    assert why["packet_delay-node1-service"] == ("it needs impair (delay or corrupt an adapter's packets): "
                                                 "the kernel has no sch_netem")
    with pytest.warns(PlanExclusion, match="packet_delay-node1-service left out"):
        cases = plan(TOPO, capabilities=caps)
    assert not any(c.fault in ("packet_delay", "packet_corrupt") for c in cases)


def test_repetitions_are_the_other_passive_nodes_and_every_failure_type_stays_in_the_daily_suite() -> None:
    """suites/fallover leaves out `repetitions` (issue 14's budget); suites/matrix runs them. Moving a case must
    never drop a failure type: a fault, its network/disk/group, the role of the node it strikes, the outcome."""
    cases = plan(TOPO)
    again = repetitions(TOPO, cases)
    moved = [c for c in cases if c.id in again]
    assert moved and all({c.target.node, *c.target.nodes} - {None} == {"node3"} for c in moved), [c.id for c in moved]
    assert "node_power_off-node3" in again and "packet_loss-node3-standby" in again and "partition-node3" in again

    def kind(c: Case) -> tuple[object, ...]:
        e = expect(TOPO, c, HOME)[0]
        struck = {c.target.node, *c.target.nodes} - {None}
        return (c.fault, c.trigger, c.target.network, c.target.disk, c.target.group, "node1" in struck,
                bool(struck), e.outcome, e.takeover)

    daily = [c for c in cases if c.id not in again]
    assert {kind(c) for c in daily} == {kind(c) for c in cases}
    assert {"node_power_off-node1", "node_power_off-node2", "adapter_down-node2-standby"} <= {c.id for c in daily}


def test_a_node_that_runs_a_group_is_never_a_repetition_of_a_passive_one() -> None:
    """With a second group at home on node3, node3's faults are their own failure type again."""
    second = TOPO.groups[0].model_copy(update={"name": "app2", "nodes": ["node3", "node1", "node2"]})
    topo = TOPO.model_copy(update={"groups": [*TOPO.groups, second]})
    cases = [Case("node_power_off", Target(node=n)) for n in topo.node_names]
    assert repetitions(topo, cases) == set()
    assert repetitions(TOPO, cases) == {"node_power_off-node3"}
