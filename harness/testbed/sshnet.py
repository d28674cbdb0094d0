"""What the SSH provider runs on a node for network and hang faults: pure text, unit-tested.

Rules live in an nftables `inet` table per rule id on each node (deleting the table heals the
rule, and the id names it: `nft list tables` on a node shows what fallover left). They only
name the topology's networks (their interfaces or their addresses), never the management path
that SSH uses. Cables are pulled from inside the node with `ip link set DEV down`, with a
self-heal started beside it: a harness that loses its SSH session (or dies) cannot strand a node.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterable

from harness.testbed.base import HEARTBEAT_PORTS, Rule
from harness.topology import Topology

SELF_HEAL_S = 300
"""A pulled cable plugs itself back after this long, whatever happened to the harness."""



def table_name(rule_id: str) -> str:
    """nft accepts [A-Za-z0-9_] in table names; the id stays readable."""
    return "fallover_" + re.sub(r"\W", "_", rule_id)[:48]


def interface(topology: Topology, node: str, network: str) -> str:
    """The node's interface on a network: declared in the inventory, else the network's name."""
    inv = topology.ssh
    return (inv.hosts[node].interfaces.get(network, network) if inv else network)


def _set(items: Iterable[str], quote: bool = False) -> str:
    items = [f'"{i}"' if quote else i for i in items]
    return "{ " + ", ".join(items) + " }"


def rule_bodies(topology: Topology, rule: Rule, node: str) -> list[tuple[str, str]]:
    """(chain, rule body) pairs that implement ``rule`` on ``node``; empty: nothing to do there."""
    if rule.kind == "partition":
        side = set(rule.nodes)
        others = [n for n in topology.node_names if (n in side) != (node in side)]
        addrs = [str(topology.address(n, net.name)) for n in others for net in topology.networks]
        if not addrs:
            return []
        return [("input", f"ip saddr {_set(addrs)} drop"), ("output", f"ip daddr {_set(addrs)} drop")]
    if rule.kind == "grudge":  # the receiver drops what it must not hear: one node's rules suffice
        senders = dict(rule.grudge).get(node, ())
        addrs = [str(topology.address(n, net.name)) for n in senders for net in topology.networks]
        return [("input", f"ip saddr {_set(addrs)} drop")] if addrs else []
    if rule.kind == "loss":
        if node != rule.node or rule.network is None or rule.rate is None:
            return []
        dev = interface(topology, node, rule.network)
        n = max(0, min(10000, round(rule.rate * 10000)))
        return [("input", f'iifname "{dev}" numgen random mod 10000 < {n} drop'),
                ("output", f'oifname "{dev}" numgen random mod 10000 < {n} drop')]
    if rule.kind == "heartbeat":
        if node != rule.node:
            return []
        devs = _set((interface(topology, node, n.name) for n in topology.networks if n.heartbeat), quote=True)
        return [("input", f"iifname {devs} udp dport {HEARTBEAT_PORTS} drop"),
                ("input", f"iifname {devs} udp sport {HEARTBEAT_PORTS} drop"),
                ("output", f"oifname {devs} udp dport {HEARTBEAT_PORTS} drop"),
                ("output", f"oifname {devs} udp sport {HEARTBEAT_PORTS} drop")]
    raise ValueError(f"unknown rule kind {rule.kind!r}")


def in_effect_since(rule: Rule, done: dict[str, float]) -> float | None:
    """When a rule installed node by node was whole, from each node's `nft` return time: a partition once
    either side has its tables (each side drops both directions; the other side's tables keep the cut for
    a node that is fenced and boots without them), any other rule once every node that holds some does."""
    if not done:
        return None
    if rule.kind == "partition":
        sides = [[t for n, t in done.items() if (n in rule.nodes) == cut] for cut in (True, False)]
        return min(max(s) for s in sides if s)
    return max(done.values())


def nft_script(table: str, bodies: list[tuple[str, str]]) -> str:
    """One atomic `nft -f` script: the table is replaced whole (add + delete + define)."""
    lines = [f"add table inet {table}", f"delete table inet {table}", f"table inet {table} {{"]
    for chain in ("input", "output"):
        lines += [f"    chain {chain} {{", f"        type filter hook {chain} priority -10; policy accept;"]
        lines += [f"        {b}" for c, b in bodies if c == chain]
        lines.append("    }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def link_down_script(dev: str, pidfile: str, heal_after: int = SELF_HEAL_S) -> str:
    """Pull a cable from inside the node, and arm the self-heal first (its PID leads its group)."""
    q, p = shlex.quote(dev), shlex.quote(pidfile)
    return (f"test -e /sys/class/net/{q} || exit 3\n"
            f"{_disarm(p)}\n"
            f"setsid -f sh -c 'echo $$ > {p}; sleep {heal_after}; ip link set {q} up; rm -f {p}'"
            " >/dev/null 2>&1 </dev/null\n"
            f"for i in $(seq 50); do test -s {p} && break; sleep 0.02; done\n"
            f"ip link set {q} down\n")


def link_up_script(dev: str, pidfile: str) -> str:
    q, p = shlex.quote(dev), shlex.quote(pidfile)
    return f"test -e /sys/class/net/{q} || exit 3\n{_disarm(p)}\nip link set {q} up\n"


def _disarm(p: str) -> str:
    return f"if test -s {p}; then kill -TERM -$(cat {p}) 2>/dev/null; rm -f {p}; fi"  # dash: no `--`


def carrier_script(dev: str) -> str:
    """Prints the operstate (`up`, `down`, …) and the carrier bit as the node's kernel sees them."""
    q = shlex.quote(dev)
    return f"cat /sys/class/net/{q}/operstate; cat /sys/class/net/{q}/carrier 2>/dev/null || echo 0\n"


def stack_pids_script(app_pattern: str | None, app_pidfile: str | None) -> str:
    """PIDs of the cluster stack and the group's application on a node, one per line."""
    parts = ["pgrep -x corosync", "pgrep -x pacemakerd", "pgrep '^pacemaker-'"]
    if app_pattern:
        parts.append(f"pgrep -f {shlex.quote(app_pattern)}")
    if app_pidfile:
        parts.append(f"cat {shlex.quote(app_pidfile)} 2>/dev/null")
    return "{ " + "; ".join(parts) + "; } | sort -un\n"


def signal_script(app_pattern: str | None, app_pidfile: str | None, signal: str) -> str:
    """SIGSTOP (hang) or SIGCONT (thaw) every stack process; prints their State letters after."""
    return (f"pids=$({stack_pids_script(app_pattern, app_pidfile).strip()})\n"
            f"[ -n \"$pids\" ] && kill -{signal} $pids 2>/dev/null\n"
            + STATES)


STATES = ("for p in $pids; do sed -n 's/^State:[[:space:]]*\\(.\\).*/\\1/p' /proc/$p/status 2>/dev/null; done; true\n")


def freezer_state(letters: list[str]) -> str:
    """FROZEN when every stack process is stopped (T), FREEZING when some are, else THAWED."""
    if not letters:
        return "THAWED"
    stopped = sum(1 for s in letters if s in ("T", "t"))
    return "FROZEN" if stopped == len(letters) else ("FREEZING" if stopped else "THAWED")


PROBE = ("if command -v nft >/dev/null; then echo rules=nft; "
         "elif command -v iptables >/dev/null; then echo rules=iptables; else echo rules=none; fi\n"
         "if out=$(unshare -n tc qdisc add dev lo root netem delay 1ms 2>&1); then echo netem=yes; "
         "else echo \"netem=$(echo $out | head -c 200)\"; fi\n")
"""What a node can do, found without touching it (netem is tried in a throwaway network namespace)."""
