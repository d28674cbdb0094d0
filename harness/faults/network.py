"""Network faults: cables, whole networks, partitions, and lossy links, applied where the testbed can
(on the embedded testbed at its "switch", on real hosts on their own interfaces and firewalls)."""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.errors import FalloverError
from harness.faults.base import Fault, Target, look_until, mark
from harness.testbed.base import HEARTBEAT_PORTS, Impairment, Rule, Testbed
from harness.topology import Topology


class AdapterDown(Fault):
    name: ClassVar[str] = "adapter_down"
    family: ClassVar[str] = "network"
    event: ClassVar[str] = "swap_adapter/fail_label"
    target_kind: ClassVar[str] = "adapter"
    summary: ClassVar[str] = "one NIC's cable pulled"
    mechanism: ClassVar[str] = "bridge-side veth of the adapter set down (the node sees NO-CARRIER)"
    needs: ClassVar[tuple[str, ...]] = ("adapter",)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        node, net = target.need("node"), target.need("network")
        self.require_running(testbed, target, node, "its cable cannot be pulled")
        if testbed.carrier(node, net) is False:
            raise self.refused(target, f"{node} already has no carrier on {net}: pulling the cable changes nothing")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, net = target.need("node"), target.need("network")
        if not testbed.set_adapter(node, net, False):
            raise self.not_in_effect(target, f"{node} has no adapter on {net} ({node} was powered off meanwhile)")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node itself sees NO-CARRIER on the adapter (IFLA_CARRIER = 0 in its netns)."""
        node, net = target.need("node"), target.need("network")
        seen = look_until(lambda: testbed.carrier(node, net), lambda c: c is False)
        if seen is None:
            raise self.not_in_effect(target, f"{node} was powered off meanwhile: no adapter to look at")
        if seen:
            raise self.not_in_effect(target, f"{node} still sees a carrier on {net}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Plug the cable back; a port that is gone went with a powered-off node: nothing to heal."""
        node, net = target.need("node"), target.need("network")
        if not testbed.set_adapter(node, net, True):
            return
        seen = look_until(lambda: testbed.carrier(node, net), lambda c: c is not False)
        if seen is False:
            raise FalloverError(f"{node} still has no carrier on {net} after its cable was plugged back")


class NetworkDownLocal(AdapterDown):
    name: ClassVar[str] = "network_down_local"
    event: ClassVar[str] = "network_down_local"
    summary: ClassVar[str] = "a node loses one whole network (every adapter it has on it)"
    mechanism: ClassVar[str] = ("every bridge-side veth of the node on that network set down "
                                "(one per network on the embedded testbed)")


class NetworkDownGlobal(Fault):
    name: ClassVar[str] = "network_down_global"
    family: ClassVar[str] = "network"
    event: ClassVar[str] = "network_down_global"
    target_kind: ClassVar[str] = "network"
    summary: ClassVar[str] = "a network fails for every node (and the client, if it is on it)"
    mechanism: ClassVar[str] = "the network's bridge set down: it stops forwarding on every port"
    needs: ClassVar[tuple[str, ...]] = ("network",)

    def needs_for(self, target: Target, topology: Topology) -> tuple[str, ...]:
        """A group's own network failing everywhere: only membership and quorum keep every node from taking it."""
        carries = any(g.network == target.network for g in topology.groups)
        return (*self.needs, "quorum") if carries else self.needs

    def precheck(self, testbed: Testbed, target: Target) -> None:
        net = target.need("network")
        up = testbed.network_up(net)
        if up is None:
            raise self.refused(target, f"the testbed has no {net} network (is it up?)")
        if not up:
            raise self.refused(target, f"the {net} network is down already: failing it changes nothing")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        if not testbed.set_network(target.need("network"), False):
            raise self.not_in_effect(target, f"the testbed has no {target.network} network")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The network is down (on the embedded testbed: its bridge forwards nothing on any port)."""
        if testbed.network_up(target.need("network")) is not False:
            raise self.not_in_effect(target, f"the {target.network} network is still up (or gone)")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Bring the network up again; no network means no testbed: nothing to heal.

        A bridge reports itself up only once the kernel's link watch has run (up to a second after
        it was set up, with its ports forwarding already): look again until it does, as for a cable.
        """
        net = target.need("network")
        if testbed.set_network(net, True) and look_until(lambda: testbed.network_up(net),
                                                         lambda up: up is not False) is False:
            raise FalloverError(f"the {net} network stays down after it was set up")


class _Dropping(Fault):
    """Faults that are a `Rule` (traffic dropped), installed under the journal entry's id."""

    family: ClassVar[str] = "network"
    needs: ClassVar[tuple[str, ...]] = ("rules",)

    def rule(self, target: Target) -> Rule:
        raise NotImplementedError

    def precheck(self, testbed: Testbed, target: Target) -> None:
        """A rule about a powered-off node's traffic matches nothing: refuse it."""
        for node in [target.node] if target.node else []:
            self.require_running(testbed, target, node, "it has no traffic to drop")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        self.drop(testbed, undo, self.rule(target))

    @staticmethod
    def drop(testbed: Testbed, undo: dict[str, Any], rule: Rule) -> None:
        """Install the rule, and count the case from the moment it was whole: over SSH that is seconds after
        the inject began (the first `nft` on a loaded guest), and those seconds are not the cluster's."""
        undo["rules"] = testbed.add_rule(undo["id"], rule)
        since = testbed.rule_in_effect_since(undo["id"])
        mark(undo, "rules in effect", ago=0.0 if since is None else time.monotonic() - since, fault_start=True)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Every rule of it is in place, as the kernel lists them."""
        found = testbed.rule_count(undo["id"])
        if found is None:
            raise self.not_in_effect(target, f"rule {undo['id']} is not installed")
        if found != undo["rules"]:
            raise self.not_in_effect(target, f"rule {undo['id']} holds {found} rules, not {undo['rules']}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.remove_rule(undo["id"])  # idempotent; raises if it stays


def both_sides_running(fault: Fault, testbed: Testbed, target: Target) -> None:
    """A cut needs a running node on both sides (``target.nodes`` and the rest), or nothing is cut off."""
    rest = [n for n in testbed.topology.node_names if n not in target.nodes]
    for side, name in ((list(target.nodes), "the cut-off side"), (rest, "the other side")):
        if not any(testbed.running(n) for n in side):
            raise fault.refused(target, f"every node of {name} ({', '.join(side)}) is powered off")


class Partition(_Dropping):
    name: ClassVar[str] = "partition"
    event: ClassVar[str] = "network_partition (split brain)"
    target_kind: ClassVar[str] = "partition"
    summary: ClassVar[str] = "the cluster splits in two; --node names the side that is cut off"
    mechanism: ClassVar[str] = "nft bridge-family drops between the two sides' ports on every network"
    needs: ClassVar[tuple[str, ...]] = ("rules", "quorum")

    def precheck(self, testbed: Testbed, target: Target) -> None:
        both_sides_running(self, testbed, target)

    def rule(self, target: Target) -> Rule:
        return Rule("partition", nodes=target.nodes)


class PacketLoss(_Dropping):
    name: ClassVar[str] = "packet_loss"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "adapter"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "a fraction (--rate) of the adapter's packets, both directions, is lost"
    mechanism: ClassVar[str] = "nft bridge-family `numgen random mod 10000 < rate*10000 drop` on the port"
    defaults: ClassVar[dict[str, float]] = {"rate": 0.1}

    def rule(self, target: Target) -> Rule:
        return Rule("loss", node=target.need("node"), network=target.need("network"), rate=target.rate)


class HeartbeatLoss(_Dropping):
    name: ClassVar[str] = "heartbeat_loss"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "node"
    summary: ClassVar[str] = "the node's heartbeat (corosync) traffic is lost on every network; client traffic flows"
    needs: ClassVar[tuple[str, ...]] = ("rules", "pacemaker")  # the heartbeat it drops is corosync's
    mechanism: ClassVar[str] = f"nft bridge-family drop of UDP {HEARTBEAT_PORTS} to and from the node's ports"

    def rule(self, target: Target) -> Rule:
        return Rule("heartbeat", node=target.need("node"))


class _Impaired(Fault):
    """Per-packet faults: each packet of one adapter delayed or corrupted (`Testbed.impair`)."""

    family: ClassVar[str] = "network"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "adapter"
    destructive: ClassVar[bool] = False
    needs: ClassVar[tuple[str, ...]] = ("impair",)

    def impairment(self, target: Target) -> Impairment:
        raise NotImplementedError

    def precheck(self, testbed: Testbed, target: Target) -> None:
        self.require_running(testbed, target, target.need("node"), "it has no traffic to impair")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        undo.update(testbed.impair(undo["id"], self.impairment(target)))

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        missing = testbed.impairment_missing(undo)
        if missing:
            raise self.not_in_effect(target, missing)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.unimpair(undo)  # idempotent, works from the entry id alone; raises if something stays


class PacketDelay(_Impaired):
    name: ClassVar[str] = "packet_delay"
    summary: ClassVar[str] = "every packet of the adapter, both directions, held --delay ms (± --jitter)"
    mechanism: ClassVar[str] = "nft mark in the switch + NFQUEUE worker (netfilterqueue) holding each packet"
    defaults: ClassVar[dict[str, float]] = {"delay_ms": 200.0, "jitter_ms": 0.0}

    def impairment(self, target: Target) -> Impairment:
        return Impairment("delay", target.need("node"), target.need("network"), delay_ms=target.delay_ms,
                          jitter_ms=target.jitter_ms, rate=target.rate)


class PacketCorrupt(_Impaired):
    name: ClassVar[str] = "packet_corrupt"
    summary: ClassVar[str] = "a fraction (--rate) of the adapter's packets gets one payload bit flipped"
    mechanism: ClassVar[str] = ("nft mark in the switch + NFQUEUE worker flipping a bit; checksums left stale "
                                "(as netem does), so receivers drop them")
    defaults: ClassVar[dict[str, float]] = {"rate": 0.1}

    def impairment(self, target: Target) -> Impairment:
        return Impairment("corrupt", target.need("node"), target.need("network"), rate=target.rate)
