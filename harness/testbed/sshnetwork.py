"""The SSH provider's network faults: cables, whole networks, nft rules and netem, run inside the nodes.

A mixin of `SshTestbed` (kept apart so each module stays readable); the scripts it runs are the
pure text of `sshnet`. A rule is one nftables table per rule id on every node it concerns; a
pulled cable heals itself on the node (`sshnet.SELF_HEAL_S`) whatever happens to the harness.
"""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from harness.errors import CommandFailed, TestbedError, TransportError
from harness.result import Result
from harness.testbed import sshnet
from harness.testbed.base import Impairment, Rule

if TYPE_CHECKING:
    from harness.topology import Topology
    from harness.transport.base import Transport


class SshNetwork:
    """Adapters, networks, rules and impairments of `SshTestbed`; uses its `node`, `running` and `_sh`."""

    topology: Topology
    _power: dict[str, tuple[float, bool]]
    _installed: dict[str, dict[str, int]]
    """rule id → node → the rules its kernel listed right after `add_rule` (this process's faults only)."""
    _in_effect: dict[str, float | None]
    """rule id → when its drops were all in place (`sshnet.in_effect_since`)."""

    if TYPE_CHECKING:
        def node(self, name: str) -> Transport: ...

        def running(self, node: str) -> bool: ...

        def _sh(self, node: str, script: str, *, timeout: float = 30, check: bool = True) -> str: ...

    # -- network --------------------------------------------------------------------------------

    def _pidfile(self, dev: str) -> str:
        return f"/run/fallover-selfheal-{dev}.pid"

    def carrier(self, node: str, network: str) -> bool | None:
        if not self.running(node):
            return None
        dev = sshnet.interface(self.topology, node, network)
        try:
            out = self._sh(node, sshnet.carrier_script(dev), timeout=10).split()
        except TransportError:
            return None  # no answer (rebooting after a fence): unknown, never a pulled cable
        except CommandFailed:
            return None if not self.running(node) else False
        return out[:1] == ["up"] or (out[:1] == ["unknown"] and out[1:2] == ["1"])

    def set_adapter(self, node: str, network: str, up: bool) -> bool:
        if not self.running(node):
            return False
        dev = sshnet.interface(self.topology, node, network)
        script = (sshnet.link_up_script if up else sshnet.link_down_script)(dev, self._pidfile(dev))
        r = self.node(node).run(["sh", "-s"], input=script, timeout=20, check=False)
        if r.exit_status == 3:
            return False
        if r.failed:
            raise CommandFailed(r)
        return True

    def network_up(self, network: str) -> bool | None:
        seen = [self.carrier(n, network) for n in self.topology.node_names if self.running(n)]
        seen = [c for c in seen if c is not None]
        return None if not seen else any(seen)

    def set_network(self, network: str, up: bool) -> bool:
        done = [self.set_adapter(n, network, up) for n in self.topology.node_names]
        return any(done)

    def add_rule(self, rule_id: str, rule: Rule) -> int:
        """Every node's table at once: one after the other, a partition of a loaded TCG guest took effect
        2.6 s after the inject began (its first `nft` over SSH), and a cut waits for its slowest side."""
        table = sshnet.table_name(rule_id)
        installed = self._installed.setdefault(rule_id, {})
        todo = {n: b for n in self.topology.node_names
                if (b := sshnet.rule_bodies(self.topology, rule, n)) and self.running(n)}
        done: dict[str, float] = {}

        def put(n: str) -> None:
            self.node(n).run(["nft", "-f", "-"], timeout=20, input=sshnet.nft_script(table, todo[n]))
            done[n] = time.monotonic()
            installed[n] = len(todo[n])  # `nft -f` is atomic: exit 0 means every rule is in that kernel

        with ThreadPoolExecutor(max_workers=max(1, len(todo))) as pool:
            for f in [pool.submit(put, n) for n in todo]:
                f.result()  # the first failure, once every node has answered (the heal removes what went in)
        self._in_effect[rule_id] = sshnet.in_effect_since(rule, done)
        return self.rule_count(rule_id) or 0

    def rule_in_effect_since(self, rule_id: str) -> float | None:
        return self._in_effect.get(rule_id)

    def _tables(self, table: str) -> dict[str, int]:
        found = {}
        for n in self.topology.node_names:
            if not self.running(n):
                continue
            r = self._on_live(n, ["nft", "-j", "list", "table", "inet", table])
            if r is None:
                continue
            if r.ok:
                found[n] = sum(1 for item in json.loads(r.stdout)["nftables"] if "rule" in item)
        return found

    def _on_live(self, node: str, argv: list[str]) -> Result | None:
        """A command on a node, or None when the node went down meanwhile (fenced: its rules went too)."""
        try:
            return self.node(node).run(argv, timeout=15, check=False)
        except TransportError:
            self._power.pop(node, None)
            if self.running(node):
                raise
            return None

    def rule_count(self, rule_id: str) -> int | None:
        """The rules in the nodes' kernels; a node powered off since they were installed (fenced for the
        partition, which is the cluster's answer to it) still counts with what it had: it sends nothing."""
        found = self._tables(sshnet.table_name(rule_id))
        for n, k in self._installed.get(rule_id, {}).items():
            if n not in found and not self.running(n):
                found[n] = k
        return sum(found.values()) if found else None

    def remove_rule(self, rule_id: str) -> None:
        table = sshnet.table_name(rule_id)
        for n in self._tables(table):
            self._on_live(n, ["nft", "delete", "table", "inet", table])
        left = self._tables(table)
        self._installed.pop(rule_id, None)
        self._in_effect.pop(rule_id, None)
        if left:
            raise TestbedError(f"nft table {table} is still on {', '.join(left)} after delete")

    def impair(self, impairment_id: str, impairment: Impairment) -> dict[str, Any]:
        dev = sshnet.interface(self.topology, impairment.node, impairment.network)
        if impairment.mode == "delay":
            args = ["delay", f"{impairment.delay_ms or 0:g}ms"] + \
                ([f"{impairment.jitter_ms:g}ms"] if impairment.jitter_ms else [])
        else:
            args = ["corrupt", f"{(impairment.rate or 0) * 100:g}%"]
        undo = {"node": impairment.node, "dev": dev, "id": impairment_id}
        self.node(impairment.node).run(["tc", "qdisc", "replace", "dev", dev, "root", "netem", *args], timeout=15)
        return undo

    def impairment_missing(self, undo: dict[str, Any]) -> str | None:
        if not self.running(undo["node"]):
            return f"{undo['node']} is powered off"
        r = self.node(undo["node"]).run(["tc", "qdisc", "show", "dev", undo["dev"]], timeout=15, check=False)
        return None if "netem" in r.stdout else f"no netem qdisc on {undo['node']}'s {undo['dev']}"

    def unimpair(self, undo: dict[str, Any]) -> None:
        if not self.running(undo["node"]):
            return  # powered off: its qdisc went with it
        self.node(undo["node"]).run(["tc", "qdisc", "del", "dev", undo["dev"], "root"], timeout=15, check=False)
        missing = self.impairment_missing(undo)
        if missing is None:
            raise TestbedError(f"netem still on {undo['node']}'s {undo['dev']} after tc qdisc del")
