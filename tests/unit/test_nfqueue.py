"""The NFQUEUE delay/corrupt mechanism, end to end on the real kernel.

A throwaway "switch" of our own (names fo-nfqtest*): a bridge netns with a bridge and two
ports, and two host netns on it (10.99.7.1 and 10.99.7.2, private to these namespaces).
The rules go in the bridge netns, exactly as the testbed uses them. Every worker we start
is stopped by its PID and every namespace deleted, also when a test fails.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from harness.testbed import nfqueue

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or not all(shutil.which(t) for t in ("nft", "nsenter", "ping", "ip")),
                       reason="needs root, nft, nsenter, ping and ip"),
    pytest.mark.timeout(120),
]

# Per process: the suite may run twice at once (xdist, another engineer's run); the pid tells ours.
PREFIX = f"fo-nfqtest-{os.getpid()}"
A_IP, B_IP = "10.99.7.1", "10.99.7.2"


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=check)


@dataclass
class Net:
    br: str
    a: str
    b: str
    workers: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start(self, queue: int, mode: str, **params: object) -> int:
        self.workers.append(nfqueue.start_worker(self.br, queue, mode, **params))
        return self.workers[-1].pid

    def stop_all(self) -> None:
        while self.workers:
            proc = self.workers.pop()
            nfqueue.stop_worker(proc.pid)
            proc.wait(timeout=10)

    def rtts(self, count: int = 5, interval: float = 0.2) -> list[float]:
        """Per-packet RTTs (ms) of pings a -> b; lost packets are simply missing."""
        r = sh("nsenter", f"--net=/run/netns/{self.a}", "--", "ping", "-n", "-c", str(count), "-i", str(interval),
               "-W", "3", B_IP, check=False)
        return [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]

    def tables(self) -> list[str]:
        return sh("nsenter", f"--net=/run/netns/{self.br}", "--", "nft", "list", "tables").stdout.split("\n")[:-1]

    def udp_pair(self) -> tuple[socket.socket, socket.socket]:
        rx = nfqueue.in_netns(self.b, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        rx.bind((B_IP, 0))
        rx.settimeout(1.0)
        tx = nfqueue.in_netns(self.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
        tx.connect(rx.getsockname())
        return tx, rx


def _delete(names: list[str]) -> None:
    for n in names:
        sh("ip", "netns", "del", n, check=False)


def _orphans() -> list[str]:
    """fo-nfqtest-PID-* namespaces whose PID is gone: leftovers of a crashed run of these tests."""
    names = sh("ip", "netns", "list").stdout.split()
    return [n for n in names if re.fullmatch(r"fo-nfqtest-(\d+)-(br|a|b)", n)
            and not os.path.exists(f"/proc/{n.split('-')[2]}")]


@pytest.fixture(scope="module")
def topo() -> Iterator[Net]:
    net = Net(f"{PREFIX}-br", f"{PREFIX}-a", f"{PREFIX}-b")
    names = [net.br, net.a, net.b]
    _delete(_orphans())
    try:
        for n in names:
            sh("ip", "netns", "add", n)
            sh("ip", "-n", n, "link", "set", "lo", "up")
        sh("ip", "-n", net.br, "link", "add", "sw", "type", "bridge")
        sh("ip", "-n", net.br, "link", "set", "sw", "up")
        for host, ip in ((net.a, A_IP), (net.b, B_IP)):
            port = "v-" + host[-1]
            sh("ip", "link", "add", port, "netns", net.br, "type", "veth", "peer", "name", "eth0", "netns", host)
            sh("ip", "-n", net.br, "link", "set", port, "master", "sw", "up")
            sh("ip", "-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", host, "link", "set", "eth0", "up")
        assert len(net.rtts(3, 0.2)) == 3, "the throwaway topology does not forward"
        yield net
    finally:
        net.stop_all()
        _delete(names)
    assert not [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(PREFIX + "-")]


@pytest.fixture
def net(topo: Net) -> Iterator[Net]:
    """Per test: no worker and no table of ours outlives the test."""
    yield topo
    topo.stop_all()
    for t in ("fallover_q7", "fallover_q8", "fallover_q9"):
        nfqueue.remove(topo.br, t)


def test_delay_adds_latency_per_packet_and_heals(net: Net) -> None:
    base = statistics.median(net.rtts(5, 0.2))
    net.start(7, "delay", delay_ms=200)
    nfqueue.install(net.br, "fallover_q7", 7, ['iifname "v-a"'])  # one direction: RTT + D
    # 10 pings 50 ms apart: ~4 are held at once, each must get its own deadline (not serialized).
    rtts = net.rtts(10, 0.05)
    assert len(rtts) == 10
    added = statistics.median(rtts) - base
    assert 150 <= added <= 1000, rtts
    assert max(rtts) < 200 + 400, f"packets were serialized: {rtts}"
    queued = sh("nsenter", f"--net=/run/netns/{net.br}", "--", "nft", "list", "table", "inet", "fallover_q7").stdout
    assert "queue num 7 bypass" in queued
    assert nfqueue.stop_worker(net.workers[-1].pid) is True  # SIGTERM: clean exit
    assert nfqueue.remove(net.br, "fallover_q7") is True
    healed = net.rtts(5, 0.2)
    assert len(healed) == 5 and statistics.median(healed) < 50, healed
    assert net.tables() == []


def test_both_directions_add_twice(net: Net) -> None:
    base = statistics.median(net.rtts(3, 0.2))
    net.start(7, "delay", delay_ms=100, jitter_ms=10, seed=1)
    nfqueue.install(net.br, "fallover_q7", 7, ['iifname "v-a"', 'oifname "v-a"'])
    added = statistics.median(net.rtts(5, 0.1)) - base
    assert 170 <= added <= 1000


def test_corrupt_stale_checksum_is_dropped_by_receiver(net: Net) -> None:
    """Like netem: a bit flips after the checksum was computed, the receiving kernel drops it."""
    def csum_errors() -> int:
        text = nfqueue.in_netns(net.b, lambda: Path("/proc/thread-self/net/snmp").read_text())
        head, vals = [ln.split() for ln in text.splitlines() if ln.startswith("Udp:")][:2]
        return int(vals[head.index("InCsumErrors")])

    tx, rx = net.udp_pair()
    with tx, rx:
        net.start(8, "corrupt", rate=1.0, seed=3)
        nfqueue.install(net.br, "fallover_q8", 8, ['iifname "v-a" udp dport 1-65535'])
        before = csum_errors()
        for i in range(20):
            tx.send(b"fallover-%02d-" % i + bytes(range(64)))
        with pytest.raises(TimeoutError):
            rx.recv(2048)
        assert csum_errors() - before == 20


def test_corrupt_fix_checksum_delivers_modified_payloads(net: Net) -> None:
    tx, rx = net.udp_pair()
    with tx, rx:
        net.start(8, "corrupt", rate=1.0, seed=4, fix_checksum=True)
        nfqueue.install(net.br, "fallover_q8", 8, ['iifname "v-a" meta l4proto udp'])
        sent = [b"fallover-%02d-" % i + bytes(range(64)) for i in range(20)]
        for p in sent:
            tx.send(p)
        got = [rx.recv(2048) for _ in sent]
    for s, g in zip(sent, got):
        assert len(g) == len(s)
        flipped = sum(bin(x ^ y).count("1") for x, y in zip(s, g))
        assert flipped == 1, (s, g)


def test_worker_killed_traffic_still_flows(net: Net) -> None:
    pid = net.start(7, "delay", delay_ms=200)
    nfqueue.install(net.br, "fallover_q7", 7, ['iifname "v-a"', 'oifname "v-a"'])
    assert min(net.rtts(2, 0.2)) > 300
    os.kill(pid, signal.SIGKILL)
    time.sleep(0.3)
    rtts = net.rtts(5, 0.2)  # the rules are still there: `bypass` lets packets through
    assert len(rtts) == 5 and max(rtts) < 50, rtts
    assert nfqueue.stop_worker(pid) is False  # already gone (reaped here)
    assert nfqueue.remove(net.br, "fallover_q7") is True
    assert net.tables() == []


def test_remove_is_idempotent_and_install_replaces(net: Net) -> None:
    assert nfqueue.remove(net.br, "fallover_q7") is False
    nfqueue.install(net.br, "fallover_q7", 7, ['iifname "v-a"'])
    nfqueue.install(net.br, "fallover_q7", 7, ['oifname "v-a"'])  # same name: replaced, not doubled
    assert sorted(net.tables()) == ["table bridge fallover_q7", "table inet fallover_q7"]
    assert len(net.rtts(3, 0.1)) == 3  # no worker bound: bypass
    assert nfqueue.remove(net.br, "fallover_q7") is True
    assert nfqueue.remove(net.br, "fallover_q7") is False
    assert net.tables() == []


def test_worker_cli_silent_and_sigterm_releases_held_packets(net: Net) -> None:
    """Run by hand: nothing printed, exit 0 on SIGTERM, and what it held goes out at once."""
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{net.br}", "--", sys.executable, "-m",
                             "harness.testbed.nfqueue", "--queue", "9", "--mode", "delay", "--delay-ms", "3000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    net.workers.append(proc)
    deadline = time.monotonic() + 15
    queues = Path(f"/proc/{proc.pid}/net/netfilter/nfnetlink_queue")
    while not any(ln.split()[:1] == ["9"] for ln in queues.read_text().splitlines()):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    nfqueue.install(net.br, "fallover_q9", 9, ['iifname "v-a"'])
    ping = subprocess.Popen(["nsenter", f"--net=/run/netns/{net.a}", "--", "ping", "-n", "-c", "1", "-W", "10", B_IP],
                            stdout=subprocess.PIPE, text=True)
    time.sleep(0.5)  # the echo request is now held for 3 s
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=10)
    assert (proc.returncode, out, err) == (0, b"", b"")
    rtt = float(re.findall(r"time=([\d.]+) ms", ping.communicate(timeout=10)[0])[0])
    assert time.monotonic() - t0 < 1.5 and 400 < rtt < 2000, rtt  # released on SIGTERM, not after 3 s


def test_bad_worker_start_raises_and_leaves_nothing(net: Net) -> None:
    net.start(7, "delay")
    with pytest.raises(RuntimeError, match="(?s)queue 7, did not bind.*Failed to create queue 7"):
        nfqueue.start_worker(net.br, 7, "delay")  # queue 7 is taken in that netns


@pytest.mark.parametrize("ipv6", [False, True])
@pytest.mark.parametrize("proto", ["udp", "tcp"])
def test_fix_checksum_matches_scapy(ipv6: bool, proto: str) -> None:
    from scapy.layers.inet import IP, TCP, UDP
    from scapy.layers.inet6 import IPv6

    l3 = IPv6(src="fd00::1", dst="fd00::2") if ipv6 else IP(src=A_IP, dst=B_IP)
    l4 = UDP(sport=5405, dport=5405) if proto == "udp" else TCP(sport=1234, dport=8080, flags="PA")
    raw = bytearray(bytes(l3 / l4 / (b"x" * 37)))
    lay = nfqueue._layout(raw)
    assert lay is not None
    l4off, num, data = lay
    raw[data + 5] ^= 0x10
    nfqueue.fix_l4_checksum(raw, l4off, num)
    pkt = (IPv6 if ipv6 else IP)(bytes(raw))
    layer = pkt[UDP] if proto == "udp" else pkt[TCP]
    want = layer.chksum
    layer.chksum = None
    assert (IPv6 if ipv6 else IP)(bytes(pkt))[type(layer)].chksum == want
