"""ARP watch on the client's service network: who answers for the service IP, and every gratuitous ARP."""

# A raw AF_PACKET socket bound to ETH_P_ARP on the client's interface: the kernel hands
# us ARP frames only, so the process sleeps between them, starts in ~50 ms and needs no
# scapy (its import alone takes ~1 s and ~40 MB). Every `interval` s it also asks "who has
# <VIP>?", so the owner answers regularly and two owners at once (split brain) show up
# as replies from two MACs. A frozen node still answers ARP (the kernel does): an ARP
# reply proves L2 ownership of the address, not a live service.

from __future__ import annotations

import argparse
import fcntl
import ipaddress
import json
import select
import shlex
import signal
import socket
import struct
import sys
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from harness.errors import FalloverError
from harness.load import ClientProcess, gate_of, wait_for_gate
from harness.timeline import ARP_GRATUITOUS, ARP_REPLY, Event

if TYPE_CHECKING:
    from harness.testbed.base import Testbed

ETH_P_ARP = 0x0806
PACKET_OUTGOING = 4
SIOCGIFADDR = 0x8915
BROADCAST = b"\xff" * 6
STARTED = "arpwatch.started"  # first line of every output: ready marker, and the client's own MAC/IP
ARP_HEAD = struct.Struct("!HHBBH6s4s6s4s")  # htype ptype hlen plen oper sha spa tha tpa


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


def classify(frame: bytes, watched: set[bytes]) -> tuple[str, str, str] | None:
    """(kind, ip, mac) for an ARP frame about a watched IP, else None.

    Gratuitous: sender IP == target IP (IPaddr2's announcements, request or reply form).
    Reply: an ordinary ARP reply whose sender is a watched IP.

    >>> vip = socket.inet_aton("10.77.1.100")
    >>> classify(bytes(12) + b"\\x08\\x06" + ARP_HEAD.pack(1, 0x800, 6, 4, 1, b"\\x02" * 6, vip, bytes(6), vip), {vip})
    ('arp.gratuitous', '10.77.1.100', '02:02:02:02:02:02')
    """
    if len(frame) < 14 + ARP_HEAD.size or frame[12:14] != b"\x08\x06":
        return None
    htype, ptype, hlen, plen, oper, sha, spa, _tha, tpa = ARP_HEAD.unpack_from(frame, 14)
    if htype != 1 or ptype != 0x0800 or hlen != 6 or plen != 4 or spa not in watched:
        return None
    if spa == tpa:
        return ARP_GRATUITOUS, socket.inet_ntoa(spa), mac_str(sha)
    if oper == 2:
        return ARP_REPLY, socket.inet_ntoa(spa), mac_str(sha)
    return None


def _ipv4_of(iface: str) -> bytes:
    """The interface's IPv4 address (0.0.0.0 if none: the request is then an RFC 5227 probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            res = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", iface.encode()[:15]))
        except OSError:
            return bytes(4)
    return res[20:24]


def watch(iface: str, ips: list[str], out: Path, interval: float, stop: list[bool]) -> None:
    """Log ARP frames about `ips` seen on `iface` until stop[0]; ask for each IP every `interval` s (0: never)."""
    watched = {socket.inet_aton(ip) for ip in ips}
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ARP))
    sock.bind((iface, ETH_P_ARP))
    own_mac = sock.getsockname()[4]
    own_ip = _ipv4_of(iface)
    requests = [BROADCAST + own_mac + b"\x08\x06" + ARP_HEAD.pack(1, 0x800, 6, 4, 1, own_mac, own_ip, bytes(6), ip)
                for ip in watched]
    with open(out, "a", buffering=1, encoding="utf-8") as f:  # one write per frame: a kill loses nothing
        f.write(json.dumps({"mono": time.monotonic(), "wall": time.time(), "kind": STARTED,
                            "ip": socket.inet_ntoa(own_ip), "mac": mac_str(own_mac), "iface": iface}) + "\n")
        next_ask = time.monotonic()
        while not stop[0]:
            now = time.monotonic()
            if interval > 0 and now >= next_ask:
                for frame in requests:
                    sock.send(frame)
                next_ask = max(next_ask + interval, now)
            wait = next_ask - now if interval > 0 else 1.0
            try:
                readable, _, _ = select.select([sock], [], [], max(0.0, wait))
            except InterruptedError:
                continue
            if not readable:
                continue
            frame, addr = sock.recvfrom(2048)
            mono, wall = time.monotonic(), time.time()
            if addr[2] == PACKET_OUTGOING:
                continue  # our own requests
            hit = classify(frame, watched)
            if hit:
                kind, ip, mac = hit
                f.write(json.dumps({"mono": mono, "wall": wall, "kind": kind, "ip": ip, "mac": mac}) + "\n")
    sock.close()


class ArpWatch(ClientProcess):
    """The ARP watch process in the client namespace; stopped by PID on every exit path.

    Usage::

        with ArpWatch(tb, iface="service", ips=["10.77.1.100"], out=run_dir / "arp.jsonl") as arp:
            move_group()
        [e for e in arp.events() if e.kind == ARP_GRATUITOUS]
    """

    def __init__(self, testbed: Testbed, *, iface: str, ips: list[str], out: Path, interval: float = 0.2,
                 gated: bool = False) -> None:
        argv = [sys.executable, "-m", "harness.arpwatch", "--iface", iface, "--out", str(out),
                "--interval", str(interval)]
        for ip in ips:
            argv += ["--ip", ip]
        gate = gate_of(out) if gated else None
        if gate is not None:  # spawned before the reset: it opens its socket (and hears a frame) only then
            argv += ["--gate", str(gate)]
        super().__init__(testbed, argv, out=out, what="ARP watch", ready_timeout=15.0, gate=gate)
        self.iface, self.ips = iface, list(ips)

    def events(self, macs: dict[str, str] | None = None) -> list[Event]:
        return events(self.out, macs)


def events(path: Path, macs: dict[str, str] | None = None) -> list[Event]:
    """ARP_GRATUITOUS / ARP_REPLY events, sorted; `macs` (mac -> node name) fills Event.node."""
    out = []
    for line in path.read_text().splitlines():
        try:
            rec = json.loads(line)
            if rec["kind"] not in (ARP_GRATUITOUS, ARP_REPLY):
                continue
            mac = rec["mac"]
            out.append(Event(rec["mono"], rec["wall"], rec["kind"], (macs or {}).get(mac),
                             {"ip": rec["ip"], "mac": mac}))
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line from a killed watcher
    return sorted(out, key=lambda e: e.mono)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.arpwatch", description=__doc__)
    p.add_argument("--iface", required=True, help="the client's interface on the service network")
    p.add_argument("--ip", action="append", required=True, help="a service IP to watch (repeatable)")
    p.add_argument("--out", type=Path, required=True, help="JSONL output")
    p.add_argument("--interval", type=float, default=0.2, help="seconds between our ARP requests (0: passive)")
    p.add_argument("--gate", default=None, help="open the socket (hear and log nothing) until this file exists")
    args = p.parse_args(argv)
    try:
        for ip in args.ip:
            ipaddress.IPv4Address(ip)
    except ValueError as e:
        print(f"harness.arpwatch: --ip: {e}", file=sys.stderr)
        return 2
    stop = [False]

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop[0] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    wait_for_gate(args.gate, lambda: stop[0])  # before the socket: a frame heard before would be stamped late
    if stop[0]:
        return 0
    try:
        watch(args.iface, args.ip, args.out, args.interval, stop)
    except OSError as e:
        print(f"harness.arpwatch: {args.iface}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


def node_macs(testbed: Testbed, network: str) -> dict[str, str]:
    """MAC → node of every running node's adapter on ``network`` (a restarted node has a new MAC).

    The adapter is the interface named after the network (the embedded testbed) or else the one that
    holds the node's address on it (VMs and SSH nodes name theirs eth1, ens4, ...): without the map
    the evidence cannot tell a node's ARP answer from another MAC's."""
    q = shlex.quote(network)
    out = {}
    for n in testbed.topology.node_names:
        if testbed.running(n):
            addr = testbed.topology.address(n, network)
            script = (f"cat /sys/class/net/{q}/address 2>/dev/null && exit\n"
                      f"d=$(ip -o -4 addr show to {addr}/32 | {{ read -r _ d _; echo \"$d\"; }})\n"
                      '[ -n "$d" ] && cat "/sys/class/net/$d/address"')
            try:
                r = testbed.node(n).run(["sh", "-c", script], timeout=5, check=False)
            except FalloverError:
                continue
            if r.ok and r.stdout.strip():
                out[r.stdout.strip().lower()] = n
    return out
