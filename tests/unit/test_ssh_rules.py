"""What the SSH provider runs on nodes for rules, cables and hangs: the exact text, never the SSH path."""

from __future__ import annotations

from pathlib import Path

from harness.testbed import sshnet
from harness.testbed.base import Rule
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
