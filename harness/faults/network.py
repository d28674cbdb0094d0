"""Network faults: cables, whole networks, partitions, and lossy links, all applied at the "switch"."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.faults.base import Fault, Target
from harness.testbed import wire
from harness.testbed.base import Testbed

COROSYNC_PORTS = "5405-5412"  # knet: 5405 for link 0, one port more per further link


def _layout(testbed: Testbed):  # type: ignore[no-untyped-def]
    return testbed.layout  # type: ignore[attr-defined]


def _table(undo: dict[str, Any]) -> str:
    return f"fallover_{undo['id']}"


class AdapterDown(Fault):
    name: ClassVar[str] = "adapter_down"
    family: ClassVar[str] = "network"
    event: ClassVar[str] = "swap_adapter/fail_label"
    target_kind: ClassVar[str] = "adapter"
    summary: ClassVar[str] = "one NIC's cable pulled"
    mechanism: ClassVar[str] = "bridge-side veth of the adapter set down (the node sees NO-CARRIER)"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_adapter(target.node, target.network, False)  # type: ignore[attr-defined]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_adapter(target.node, target.network, True)  # type: ignore[attr-defined]


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

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_network(target.network, False)  # type: ignore[attr-defined]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.set_network(target.network, True)  # type: ignore[attr-defined]


class _SwitchFilter(Fault):
    """Faults that are nft rules in the bridge namespace, in a table named after the journal entry."""

    family: ClassVar[str] = "network"

    def rules(self, testbed: Testbed, target: Target) -> list[str]:
        raise NotImplementedError

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        undo["table"] = _table(undo)
        wire.add_filter(_layout(testbed), undo["table"], self.rules(testbed, target))

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        wire.remove_filter(_layout(testbed), undo.get("table") or _table(undo))

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

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from harness.faults import nfqueue
        from harness.testbed import cgroup

        layout = _layout(testbed)
        queue = 1000 + int(undo["id"], 16) % 60000  # one queue per fault: marks of two faults must not mix
        undo.update(table=f"fallover_q{undo['id']}", queue=queue, cgroup=str(layout.daemon_cgroup(f"nfq-{undo['id']}")))
        port = layout.veth(target.node, target.network)
        group = cgroup.create(layout.daemon_cgroup(f"nfq-{undo['id']}"))
        proc = nfqueue.start_worker(layout.net_ns, queue, self.mode, preexec_fn=lambda: cgroup.join_self(group),
                                    **self.worker_params(target))
        undo["pid"] = proc.pid
        nfqueue.install(layout.net_ns, undo["table"], queue, [f'iifname "{port}"', f'oifname "{port}"'])

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from pathlib import Path

        from harness.faults import nfqueue
        from harness.testbed import cgroup

        layout = _layout(testbed)
        if undo.get("table"):
            nfqueue.remove(layout.net_ns, undo["table"])
        if undo.get("cgroup"):  # the worker, and only it, lives in this group
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
