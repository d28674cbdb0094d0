"""The embedded testbed's "switch": cables (bridge-side veths), whole networks, and filters.

Network faults act here, outside the nodes, like a hand on a cable or a rule on a switch:
the effect survives nothing the node does, and a fenced node (whose namespace vanished)
cannot leave a rule behind.
"""

from __future__ import annotations

import json
import os
import subprocess

from pyroute2 import NetNS

from harness.errors import TestbedError
from harness.testbed import network, nodes
from harness.testbed.base import HEARTBEAT_PORTS, Rule
from harness.testbed.layout import Layout


def _ns(layout: Layout) -> str:
    return f"/run/netns/{layout.net_ns}"


def set_adapter(layout: Layout, node: str, net: str, up: bool) -> bool:
    """Pull (or plug back) one node's cable on one network; False when the port no longer exists."""
    try:
        network.set_link(layout.net_ns, layout.veth(node, net), up)
        return True
    except LookupError:
        return False  # the node was powered off: its veth pair went with its namespace


def set_network(layout: Layout, net: str, up: bool) -> bool:
    """A whole network fails: its bridge stops forwarding for every port. False: no such bridge."""
    try:
        network.set_link(layout.net_ns, net, up)
        return True
    except LookupError:
        return False


def carrier(layout: Layout, node: str, net: str) -> bool | None:
    """Whether the node itself sees a carrier on its adapter (what a pulled cable takes away).

    Read inside the node's network namespace (IFLA_CARRIER, as /sys/class/net/<net>/carrier),
    not at the switch: it is what the node's cluster software will notice. None: node off.
    """
    pid = nodes.init_pid(layout, node)
    if pid is None:
        return None
    ns = NetNS(f"/proc/{pid}/ns/net")
    try:
        found = ns.link_lookup(ifname=net)
        return bool(found) and bool(ns.get_links(found[0])[0].get("carrier"))
    finally:
        ns.close()


def bridge_up(layout: Layout, net: str) -> bool | None:
    """Is the network's bridge up (forwarding)? None when it does not exist."""
    if not os.path.exists(_ns(layout)):
        return None  # checked first: pyroute2 would create a missing named netns
    state = network.links(layout.net_ns).get(net)
    return None if state is None else state != "down"


def nft(layout: Layout, script: str, *, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["nsenter", f"--net={_ns(layout)}", "--", "nft", "-f", "-"], input=script,
                       capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise TestbedError(f"nft in {layout.net_ns} failed: {r.stderr.strip()}")
    return r


def add_filter(layout: Layout, table: str, rules: list[str]) -> None:
    """A bridge-family table whose forward chain applies ``rules`` (nft rule bodies) between ports."""
    body = "\n".join(f"        {r}" for r in rules)
    nft(layout, f"table bridge {table} {{\n    chain forward {{\n"
                f"        type filter hook forward priority -10; policy accept;\n{body}\n    }}\n}}\n")


def remove_filter(layout: Layout, table: str) -> bool:
    """Delete a filter table; False when it was already gone (heal is idempotent)."""
    r = nft(layout, f"delete table bridge {table}\n", check=False)
    return r.returncode == 0


def filter_rules(layout: Layout, table: str, family: str = "bridge") -> list[str] | None:
    """The rules of one of our tables as the kernel holds them (JSON, one per rule); None when absent."""
    r = subprocess.run(["nsenter", f"--net={_ns(layout)}", "--", "nft", "-j", "list", "table", family, table],
                       capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        return None
    return [json.dumps(item["rule"]["expr"]) for item in json.loads(r.stdout)["nftables"] if "rule" in item]


def filters(layout: Layout) -> list[str]:
    """Names of our tables in the switch namespace (the leftover check looks here)."""
    r = subprocess.run(["nsenter", f"--net={_ns(layout)}", "--", "nft", "list", "tables"], capture_output=True,
                       text=True, timeout=30)
    return [ln.split()[-1] for ln in r.stdout.splitlines() if ln.startswith("table")]


def ports(layout: Layout, nodes: list[str], nets: list[str] | None = None) -> list[str]:
    """Bridge-side port names of some nodes' adapters (all networks unless given)."""
    nets = nets or [n.name for n in layout.topology.networks]
    return [layout.veth(n, net) for n in nodes for net in nets]


def nft_set(names: list[str]) -> str:
    return "{ " + ", ".join(f'"{n}"' for n in names) + " }"



def rule_table(rule_id: str) -> str:
    return f"fallover_{rule_id}"


def rule_lines(layout: Layout, rule: Rule) -> list[str]:
    """A `Rule` as nft bridge-family rule bodies between the switch's ports."""
    names = layout.topology.node_names
    if rule.kind == "partition":
        rest = [n for n in names if n not in rule.nodes]
        a, b = nft_set(ports(layout, list(rule.nodes))), nft_set(ports(layout, rest))
        return [f"iifname {a} oifname {b} drop", f"iifname {b} oifname {a} drop"]
    if rule.kind == "grudge":
        return [f"iifname {nft_set(ports(layout, list(senders)))} oifname {nft_set(ports(layout, [receiver]))} drop"
                for receiver, senders in rule.grudge if senders]
    nodes = [rule.node] if rule.node else names
    nets = [rule.network] if rule.network else None
    port_set = nft_set(ports(layout, [n for n in nodes if n], nets))
    if rule.kind == "loss":
        n = int(round((rule.rate or 0.0) * 10000))
        return [f"iifname {port_set} numgen random mod 10000 < {n} drop",
                f"oifname {port_set} numgen random mod 10000 < {n} drop"]
    return [f"{d}ifname {port_set} udp {p}port {HEARTBEAT_PORTS} drop" for d in ("i", "o") for p in ("d", "s")]
