"""Partition shapes beyond "one node against the rest": majority/minority, every two-way split, a one-way
cut, and a bridge (Jepsen's grudges, CTS SplitBrainTest), each with its quorum-derived outcome.

The shapes are pure functions of the node list, tested with literal data (as Jepsen's `bisect`,
`bridge` and `complete-grudge` are); only the faults below touch a testbed, through `Rule`. A
grudge is Jepsen's: receiver → the nodes whose packets it no longer gets.
"""

from __future__ import annotations

from collections.abc import Sequence
from itertools import combinations
from typing import Any, ClassVar

from harness.errors import UsageError
from harness.faults.base import Target
from harness.faults.network import Partition, _Dropping, both_sides_running
from harness.testbed.base import Rule, Testbed
from harness.topology import Topology

Grudge = tuple[tuple[str, tuple[str, ...]], ...]
HOLD_FOR_TAKEOVER = "hold_for_takeover"
"""Where the group may stay, the split is held as long as a takeover takes (max_fallover_s), not only the
detection SLA: a side that wrongly runs the group too (quorum ignored, no fencing) must have the time to
start it, or split_brain cannot see it (a 5 s bridge on such a cluster passed)."""


# -- shapes (pure) -------------------------------------------------------------------------------


def two_way_splits(nodes: Sequence[str]) -> list[tuple[str, ...]]:
    """Every split of ``nodes`` into two non-empty sides, once each, named by its smaller side.

    On a tie (an even split) the side holding the first node names it. Three nodes give
    (node1,), (node2,), (node3,): what the plan had; five give 5 singles and 10 pairs.
    """
    n, first = len(nodes), nodes[0] if nodes else None
    out = []
    for size in range(1, n // 2 + 1):
        for side in combinations(nodes, size):
            if size * 2 < n or first in side:
                out.append(side)
    return out


def minority(nodes: Sequence[str], first: str) -> tuple[str, ...]:
    """The minority side of a majority/minority split: ⌊(n-1)/2⌋ nodes (at least one), starting at ``first``.

    Starting at the node the group runs on makes the split matter: the group must leave the minority.
    """
    size = max(1, (len(nodes) - 1) // 2)
    i = list(nodes).index(first)
    ring = list(nodes[i:]) + list(nodes[:i])
    return tuple(sorted(ring[:size], key=list(nodes).index))


def one_way(node: str, nodes: Sequence[str]) -> Grudge:
    """``node`` still hears everyone, nobody hears ``node``: each other node holds a grudge against it."""
    return tuple((other, (node,)) for other in nodes if other != node)


def bridge_halves(nodes: Sequence[str], bridge: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The two halves a bridge node joins: the other nodes, bisected in order (Jepsen's `bridge`)."""
    others = [n for n in nodes if n != bridge]
    return tuple(others[:len(others) // 2]), tuple(others[len(others) // 2:])


def default_bridge(nodes: Sequence[str]) -> str:
    """Jepsen's bridge node: the first of the second half."""
    return nodes[len(nodes) // 2]


def bridge(nodes: Sequence[str], bridge_node: str) -> Grudge:
    """The halves do not hear each other; the bridge hears and is heard by both."""
    a, b = bridge_halves(nodes, bridge_node)
    return tuple((n, b) for n in a) + tuple((n, a) for n in b)


# -- quorum ----------------------------------------------------------------------------------------


def quorum_outcome(topology: Topology, cut: set[str], home: str) -> tuple[str, str, set[str]]:
    """(outcome, why, nodes that cannot take over) of a two-way split for a group running on ``home``.

    votequorum: a side holds quorum with more than half the votes (one per node); the side
    without it stops its resources and is fenced by the other.
    """
    everyone = set(topology.node_names)
    rest = everyone - cut
    n = len(everyone)
    quorate = cut if len(cut) * 2 > n else rest if len(rest) * 2 > n else set()
    if not quorate:
        return "outage", "neither side has quorum", set()
    if home in quorate:
        return "stay", f"{home} is on the side with quorum", set()
    return "fallover", f"{home} is cut off without quorum and fenced", everyone - quorate


# -- faults ----------------------------------------------------------------------------------------


class PartitionMajority(Partition):
    name: ClassVar[str] = "partition_majority"
    event: ClassVar[str] = "network_partition (majority/minority, Jepsen :majority)"
    summary: ClassVar[str] = ("the cluster splits into a majority and a minority of ⌊(n-1)/2⌋ nodes holding the "
                              "group's node")
    suite: ClassVar[str | None] = "cluster"

    def targets(self, topology: Topology) -> list[Target]:
        first = topology.groups[0].nodes[0] if topology.groups else topology.node_names[0]
        return [Target(nodes=minority(topology.node_names, first))] if len(topology.node_names) >= 3 else []

    def validate(self, topology: Topology, target: Target) -> Target:
        """With no --node, the minority holding the first group's node (what the plan runs)."""
        if not target.nodes:
            found = self.targets(topology)
            if not found:
                raise UsageError(f"{self.name}: {len(topology.node_names)} nodes have no majority/minority split")
            target = found[0]
        if len(target.nodes) * 2 >= len(topology.node_names):
            raise UsageError(f"{self.name}: {'+'.join(target.nodes)} is not a minority of "
                             f"{len(topology.node_names)} nodes")
        return super().validate(topology, target)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        return quorum_outcome(topology, set(target.nodes), home)


class _Grudging(_Dropping):
    """Shapes installed as one grudge rule: the grudge depends on every node, so `rule(target)` alone cannot
    build it and `inject` asks the testbed's topology."""

    target_kind: ClassVar[str] = "partition"
    needs: ClassVar[tuple[str, ...]] = ("rules", "quorum")
    suite: ClassVar[str | None] = "cluster"
    expectation: ClassVar[dict[str, Any]] = {HOLD_FOR_TAKEOVER: True}

    def grudge(self, nodes: Sequence[str], target: Target) -> Grudge:
        raise NotImplementedError

    def rule(self, target: Target) -> Rule:
        raise NotImplementedError  # needs the topology: see inject

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        grudge = self.grudge(testbed.topology.node_names, target)
        self.drop(testbed, undo, Rule("grudge", grudge=grudge))


class PartitionOneWay(_Grudging):
    name: ClassVar[str] = "partition_oneway"
    event: ClassVar[str] = "network_partition (one-way, Jepsen net/drop!)"
    summary: ClassVar[str] = "nothing the node sends reaches the other nodes; it still hears them (--node)"
    mechanism: ClassVar[str] = "nft bridge-family drops from the node's ports to the other nodes' ports, one way"

    def targets(self, topology: Topology) -> list[Target]:
        return [Target(nodes=(n,)) for n in topology.node_names]

    def validate(self, topology: Topology, target: Target) -> Target:
        if len(target.nodes) > 1:
            raise UsageError(f"{self.name}: one --node, whose outgoing traffic is cut")
        return super().validate(topology, target)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        both_sides_running(self, testbed, target)

    def grudge(self, nodes: Sequence[str], target: Target) -> Grudge:
        return one_way(target.nodes[0], nodes)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        """Unheard is as good as gone: the others form a membership without the node (quorum as a partition)."""
        outcome, why, lost = quorum_outcome(topology, set(target.nodes), home)
        return outcome, f"{why}; nobody hears {target.nodes[0]}, though it hears them", lost


class PartitionBridge(_Grudging):
    name: ClassVar[str] = "partition_bridge"
    event: ClassVar[str] = "network_partition (bridge, Jepsen bridge)"
    summary: ClassVar[str] = "the other nodes split in two halves that do not see each other; --node sees both"
    mechanism: ClassVar[str] = "nft bridge-family drops between the two halves' ports; the bridge node's pass"

    def targets(self, topology: Topology) -> list[Target]:
        nodes = topology.node_names
        return [Target(nodes=(default_bridge(nodes),))] if len(nodes) >= 3 else []

    def validate(self, topology: Topology, target: Target) -> Target:
        if len(target.nodes) != 1:
            raise UsageError(f"{self.name}: one --node, the bridge that sees both halves")
        if len(topology.node_names) < 3:
            raise UsageError(f"{self.name}: a bridge needs at least 3 nodes")
        return super().validate(topology, target)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        a, b = bridge_halves(testbed.topology.node_names, target.nodes[0])
        for side, name in ((a, "the first half"), (b, "the second half")):
            if not any(testbed.running(n) for n in side):
                raise self.refused(target, f"every node of {name} ({', '.join(side)}) is powered off")

    def grudge(self, nodes: Sequence[str], target: Target) -> Grudge:
        return bridge(nodes, target.nodes[0])

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        """A membership needs every member to hear every other: one half with the bridge, at most.

        Where only one half plus the bridge makes a majority, that side holds quorum and the other
        half is cut off (as a partition). Where both could (an odd count), which one forms is up to
        corosync: the group may stay or move to the bridge's side, but it must have one owner.
        """
        bridge_node = target.nodes[0]
        a, b = bridge_halves(topology.node_names, bridge_node)
        n = len(topology.node_names)
        can = [set(side) | {bridge_node} for side in (a, b) if (len(side) + 1) * 2 > n]
        if len(can) == 1:
            outcome, why, lost = quorum_outcome(topology, set(topology.node_names) - can[0], home)
            return outcome, f"{why}; only {'+'.join(sorted(can[0]))} with the bridge {bridge_node} has a majority", \
                lost
        if not can:
            return "outage", f"no half with the bridge {bridge_node} has a majority", set()
        return "planned", (f"either half with the bridge {bridge_node} may keep quorum: staying or moving are both "
                           "acceptable, with one owner"), set()
