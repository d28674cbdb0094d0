"""The test plan: every fault × target of the topology, with the outcome a correct cluster gives."""

from __future__ import annotations

import pytest

from harness.faults import FAULTS, Target
from harness.plan import Case, expect, plan
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
    assert {c.fault for c in cases} == set(FAULTS)
    assert "node_power_off-node1" in ids and "adapter_down-node1-service" in ids and "partition-node3" in ids
    for c in cases:  # every case has an expectation
        assert expect(TOPO, c, HOME)[0].outcome in ("fallover", "stay", "outage", "planned")


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


def test_declared_expectations_override_and_say_so() -> None:
    topo = TOPO.model_copy(update={"expectations": {"network_down_global": "stay"}})
    e = expect(topo, Case("network_down_global", Target(network="service")), HOME)[0]
    assert e.outcome == "stay" and "declared" in e.why
