"""Measure the NFQUEUE delay/corrupt mechanism (harness/faults/nfqueue.py) on this machine.

Why: packet_delay and packet_corrupt run through a Python worker instead of netem, so how
exact the added delay is, how many packets per second the worker can pass and what CPU it
costs are figures an acceptance run must know before trusting a delay scenario.

Figures:
  base_rtt_ms                 ping RTT a -> b through the throwaway bridge, no rules
  delayD_mean_ms / _sd_ms     added RTT (RTT - base) with --delay-ms D on one direction
  max_pps                     packets/s the worker gave verdicts for, delay mode with D=0,
                              under a UDP flood a -> b for --flood-s seconds
  flood_rx_pps / _noq_rx_pps  what the receiver got in that flood, with and without the queue
  queue_dropped               packets the kernel dropped because the queue was full
  cpu1k_delay_pct / _corrupt  worker CPU (% of one core) at ~1000 pkt/s, delay D=0 / corrupt
                              rate 1.0 with --fix-checksum

Own throwaway namespaces fo-nfqtest-bench<PID>-{br,a,b} with 10.99.7.1/.2 (private to them);
needs root. Cleans up after itself, also on Ctrl-C/SIGTERM. The last line printed is
machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import statistics
import subprocess
import sys
from pathlib import Path
from types import FrameType

from harness.testbed import nfqueue

PREFIX = f"fo-nfqtest-bench{os.getpid()}"
BR, A, B = f"{PREFIX}-br", f"{PREFIX}-a", f"{PREFIX}-b"
A_IP, B_IP, PORT = "10.99.7.1", "10.99.7.2", 9999
TABLE, QUEUE = "fallover_q5", 5

SENDER = """
import socket, sys, time
rate, dur = float(sys.argv[1]), float(sys.argv[2])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.connect(("%s", %d)); p = b"x" * 64; n = 0; t0 = time.monotonic(); end = t0 + dur
while (now := time.monotonic()) < end:
    try: s.send(p); n += 1
    except OSError: pass
    if rate > 0 and (wait := t0 + n / rate - now) > 0: time.sleep(wait)
print(n)
""" % (B_IP, PORT)
RECEIVER = """
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 24); s.bind(("%s", %d)); s.settimeout(0.2)
n, end = 0, time.monotonic() + float(sys.argv[1])
print("ready", flush=True)
while time.monotonic() < end:
    try: s.recv(2048); n += 1
    except socket.timeout: pass
print(n)
""" % (B_IP, PORT)


def sh(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=check)


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{ns}", "--", *cmd]


def setup() -> None:
    for n in (BR, A, B):
        sh("ip", "netns", "add", n)
        sh("ip", "-n", n, "link", "set", "lo", "up")
    sh("ip", "-n", BR, "link", "add", "sw", "type", "bridge")
    sh("ip", "-n", BR, "link", "set", "sw", "up")
    for host, ip in ((A, A_IP), (B, B_IP)):
        port = "v-" + host[-1]
        sh("ip", "link", "add", port, "netns", BR, "type", "veth", "peer", "name", "eth0", "netns", host)
        sh("ip", "-n", BR, "link", "set", port, "master", "sw", "up")
        sh("ip", "-n", host, "addr", "add", f"{ip}/24", "dev", "eth0")
        sh("ip", "-n", host, "link", "set", "eth0", "up")


def teardown(workers: list[int]) -> None:
    for pid in workers:
        nfqueue.stop_worker(pid)
    for n in (BR, A, B):
        sh("ip", "netns", "del", n, check=False)


def rtts(count: int, interval: float) -> list[float]:
    r = sh(*in_ns(A, "ping", "-n", "-c", str(count), "-i", str(interval), "-W", "3", B_IP), check=False)
    return [float(x) for x in re.findall(r"time=([\d.]+) ms", r.stdout)]


def queue_stats(pid: int) -> tuple[int, int, int]:
    """(id_sequence, queue_dropped, user_dropped) of our queue, from the worker's netns view."""
    for ln in Path(f"/proc/{pid}/net/netfilter/nfnetlink_queue").read_text().splitlines():
        f = ln.split()
        if f and f[0] == str(QUEUE):
            return int(f[7]), int(f[5]), int(f[6])
    raise LookupError(QUEUE)


def cpu_s(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def udp(rate: float, dur: float) -> tuple[int, int]:
    """Send UDP a -> b for ``dur`` s (rate 0: as fast as possible); (sent, received)."""
    rx = subprocess.Popen(in_ns(B, sys.executable, "-c", RECEIVER, str(dur + 1.5)), stdout=subprocess.PIPE, text=True)
    try:
        assert rx.stdout is not None and rx.stdout.readline().strip() == "ready"
        sent = int(sh(*in_ns(A, sys.executable, "-c", SENDER, str(rate), str(dur))).stdout)
        return sent, int(rx.communicate(timeout=30)[0])
    finally:
        if rx.poll() is None:  # interrupted: our receiver goes too
            rx.kill()
            rx.wait()


def with_worker(workers: list[int], mode: str, **params: object) -> int:
    pid = nfqueue.start_worker(BR, QUEUE, mode, **params).pid
    workers.append(pid)
    nfqueue.install(BR, TABLE, QUEUE, ['iifname "v-a"'])  # one direction: RTT + D
    return pid


def done(workers: list[int], pid: int) -> None:
    nfqueue.stop_worker(pid)
    workers.remove(pid)
    nfqueue.remove(BR, TABLE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pings", type=int, default=40, help="pings per delay figure")
    ap.add_argument("--flood-s", type=float, default=3.0)
    ap.add_argument("--cpu-s", type=float, default=5.0)
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    for sig in (signal.SIGTERM, signal.SIGINT):  # SIGINT too: a background start may have it ignored
        signal.signal(sig, on_term)
    workers: list[int] = []
    out: dict[str, str] = {}
    try:
        setup()
        rtts(3, 0.2)  # ARP and caches warm
        base = statistics.mean(rtts(args.pings, 0.05))
        out["base_rtt_ms"] = f"{base:.3f}"
        for d in (50, 200):
            pid = with_worker(workers, "delay", delay_ms=d)
            added = [r - base for r in rtts(args.pings, 0.05)]  # 50 ms apart: several in flight at once
            done(workers, pid)
            out[f"delay{d}_mean_ms"], out[f"delay{d}_sd_ms"] = f"{statistics.mean(added):.2f}", \
                f"{statistics.stdev(added):.2f}"
            print(f"delay {d} ms: added RTT mean {statistics.mean(added):.2f} ms, sd {statistics.stdev(added):.2f} "
                  f"ms, min {min(added):.2f}, max {max(added):.2f} ({len(added)}/{args.pings} answered)")
        _, rx = udp(0, args.flood_s)
        out["flood_noq_rx_pps"] = f"{rx / args.flood_s:.0f}"
        pid = with_worker(workers, "delay", delay_ms=0)
        seq0, qd0, ud0 = queue_stats(pid)
        sent, rx = udp(0, args.flood_s)
        seq1, qd1, ud1 = queue_stats(pid)
        done(workers, pid)
        out["max_pps"] = f"{(seq1 - seq0 - (ud1 - ud0)) / args.flood_s:.0f}"
        out["flood_rx_pps"] = f"{rx / args.flood_s:.0f}"
        out["queue_dropped"] = str(qd1 - qd0 + ud1 - ud0)
        print(f"flood {args.flood_s:.0f} s: sent {sent}, worker verdicts {out['max_pps']}/s, received "
              f"{out['flood_rx_pps']}/s (no queue: {out['flood_noq_rx_pps']}/s), "
              f"dropped at the full queue {out['queue_dropped']}")
        for mode, params, key in (("delay", {"delay_ms": 0}, "cpu1k_delay_pct"),
                                  ("corrupt", {"rate": 1.0, "fix_checksum": True}, "cpu1k_corrupt_pct")):
            pid = with_worker(workers, mode, **params)
            c0 = cpu_s(pid)
            sent, rx = udp(1000, args.cpu_s)
            pct = 100 * (cpu_s(pid) - c0) / args.cpu_s  # the worker idles outside the sending window
            done(workers, pid)
            out[key] = f"{pct:.1f}"
            print(f"{mode} at {sent / args.cpu_s:.0f} pkt/s: worker CPU {pct:.1f}% of one core (received {rx})")
    except KeyboardInterrupt:
        print("interrupted: cleaning up", file=sys.stderr)
        return 130
    finally:
        teardown(workers)
        left = [n for n in sh("ip", "netns", "list").stdout.split() if n.startswith(PREFIX + "-")]
        if left:
            print(f"LEFTOVER namespaces: {left}", file=sys.stderr)
    print(" ".join(f"{k}={v}" for k, v in out.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
