"""Partition shapes (issue 14, item 8): the grudges as literal data, their rules, and their quorum-derived outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.faults import FAULTS, Target
from harness.faults.partitions import (
    bridge,
    bridge_halves,
    default_bridge,
    minority,
    one_way,
    two_way_splits,
)
from harness.plan import Case, expect, plan
from harness.testbed import sshnet, wire
from harness.testbed.base import Rule
from harness.testbed.layout import Layout
from harness.topology import DEFAULT_TESTBED, Node, Topology, load_topology

TOPO = load_topology(DEFAULT_TESTBED)
CAPS = {c: None for c in ("power", "freeze", "spawn", "adapter", "network", "rules", "impair", "disk", "fencing",
                          "resource_manager", "pacemaker", "shared_disk", "quorum")}


def nodes(n: int) -> list[str]:
    return [f"node{i}" for i in range(1, n + 1)]


def topology(n: int) -> Topology:
    names = nodes(n)
    group = TOPO.groups[0].model_copy(update={"nodes": names})
    return TOPO.model_copy(update={"nodes": [Node(name=x) for x in names], "groups": [group]})


def outcome(topo: Topology, fault: str, side: tuple[str, ...], home: str = "node1") -> tuple[str, str | None]:
    e = expect(topo, Case(fault, Target(nodes=side)), {"app": home})[0]
    return e.outcome, e.takeover


def test_two_way_splits_name_each_split_once_by_its_smaller_side() -> None:
    assert two_way_splits(nodes(3)) == [("node1",), ("node2",), ("node3",)]
    four = two_way_splits(nodes(4))
    assert four == [("node1",), ("node2",), ("node3",), ("node4",),
                    ("node1", "node2"), ("node1", "node3"), ("node1", "node4")]
    assert len(two_way_splits(nodes(5))) == 2 ** 4 - 1
    assert len(two_way_splits(nodes(6))) == 2 ** 5 - 1


def test_minority_is_below_half_and_holds_the_first_node() -> None:
    assert minority(nodes(3), "node1") == ("node1",)
    assert minority(nodes(4), "node1") == ("node1",)
    assert minority(nodes(5), "node1") == ("node1", "node2")
    assert minority(nodes(5), "node5") == ("node1", "node5")  # wraps around, listed in topology order
    assert minority(nodes(7), "node2") == ("node2", "node3", "node4")


def test_one_way_grudge_every_other_node_stops_hearing_the_node() -> None:
    assert one_way("node2", nodes(3)) == (("node1", ("node2",)), ("node3", ("node2",)))


def test_bridge_is_jepsens() -> None:
    # jepsen.nemesis-test: (bridge [1 2 3 4 5]) = {1 #{4 5}, 2 #{4 5}, 4 #{1 2}, 5 #{1 2}}
    five = nodes(5)
    assert default_bridge(five) == "node3"
    assert dict(bridge(five, "node3")) == {"node1": ("node4", "node5"), "node2": ("node4", "node5"),
                                           "node4": ("node1", "node2"), "node5": ("node1", "node2")}
    assert dict(bridge(nodes(3), "node2")) == {"node1": ("node3",), "node3": ("node1",)}
    assert bridge_halves(nodes(4), "node3") == (("node1",), ("node2", "node4"))


def test_grudge_rules_on_the_switch_and_on_real_hosts(tmp_path: Path) -> None:
    layout = Layout(TOPO, instance="unit", state_root=tmp_path)
    rule = Rule("grudge", grudge=one_way("node1", TOPO.node_names))
    lines = wire.rule_lines(layout, rule)
    p1 = wire.nft_set(wire.ports(layout, ["node1"]))
    assert lines == [f"iifname {p1} oifname {wire.nft_set(wire.ports(layout, [n]))} drop" for n in ("node2", "node3")]
    # the receiver drops: node1 itself has nothing to drop, node2 drops node1's addresses on every network
    assert sshnet.rule_bodies(TOPO, rule, "node1") == []
    assert sshnet.rule_bodies(TOPO, rule, "node2") == [("input", "ip saddr { 10.77.1.11, 10.77.2.11 } drop")]


@pytest.mark.parametrize("n, fault, side, home, expected", [
    (3, "partition_majority", ("node1",), "node1", ("fallover", "node2")),
    (5, "partition_majority", ("node1", "node2"), "node1", ("fallover", "node3")),
    (5, "partition_majority", ("node1", "node2"), "node4", ("stay", None)),
    (3, "partition_oneway", ("node1",), "node1", ("fallover", "node2")),
    (3, "partition_oneway", ("node3",), "node1", ("stay", None)),
    (3, "partition_bridge", ("node2",), "node1", ("planned", None)),   # {1,2} or {2,3}: corosync's choice
    (5, "partition_bridge", ("node3",), "node1", ("planned", None)),
    (4, "partition", ("node1", "node2"), "node1", ("outage", None)),   # 2 | 2: neither side has quorum
])
def test_quorum_derived_outcomes(n: int, fault: str, side: tuple[str, ...], home: str,
                                 expected: tuple[str, str | None]) -> None:
    assert outcome(topology(n), fault, side, home) == expected


def test_a_bridge_of_four_leaves_the_single_half_without_quorum() -> None:
    # halves (node1,) and (node2, node4) with node3 between: only node2+node3+node4 is a majority
    e = expect(topology(4), Case("partition_bridge", Target(nodes=("node3",))), {"app": "node1"})[0]
    assert (e.outcome, e.takeover) == ("fallover", "node2"), e
    assert "only node2+node3+node4 with the bridge node3 has a majority" in e.why


def test_planned_targets_of_the_shapes() -> None:
    ids = [c.id for c in plan(topology(5), ["partition_majority", "partition_bridge", "partition_oneway"],
                              capabilities=CAPS)]
    assert ids[:2] == ["partition_majority-node1+node2", "partition_oneway-node1"]
    assert "partition_bridge-node3" in ids
    assert plan(topology(2), ["partition_majority", "partition_bridge"], capabilities=CAPS) == []


def test_random_mode_plans_every_two_way_split() -> None:
    daily = [c.target.nodes for c in plan(topology(5), ["partition"], capabilities=CAPS)]
    every = [c.target.nodes for c in plan(topology(5), ["partition"], capabilities=CAPS, every_split=True)]
    assert len(daily) == 5 and len(every) == 15 and set(daily) < set(every)
    assert ("node2", "node4") in every


def test_shape_targets_are_validated_in_one_line() -> None:
    with pytest.raises(UsageError, match="not a minority"):
        FAULTS["partition_majority"].validate(TOPO, Target(nodes=("node1", "node2")))
    assert FAULTS["partition_majority"].validate(TOPO, Target()).nodes == ("node1",)
    with pytest.raises(UsageError, match="one --node"):
        FAULTS["partition_bridge"].validate(TOPO, Target(nodes=("node1", "node2")))
    with pytest.raises(UsageError, match="one --node"):
        FAULTS["partition_oneway"].validate(TOPO, Target(nodes=("node1", "node2")))


def test_the_shapes_where_the_group_may_stay_are_held_as_long_as_a_takeover_takes() -> None:
    """A cluster that ignores quorum needs a takeover's time to start the group on the wrong side too."""
    from harness.faults.partitions import HOLD_FOR_TAKEOVER

    assert FAULTS["partition_bridge"].expectation.get(HOLD_FOR_TAKEOVER) is True
    assert FAULTS["partition_oneway"].expectation.get(HOLD_FOR_TAKEOVER) is True
    assert not FAULTS["partition"].expectation.get(HOLD_FOR_TAKEOVER)  # the daily suite keeps its pace
