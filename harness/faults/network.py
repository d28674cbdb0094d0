"""Network faults: cables, whole networks, partitions, and lossy links, all applied at the "switch"."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import FalloverError
from harness.faults.base import Fault, Target, embedded, look_until
from harness.testbed import wire
from harness.testbed.base import Testbed
from harness.testbed.layout import Layout

COROSYNC_PORTS = "5405-5412"  # knet: 5405 for link 0, one port more per further link


def _layout(testbed: Testbed) -> Layout:
    return embedded(testbed).layout


def _table(undo: dict[str, Any]) -> str:
    return f"fallover_{undo['id']}"


class AdapterDown(Fault):
    name: ClassVar[str] = "adapter_down"
    family: ClassVar[str] = "network"
    event: ClassVar[str] = "swap_adapter/fail_label"
    target_kind: ClassVar[str] = "adapter"
    summary: ClassVar[str] = "one NIC's cable pulled"
    mechanism: ClassVar[str] = "bridge-side veth of the adapter set down (the node sees NO-CARRIER)"

    def precheck(self, testbed: Testbed, target: Target) -> None:
        node, net = target.need("node"), target.need("network")
        self.require_running(testbed, target, node, "its cable cannot be pulled")
        if wire.carrier(_layout(testbed), node, net) is False:
            raise self.refused(target, f"{node} already has no carrier on {net}: pulling the cable changes nothing")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, net = target.need("node"), target.need("network")
        if not embedded(testbed).set_adapter(node, net, False):
            raise self.not_in_effect(target, f"the switch has no port {_layout(testbed).veth(node, net)} "
                                             f"({node} was powered off meanwhile)")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node itself sees NO-CARRIER on the adapter (IFLA_CARRIER = 0 in its netns)."""
        node, net = target.need("node"), target.need("network")
        seen = look_until(lambda: wire.carrier(_layout(testbed), node, net), lambda c: c is False)
        if seen is None:
            raise self.not_in_effect(target, f"{node} was powered off meanwhile: no adapter to look at")
        if seen:
            raise self.not_in_effect(target, f"{node} still sees a carrier on {net}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Plug the cable back; a port that is gone went with a powered-off node: nothing to heal."""
        node, net = target.need("node"), target.need("network")
        if not embedded(testbed).set_adapter(node, net, True):
            return
        seen = look_until(lambda: wire.carrier(_layout(testbed), node, net), lambda c: c is not False)
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

    def precheck(self, testbed: Testbed, target: Target) -> None:
        net = target.need("network")
        up = wire.bridge_up(_layout(testbed), net)
        if up is None:
            raise self.refused(target, f"the switch has no {net} bridge (is the testbed up?)")
        if not up:
            raise self.refused(target, f"the {net} network is down already: failing it changes nothing")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        if not embedded(testbed).set_network(target.need("network"), False):
            raise self.not_in_effect(target, f"the switch has no {target.network} bridge")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The bridge is down in the switch namespace: it forwards nothing on any port."""
        if wire.bridge_up(_layout(testbed), target.need("network")) is not False:
            raise self.not_in_effect(target, f"the {target.network} bridge is still up (or gone)")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Bring the bridge up again; no bridge means no testbed: nothing to heal."""
        net = target.need("network")
        if embedded(testbed).set_network(net, True) and wire.bridge_up(_layout(testbed), net) is False:
            raise FalloverError(f"the {net} bridge stays down after it was set up")


class _SwitchFilter(Fault):
    """Faults that are nft rules in the bridge namespace, in a table named after the journal entry."""

    family: ClassVar[str] = "network"

    def rules(self, testbed: Testbed, target: Target) -> list[str]:
        raise NotImplementedError

    def precheck(self, testbed: Testbed, target: Target) -> None:
        """A rule about a powered-off node's ports matches nothing: refuse it."""
        for node in [target.node] if target.node else []:
            self.require_running(testbed, target, node, "the switch has no port of it to filter")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        rules = self.rules(testbed, target)
        undo.update(table=_table(undo), rules=len(rules))
        wire.add_filter(_layout(testbed), undo["table"], rules)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The table, with every rule, is in the switch namespace's ruleset (as the kernel lists it)."""
        found = wire.filter_rules(_layout(testbed), undo["table"])
        if found is None:
            raise self.not_in_effect(target, f"table bridge {undo['table']} is not in the switch's ruleset")
        if len(found) != undo["rules"]:
            raise self.not_in_effect(target, f"table bridge {undo['table']} holds {len(found)} rules, "
                                             f"not {undo['rules']}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        table = undo.get("table") or _table(undo)
        wire.remove_filter(_layout(testbed), table)  # False: gone already (idempotent)
        if wire.filter_rules(_layout(testbed), table) is not None:
            raise FalloverError(f"table bridge {table} is still in the switch's ruleset after its delete")

    @staticmethod
    def _ports(testbed: Testbed, target: Target) -> list[str]:
        """The ports the fault applies to: one adapter, one node's adapters, or a whole network."""
        layout = _layout(testbed)
        nodes = [target.node] if target.node else layout.topology.node_names
        nets = [target.network] if target.network else None
        return wire.ports(layout, nodes, nets)


class Partition(_SwitchFilter):
    name: ClassVar[str] = "partition"
    event: ClassVar[str] = "network_partition (split brain)"
    target_kind: ClassVar[str] = "partition"
    summary: ClassVar[str] = "the cluster splits in two; --node names the side that is cut off"
    mechanism: ClassVar[str] = "nft bridge-family drops between the two sides' ports on every network"

    def precheck(self, testbed: Testbed, target: Target) -> None:
        """Both sides need a running node, or nothing is cut off from anything."""
        rest = [n for n in testbed.topology.node_names if n not in target.nodes]
        for side, name in ((list(target.nodes), "the cut-off side"), (rest, "the other side")):
            if not any(testbed.running(n) for n in side):
                raise self.refused(target, f"every node of {name} ({', '.join(side)}) is powered off")

    def rules(self, testbed: Testbed, target: Target) -> list[str]:
        layout = _layout(testbed)
        side_a = wire.ports(layout, list(target.nodes))
        side_b = wire.ports(layout, [n for n in layout.topology.node_names if n not in target.nodes])
        a, b = wire.nft_set(side_a), wire.nft_set(side_b)
        return [f"iifname {a} oifname {b} drop", f"iifname {b} oifname {a} drop"]


class PacketLoss(_SwitchFilter):
    name: ClassVar[str] = "packet_loss"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "adapter"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "a fraction (--rate) of the adapter's packets, both directions, is lost"
    mechanism: ClassVar[str] = "nft bridge-family `numgen random mod 10000 < rate*10000 drop` on the port"
    defaults: ClassVar[dict[str, float]] = {"rate": 0.1}

    def rules(self, testbed: Testbed, target: Target) -> list[str]:
        ports = wire.nft_set(self._ports(testbed, target))
        n = int(round((target.rate or 0.0) * 10000))
        return [f"iifname {ports} numgen random mod 10000 < {n} drop",
                f"oifname {ports} numgen random mod 10000 < {n} drop"]


class HeartbeatLoss(_SwitchFilter):
    name: ClassVar[str] = "heartbeat_loss"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "node"
    summary: ClassVar[str] = "the node's heartbeat (corosync) traffic is lost on every network; client traffic flows"
    mechanism: ClassVar[str] = f"nft bridge-family drop of UDP {COROSYNC_PORTS} to and from the node's ports"

    def rules(self, testbed: Testbed, target: Target) -> list[str]:
        ports = wire.nft_set(self._ports(testbed, target))
        return [f"{d}ifname {ports} udp {p}port {COROSYNC_PORTS} drop" for d in ("i", "o") for p in ("d", "s")]


class _Queued(Fault):
    """Per-packet faults in user space: NFQUEUE in the switch namespace (no netem in this kernel).

    The worker runs in one of the testbed's cgroups, so `fallover down` finds it whatever happens.
    """

    family: ClassVar[str] = "network"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "adapter"
    destructive: ClassVar[bool] = False
    mode: ClassVar[str] = ""

    def worker_params(self, target: Target) -> dict[str, Any]:
        raise NotImplementedError

    def precheck(self, testbed: Testbed, target: Target) -> None:
        self.require_running(testbed, target, target.need("node"), "the switch has no port of it to queue")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from harness.faults import nfqueue
        from harness.testbed import cgroup

        layout = _layout(testbed)
        queue = 1000 + int(undo["id"], 16) % 60000  # one queue per fault: marks of two faults must not mix
        undo.update(table=f"fallover_q{undo['id']}", queue=queue, cgroup=str(layout.daemon_cgroup(f"nfq-{undo['id']}")))
        port = layout.veth(target.need("node"), target.need("network"))
        group = cgroup.create(layout.daemon_cgroup(f"nfq-{undo['id']}"))
        proc = nfqueue.start_worker(layout.net_ns, queue, self.mode, preexec_fn=lambda: cgroup.join_self(group),
                                    **self.worker_params(target))
        undo["pid"] = proc.pid
        nfqueue.install(layout.net_ns, undo["table"], queue, [f'iifname "{port}"', f'oifname "{port}"'])

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The worker holds the queue (alive, in its cgroup) and both tables, marks and target, are in place."""
        from pathlib import Path

        from harness.faults import nfqueue
        from harness.testbed import cgroup

        if not nfqueue.worker_alive(undo["pid"]) or undo["pid"] not in cgroup.procs(Path(undo["cgroup"])):
            raise self.not_in_effect(target, f"the NFQUEUE worker (pid {undo['pid']}) is not running")
        gone = nfqueue.missing(_layout(testbed).net_ns, undo["table"])
        if gone:
            raise self.not_in_effect(target, f"missing from the switch's ruleset: {', '.join(gone)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from pathlib import Path

        from harness.faults import nfqueue
        from harness.testbed import cgroup

        layout = _layout(testbed)
        if undo.get("table"):
            nfqueue.remove(layout.net_ns, undo["table"])  # False: gone already (idempotent)
            left = nfqueue.tables(layout.net_ns, undo["table"])
            if left:
                raise FalloverError(f"table {' and '.join(left)} {undo['table']} still in the switch's ruleset "
                                    f"after its delete")
        if undo.get("cgroup"):  # the worker, and only it, lives in this group; a survivor raises
            cgroup.remove_tree(Path(undo["cgroup"]))


class PacketDelay(_Queued):
    name: ClassVar[str] = "packet_delay"
    summary: ClassVar[str] = "every packet of the adapter, both directions, held --delay ms (± --jitter)"
    mechanism: ClassVar[str] = "nft mark in the switch + NFQUEUE worker (netfilterqueue) holding each packet"
    mode: ClassVar[str] = "delay"
    defaults: ClassVar[dict[str, float]] = {"delay_ms": 200.0, "jitter_ms": 0.0}

    def worker_params(self, target: Target) -> dict[str, Any]:
        return {"delay_ms": target.delay_ms, "jitter_ms": target.jitter_ms, "rate": target.rate}


class PacketCorrupt(_Queued):
    name: ClassVar[str] = "packet_corrupt"
    summary: ClassVar[str] = "a fraction (--rate) of the adapter's packets gets one payload bit flipped"
    mechanism: ClassVar[str] = ("nft mark in the switch + NFQUEUE worker flipping a bit; checksums left stale "
                                "(as netem does), so receivers drop them")
    mode: ClassVar[str] = "corrupt"
    defaults: ClassVar[dict[str, float]] = {"rate": 0.1}

    def worker_params(self, target: Target) -> dict[str, Any]:
        return {"rate": target.rate}
