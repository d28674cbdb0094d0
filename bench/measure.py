"""Measure the client-side instruments on the embedded testbed: probe accuracy, load rate, watcher CPU cost.

Why: the outage a test reports is only as good as the probe that measures it, the load
must be heavy enough to matter without starving the cluster, and the watchers must not
steal CPU from it (2 cores). These are the figures that say so.

  (a) outages of known length N ms: inside the active node an nftables rule rejects the
      client's TCP to the service port with a TCP reset, for N ms, while the probe runs;
      printed: measured vs true outage and the error. A reset (not SIGSTOP of the app) is
      used because it fails each probe at once: a stopped app still gets its connections
      completed by the kernel and answers them at SIGCONT, so a probe sent during a short
      stop succeeds late instead of failing, and the "outage" would depend on the probe
      timeout. The rule matches only the client's address, so Pacemaker's own monitor
      (127.0.0.1) is untouched and the cluster does not react. It is removed in a finally.
  (b) locust for --load-seconds with the default profile; sustained req/s, errors, latency,
      and the read-back (verify) of every acknowledged write.
  (c) CPU of the probe and ARP watch processes over a 10 s window (/proc/PID/stat).

Brings the testbed up if it is not, and then takes it down at the end (also on Ctrl-C).
The last line printed is machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType, TracebackType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.arpwatch import ArpWatch  # noqa: E402
from harness.drivers.pacemaker import PacemakerDriver  # noqa: E402
from harness.load import ClientProcess, Load, verify  # noqa: E402
from harness.probe import Probe  # noqa: E402
from harness.testbed import open_testbed  # noqa: E402
from harness.timeline import ProbeSample, load_requests  # noqa: E402
from harness.topology import DEFAULT_TESTBED, load_topology  # noqa: E402

TABLE = "fallover_bench"


class Blackout:
    """An nftables table in one node that, when on, resets the client's TCP to the service port.

    One `nft -e -i` process stays open in the node: a rule change then takes ~1 ms and is
    acknowledged by nft's "# new generation" line once committed, so on/off are known to
    ~1 ms; spawning nft per change took 6-17 ms here and blurred the true outage by as much.
    """

    def __init__(self, netns: str, client_ip: str, port: int) -> None:
        self.netns, self.client_ip, self.port = netns, client_ip, port
        self.proc: subprocess.Popen[bytes] | None = None
        self.buf = b""

    def _cmd(self, line: str, timeout: float = 5.0) -> tuple[float, float]:
        """Send one command; (mono before, mono when nft reported the commit)."""
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        t0 = time.monotonic()
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        seen: list[bytes] = []
        deadline = t0 + timeout
        while True:
            while b"\n" in self.buf:
                out, self.buf = self.buf.split(b"\n", 1)
                if out.startswith(b"# new generation"):
                    return t0, time.monotonic()
                seen.append(out)
                if out.startswith(b"Error"):
                    raise RuntimeError(f"nft in {self.netns}: {line!r}: " + b" / ".join(seen).decode(errors="replace"))
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.proc.stdout], [], [], left)[0]:
                raise RuntimeError(f"nft in {self.netns}: no commit for {line!r} within {timeout}s")
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            if not chunk:
                raise RuntimeError(f"nft in {self.netns} exited: " + b" / ".join(seen).decode(errors="replace"))
            self.buf += chunk

    def __enter__(self) -> Blackout:
        self.proc = subprocess.Popen(["nsenter", f"--net={self.netns}", "stdbuf", "-oL", "nft", "-e", "-i"],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            self._cmd(f"add table inet {TABLE}")
            self._cmd(f"add chain inet {TABLE} input {{ type filter hook input priority -10; }}")
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    # nft -e acknowledges only additions, so "off" inserts an accept ahead of the reset
    # instead of deleting it; the next "on" flushes both first (same stream, so done by its ack).
    def on(self) -> tuple[float, float]:
        match = f"ip saddr {self.client_ip} tcp dport {self.port}"
        return self._cmd(f"flush chain inet {TABLE} input\nadd rule inet {TABLE} input {match} reject with tcp reset")

    def off(self) -> tuple[float, float]:
        return self._cmd(f"insert rule inet {TABLE} input ip saddr {self.client_ip} tcp dport {self.port} accept")

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        """Remove the table with a separate nft, whatever state the interactive one is in."""
        if self.proc is not None:
            assert self.proc.stdin is not None
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()  # our own child, by PID
                self.proc.wait(5)
        subprocess.run(["nsenter", f"--net={self.netns}", "nft", "delete", "table", "inet", TABLE],
                       capture_output=True, timeout=10)


def score(samples: list[ProbeSample], windows: list[tuple[int, float, float, float, float]]) -> list[dict[str, float]]:
    """Per window: true outage (rule on -> off) and the probe's (first failure -> first success after)."""
    out = []
    for n, on0, on1, off0, off1 in windows:
        inside = [s for s in samples if on0 - 0.02 <= s.mono <= off1 + 0.1]
        fails = [s for s in inside if not s.ok]
        true_ms = ((off0 + off1) / 2 - (on0 + on1) / 2) * 1000  # each commit lies in its ~1 ms bracket
        if not fails:
            out.append({"n": n, "true_ms": true_ms, "measured_ms": 0.0, "error_ms": -true_ms, "failed": 0})
            continue
        after = next((s for s in samples if s.ok and s.mono > fails[-1].mono), None)
        measured = ((after.mono if after else fails[-1].mono) - fails[0].mono) * 1000
        out.append({"n": n, "true_ms": true_ms, "measured_ms": measured, "error_ms": measured - true_ms,
                    "failed": len(fails), "ack_ms": max(on1 - on0, off1 - off0) * 1000})
    return out


def cpu_pct(procs: Sequence[ClientProcess], seconds: float) -> list[float]:
    before = [p.cpu_seconds() for p in procs]
    time.sleep(seconds)
    return [100 * (p.cpu_seconds() - b) / seconds for p, b in zip(procs, before)]


def run(args: argparse.Namespace, out: Path) -> dict[str, float]:
    tb = open_testbed(load_topology(args.testbed))
    brought_up = not tb.is_built  # type: ignore[attr-defined]
    res: dict[str, float] = {}
    try:
        print(f"testbed: {'bringing up' if brought_up else 'already up'}; output in {out}", flush=True)
        tb.up()
        topo = tb.topology
        g = topo.groups[0]
        state = PacemakerDriver(tb).wait_settled(timeout=90)
        active = state.group_node(g.name)
        assert active, f"group {g.name} is not running"
        base = f"http://{g.service_ip}:{g.application.port}"
        client_ip = str(topo.address(topo.client.name, topo.client.network))
        netns = f"/proc/{tb.node(active).target()}/ns/net"  # type: ignore[attr-defined]
        print(f"group {g.name} on {active}; probe {args.hz:g} Hz, timeout {args.timeout:g}s; "
              f"machine load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores", flush=True)
        with ArpWatch(tb, iface=topo.client.network, ips=[str(g.service_ip)], out=out / "arp.jsonl") as arp:
            probe = Probe(tb, url=base + "/health", out=out / "probe.jsonl", hz=args.hz, timeout=args.timeout)
            with probe, Blackout(netns, client_ip, g.application.port) as blackout:
                time.sleep(2)  # past interpreter start-up
                p_cpu, a_cpu = cpu_pct([probe, arp], 10.0)
                print(f"(c) cpu over 10 s: probe {p_cpu:.2f} %, arpwatch {a_cpu:.2f} % of one core", flush=True)
                windows = []
                for _ in range(args.rounds):
                    for n in args.durations:
                        time.sleep(1.0)
                        on0, on1 = blackout.on()
                        time.sleep(max(0.0, on1 + n / 1000 - time.monotonic()))
                        off0, off1 = blackout.off()
                        windows.append((n, on0, on1, off0, off1))
                time.sleep(1.0)
            samples = probe.samples()
            scores = score(samples, windows)
            for s in scores:
                print(f"(a) outage {s['n']:>5} ms: true {s['true_ms']:7.1f} ms, measured {s['measured_ms']:7.1f} ms, "
                      f"error {s['error_ms']:+6.1f} ms ({s['failed']:.0f} failed samples, "
                      f"nft ack ≤ {s.get('ack_ms', 0):.1f} ms)", flush=True)
            stray = sum(1 for s in samples if not s.ok) - sum(int(s["failed"]) for s in scores)
            print(f"(a) {len(samples)} samples, {stray} failures outside the outages", flush=True)
            log = out / "load.jsonl"
            t0 = time.monotonic()
            load = Load(tb, log=log, host=base, users=args.users, wait=args.wait, run_time=args.load_seconds)
            with load:
                time.sleep(args.load_seconds / 2)
                l_cpu, a_cpu_load = cpu_pct([load, arp], 5.0)
                load.wait(args.load_seconds + 30)
            reqs = load.requests()
            span = reqs[-1].mono - reqs[0].mono if len(reqs) > 1 else float("nan")
            ok = [r for r in reqs if r.ok]
            lat = sorted(r.latency_s * 1000 for r in reqs)
            print(f"(b) locust {args.users} users, wait {args.wait}: {len(reqs)} requests in {span:.1f} s = "
                  f"{len(reqs) / span:.0f} req/s ({len(reqs) - len(ok)} failed), latency p50 "
                  f"{statistics.median(lat):.1f} ms p99 {lat[int(len(lat) * 0.99)]:.1f} ms; locust "
                  f"{l_cpu:.0f} % cpu, arpwatch under load {a_cpu_load:.2f} %; wall {time.monotonic() - t0:.1f} s",
                  flush=True)
            t0 = time.monotonic()
            verify(tb, log, base)
            checked = [r for r in load_requests(log) if r.kind == "verify"]
            v_s = time.monotonic() - t0
            bad = sum(1 for r in checked if not r.ok)
            print(f"(b) verify: {len(checked)} acknowledged writes read back in {v_s:.2f} s, {bad} bad", flush=True)
        errs = [abs(s["error_ms"]) for s in scores]
        res = {"max_error_ms": max(errs), "mean_abs_error_ms": statistics.mean(errs), "stray_failures": stray,
               "rps": len(reqs) / span, "failed_requests": len(reqs) - len(ok), "p99_ms": lat[int(len(lat) * 0.99)],
               "verified": len(checked), "verify_s": v_s, "lost": bad, "probe_cpu_pct": p_cpu,
               "arpwatch_cpu_pct": a_cpu, "watch_cpu_pct": p_cpu + a_cpu, "locust_cpu_pct": l_cpu,
               "loadavg": os.getloadavg()[0]}
    finally:
        if brought_up:
            for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not stop the teardown
                signal.signal(sig, signal.SIG_IGN)
            print("testbed: taking it down (this script brought it up)", file=sys.stderr, flush=True)
            tb.down()
    return res


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--testbed", type=Path, default=Path(os.environ.get("FALLOVER_TESTBED", DEFAULT_TESTBED)))
    p.add_argument("--durations", type=int, nargs="+", default=[200, 1000, 3000], help="outage lengths in ms")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--timeout", type=float, default=0.5, help="probe timeout, s")
    p.add_argument("--users", type=int, default=10)
    p.add_argument("--wait", default="tput:20", help="FALLOVER_LOAD_WAIT for the profile")
    p.add_argument("--load-seconds", type=float, default=20.0)
    args = p.parse_args()
    if os.geteuid() != 0:
        print("bench/measure.py needs root (the embedded testbed)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    out = Path(tempfile.mkdtemp(prefix="fallover-measure-"))
    try:
        res = run(args, out)
    except KeyboardInterrupt:
        print("interrupted; cleaned up", file=sys.stderr)
        return 130
    ints = ("stray_failures", "failed_requests", "verified", "lost")
    print(" ".join(f"{k}={int(v) if k in ints else f'{v:.4g}'}" for k, v in res.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
