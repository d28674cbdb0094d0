"""What the SSH provider runs on nodes for rules, cables and hangs: the exact text, never the SSH path."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.testbed import sshnet
from harness.testbed.base import Rule
from harness.testbed.sshnetwork import SshNetwork
from harness.topology import load_topology

LAB = load_topology(Path(__file__).resolve().parents[2] / "testbeds" / "local-ssh.yaml")


def test_partition_drops_the_other_sides_addresses_on_every_network() -> None:
    rule = Rule(kind="partition", nodes=("node1",))
    assert sshnet.rule_bodies(LAB, rule, "node1") == [
        ("input", "ip saddr { 10.78.1.12, 10.78.2.12, 10.78.1.13, 10.78.2.13 } drop"),
        ("output", "ip daddr { 10.78.1.12, 10.78.2.12, 10.78.1.13, 10.78.2.13 } drop")]
    assert sshnet.rule_bodies(LAB, rule, "node2") == [
        ("input", "ip saddr { 10.78.1.11, 10.78.2.11 } drop"), ("output", "ip daddr { 10.78.1.11, 10.78.2.11 } drop")]
    every = " ".join(b for n in LAB.node_names for _, b in sshnet.rule_bodies(LAB, rule, n))
    assert "10.78.9." not in every  # the management network (SSH) is never cut


def test_loss_and_heartbeat_name_interfaces_only_on_their_node() -> None:
    loss = Rule(kind="loss", node="node3", network="service", rate=0.25)
    assert sshnet.rule_bodies(LAB, loss, "node3") == [
        ("input", 'iifname "service" numgen random mod 10000 < 2500 drop'),
        ("output", 'oifname "service" numgen random mod 10000 < 2500 drop')]
    assert sshnet.rule_bodies(LAB, loss, "node1") == []
    hb = sshnet.rule_bodies(LAB, Rule(kind="heartbeat", node="node2"), "node2")
    assert ("input", 'iifname { "service", "standby" } udp dport 5405-5412 drop') in hb and len(hb) == 4


def test_nft_script_replaces_one_table_atomically() -> None:
    table = sshnet.table_name("partition-node1:7")
    assert table == "fallover_partition_node1_7"
    text = sshnet.nft_script(table, [("input", "ip saddr { 10.0.0.1 } drop")])
    assert text.splitlines()[:3] == [f"add table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    assert "type filter hook input priority -10; policy accept;" in text and "hook output" in text


def test_a_pulled_cable_arms_its_self_heal_before_it_goes_down() -> None:
    s = sshnet.link_down_script("eth1", "/run/p.pid", heal_after=300)
    assert s.index("setsid -f sh -c") < s.index("ip link set eth1 down")
    assert "sleep 300; ip link set eth1 up" in s
    assert "kill -TERM -$(cat /run/p.pid)" in sshnet.link_up_script("eth1", "/run/p.pid")


def test_freezer_state_from_process_states() -> None:
    assert sshnet.freezer_state(["T", "T"]) == "FROZEN"
    assert sshnet.freezer_state(["T", "S"]) == "FREEZING"
    assert sshnet.freezer_state(["S", "R"]) == "THAWED"
    assert "pgrep -f kvapp.py" in sshnet.stack_pids_script("kvapp.py", None)


class _Kernels:
    """Each node's nft tables (table → rule count) behind a stand-in transport; a node can be powered off."""

    def __init__(self) -> None:
        self.tables: dict[str, dict[str, int]] = {n: {} for n in LAB.node_names}
        self.on = set(LAB.node_names)

    def node(self, name: str):  # type: ignore[no-untyped-def]
        from types import SimpleNamespace

        from harness.result import Result

        def run(argv, timeout=0, check=True, input=None):  # type: ignore[no-untyped-def]
            if argv[:2] == ["nft", "-f"]:
                table = input.split("table inet ")[1].split()[0]
                self.tables[name][table] = input.count(" drop")
                return Result(name, tuple(argv), 0, "", "", 0.0)
            if argv[:3] == ["nft", "-j", "list"]:
                k = self.tables[name].get(argv[-1])
                if k is None:
                    return Result(name, tuple(argv), 1, "", "No such file or directory", 0.0)
                items = [{"metainfo": {}}] + [{"rule": {}}] * k
                return Result(name, tuple(argv), 0, json.dumps({"nftables": items}), "", 0.0)
            if argv[:3] == ["nft", "delete", "table"]:
                self.tables[name].pop(argv[-1], None)
                return Result(name, tuple(argv), 0, "", "", 0.0)
            raise AssertionError(argv)
        return SimpleNamespace(run=run)


def _network(kernels: _Kernels, node: Callable[[str], Any]) -> SshNetwork:
    """The SSH provider's rules over stand-in kernels; `node` gives a node's transport."""

    class Net(SshNetwork):
        topology = LAB

        def __init__(self) -> None:
            self._power, self._installed, self._in_effect = {}, {}, {}

        def node(self, name: str):  # type: ignore[no-untyped-def,override]
            return node(name)

        def running(self, name: str) -> bool:
            return name in kernels.on

    return Net()


def test_a_node_fenced_after_the_rule_went_in_still_counts_with_its_rules() -> None:
    kernels = _Kernels()

    net = _network(kernels, kernels.node)
    added = net.add_rule("r1", Rule(kind="partition", nodes=("node3",)))
    assert added == 6 and net.rule_count("r1") == 6  # an input and an output rule on each node
    kernels.on.discard("node3")  # fenced: its kernel (and its table) is gone
    kernels.tables["node3"].clear()
    assert net.rule_count("r1") == 6
    kernels.tables["node1"].clear()  # a running node that lost its table: not in effect any more
    assert net.rule_count("r1") == 4


def test_a_node_fenced_before_its_rules_could_be_listed_still_counts() -> None:
    """Under heavy load the listing after `nft -f` came after the fence: the exit 0 of the atomic
    `nft -f` is the proof that the node's kernel held them."""
    kernels = _Kernels()
    plain = kernels.node

    def fenced_after_nft(name: str):  # type: ignore[no-untyped-def]
        t = plain(name)
        run = t.run

        def run_then_fence(argv, **kw):  # type: ignore[no-untyped-def]
            r = run(argv, **kw)
            if name == "node3" and argv[:2] == ["nft", "-f"]:
                kernels.on.discard("node3")
                kernels.tables["node3"].clear()
            return r
        t.run = run_then_fence
        return t

    net = _network(kernels, fenced_after_nft)
    assert net.add_rule("r1", Rule(kind="heartbeat", node="node3")) == net.rule_count("r1")
    assert net.rule_count("r1") == len(sshnet.rule_bodies(LAB, Rule(kind="heartbeat", node="node3"), "node3"))


def test_a_rule_is_whole_when_either_side_of_a_partition_has_its_tables_else_when_every_node_has() -> None:
    cut = Rule(kind="partition", nodes=("node1",))
    # node1 (loaded) answered last: node2 and node3 had cut it off already, both ways
    assert sshnet.in_effect_since(cut, {"node1": 9.0, "node2": 5.0, "node3": 6.0}) == 6.0
    assert sshnet.in_effect_since(cut, {"node1": 4.0, "node2": 5.0, "node3": 6.0}) == 4.0
    assert sshnet.in_effect_since(cut, {"node2": 5.0, "node3": 6.0}) == 6.0  # node1 was off: nothing to install
    assert sshnet.in_effect_since(Rule(kind="heartbeat", node="node2"), {"node2": 3.0}) == 3.0
    assert sshnet.in_effect_since(Rule(kind="grudge", grudge=(("node1", ("node2",)), ("node3", ("node2",)))),
                                  {"node1": 3.0, "node3": 7.0}) == 7.0
    assert sshnet.in_effect_since(cut, {}) is None


def test_every_nodes_rules_go_in_at_once_and_the_rule_says_when_it_was_whole() -> None:
    """One after the other, a partition of a loaded TCG guest began 2.6 s after the inject: its first `nft`."""
    import threading
    import time

    kernels = _Kernels()
    together = threading.Barrier(3, timeout=30)  # broken (the test fails) unless all three run at once
    plain = kernels.node

    def waits_for_the_others(name: str):  # type: ignore[no-untyped-def]
        t = plain(name)
        run = t.run

        def run_together(argv, **kw):  # type: ignore[no-untyped-def]
            if argv[:2] == ["nft", "-f"]:
                together.wait()
            return run(argv, **kw)
        t.run = run_together
        return t

    net = _network(kernels, waits_for_the_others)
    t0 = time.monotonic()
    assert net.add_rule("r1", Rule(kind="partition", nodes=("node1",))) == 6
    since = net.rule_in_effect_since("r1")
    assert since is not None and t0 <= since <= time.monotonic()
    net.remove_rule("r1")
    assert net.rule_in_effect_since("r1") is None and not any(kernels.tables.values())
