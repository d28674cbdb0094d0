"""The probe: GET /health on a fixed schedule (≥ 50 Hz), the ground truth for client-visible outage."""

# One process in the client namespace, one thread, non-blocking sockets on an epoll loop:
# a request is sent every 1/hz s whatever earlier ones are doing (a frozen node completes
# the TCP handshake and then never answers), each on a fresh connection so that every
# sample sees what a new client would see. No HTTP library: at 100 Hz the cost of one is
# most of the probe's CPU.

from __future__ import annotations

import argparse
import collections
import errno
import json
import os
import selectors
import signal
import socket
import struct
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

from harness.load import ClientProcess
from harness.timeline import PROBE_DOWN, PROBE_NODE_CHANGED, PROBE_UP, Event, ProbeSample

if TYPE_CHECKING:  # the pydantic topology is not needed in the probe process
    from harness.testbed.base import Testbed

NODE_HEADER = b"x-fallover-node:"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; CLOCK_REALTIME stamp per segment
CMSG_SPACE = socket.CMSG_SPACE(16)  # one struct timespec


@dataclass(eq=False)
class _Pending:
    sock: socket.socket
    mono: float
    wall: float
    deadline: float
    connected: bool = False
    buf: bytearray = field(default_factory=bytearray)
    arrived: float | None = None  # answer latency from the kernel's receive stamp
    done: bool = False


def parse_response(buf: bytes) -> tuple[int, str | None] | None:
    """(status, node) once the whole response is in `buf`, else None; node from header or body."""
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return (0, None)  # garbage: report it as a failure rather than wait for more
    length, node = 0, None
    for line in lines[1:]:
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif low.startswith(NODE_HEADER):
            node = line.split(b":", 1)[1].strip().decode(errors="replace")
    if len(body) < length:
        return None
    return status, node or body[:length].strip().decode(errors="replace") or None


class Poller:
    """The probe loop; `run()` until SIGTERM, one JSON line (ProbeSample) per finished request.

    It wakes only on the send schedule and then collects whatever answers are ready: on
    this kind of VM every wake-up costs ~60 µs of CPU, so waking per answer would double the
    cost. Answer latency stays exact because the kernel stamps each received segment
    (SO_TIMESTAMPNS), and that stamp, not the collection time, decides ok vs. timeout.
    """

    def __init__(self, url: str, hz: float, timeout: float, out: Path) -> None:
        u = urllib.parse.urlsplit(url)
        self.addr = (u.hostname or "", u.port or 80)
        self.request = (f"GET {u.path or '/health'} HTTP/1.1\r\nHost: {u.netloc}\r\n"
                        f"Connection: close\r\n\r\n").encode()
        self.period, self.timeout = 1.0 / hz, timeout
        self.out = open(out, "a", buffering=1, encoding="utf-8")  # one write per sample: a kill loses nothing
        self.sel = selectors.DefaultSelector()
        self.pending: collections.deque[_Pending] = collections.deque()  # same timeout: deadline order
        self.stopping = False
        self.skipped = 0

    def run(self) -> None:
        next_send = time.monotonic()
        while not self.stopping:
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for key, mask in self.sel.select(0):
                self.handle(key.data)
            now = time.monotonic()
            while self.pending and (self.pending[0].done or self.pending[0].deadline <= now):
                p = self.pending.popleft()
                if not p.done:
                    self.finish(p, False, None, f"timeout {self.timeout:g}s "
                                + ("after connect (no answer)" if p.connected else "connecting"))
            self.launch()
            next_send += self.period
            while next_send <= now:  # fell behind (CPU starved): skip slots, never burst
                next_send += self.period
                self.skipped += 1
        self.out.close()

    def launch(self) -> None:
        mono, wall = time.monotonic(), time.time()
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
        s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        p = _Pending(s, mono, wall, mono + self.timeout)
        rc = s.connect_ex(self.addr)
        if rc not in (0, errno.EINPROGRESS):
            return self.finish(p, False, None, f"connect: {errno.errorcode.get(rc, rc)}")
        # Across local veths the handshake usually completes inside connect(): send at once
        # (a refused connection fails right here); else wait for writability.
        try:
            s.send(self.request)
            p.connected = True
        except (BlockingIOError, InterruptedError):
            pass
        except OSError as e:
            return self.finish(p, False, None, f"connect: {errno.errorcode.get(e.errno or 0, str(e))}")
        self.pending.append(p)
        self.sel.register(s, selectors.EVENT_READ if p.connected else selectors.EVENT_WRITE, p)

    def handle(self, p: _Pending) -> None:
        if p.done:
            return
        try:
            if not p.connected:
                rc = p.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    return self.finish(p, False, None, f"connect: {errno.errorcode.get(rc, rc)}")
                p.connected = True
                p.sock.send(self.request)  # tiny: fits in an empty send buffer
                self.sel.modify(p.sock, selectors.EVENT_READ, p)
                return
            data, anc, _, _ = p.sock.recvmsg(4096, CMSG_SPACE)
        except OSError as e:
            return self.finish(p, False, None, f"{'recv' if p.connected else 'connect'}: "
                                               f"{errno.errorcode.get(e.errno or 0, str(e))}")
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("qq", cdata[:16])
                p.arrived = sec + nsec * 1e-9 - p.wall
        p.buf += data
        parsed = parse_response(bytes(p.buf))
        if parsed is None and data:
            return  # more to come
        if parsed is None:
            return self.finish(p, False, None, "connection closed before a full response")
        status, node = parsed
        if p.arrived is not None and p.arrived > self.timeout:
            return self.finish(p, False, node, f"timeout {self.timeout:g}s (answered after {p.arrived:.3f}s)")
        self.finish(p, status == 200, node, None if status == 200 else f"HTTP {status}")

    def finish(self, p: _Pending, ok: bool, node: str | None, error: str | None) -> None:
        latency = p.arrived if p.arrived is not None else time.monotonic() - p.mono
        p.done = True
        try:
            self.sel.unregister(p.sock)
        except (KeyError, ValueError):
            pass
        p.sock.close()
        self.out.write(json.dumps({"mono": p.mono, "wall": p.wall, "ok": ok, "latency_s": round(latency, 6),
                                   "node": node, "error": error}) + "\n")


class Probe(ClientProcess):
    """The probe process in the client namespace; stopped by PID on every exit path.

    Usage::

        with Probe(tb, url="http://10.77.1.100:8080/health", out=run_dir / "probe.jsonl") as probe:
            inject_fault()
        transitions(probe.samples())
    """

    def __init__(self, testbed: Testbed, *, url: str, out: Path, hz: float = 100.0, timeout: float = 0.5) -> None:
        argv = [sys.executable, "-m", "harness.probe", "--url", url, "--hz", str(hz), "--timeout", str(timeout),
                "--out", str(out)]
        super().__init__(testbed, argv, out=out, what="probe", ready_timeout=15.0 + timeout)

    def samples(self) -> list[ProbeSample]:
        return load_samples(self.out)


def load_samples(path: Path) -> list[ProbeSample]:
    """Samples sorted by send time; a torn last line (killed probe) is skipped."""
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(ProbeSample(**json.loads(line)))
        except (ValueError, TypeError):
            continue
    return sorted(out, key=lambda s: s.mono)


def outages(samples: list[ProbeSample]) -> list[tuple[float, float | None, int]]:
    """Runs of failed samples as (first failure mono, first success mono or None if still down, count).

    The DESIGN's client-visible outage is the longest `end - start` of these.

    >>> outages([ProbeSample(0.0, 0, True, 0), ProbeSample(0.01, 0, False, 0), ProbeSample(0.02, 0, True, 0)])
    [(0.01, 0.02, 1)]
    """
    runs: list[tuple[float, float | None, int]] = []
    start: float | None = None
    count = 0
    for s in sorted(samples, key=lambda s: s.mono):
        if not s.ok:
            start, count = (s.mono if start is None else start), count + 1
        elif start is not None:
            runs.append((start, s.mono, count))
            start, count = None, 0
    if start is not None:
        runs.append((start, None, count))
    return runs


def transitions(samples: list[ProbeSample]) -> list[Event]:
    """PROBE_DOWN at the first failure after a success, PROBE_UP at the first success after failures,
    PROBE_NODE_CHANGED whenever a success comes from another node than the previous success.

    Failures before the first success are not an outage the probe saw begin, so they give no event.
    """
    events: list[Event] = []
    up: bool | None = None
    last_node: str | None = None
    down_at: ProbeSample | None = None
    failed = 0
    for s in sorted(samples, key=lambda s: s.mono):
        if not s.ok:
            if up:
                down_at, failed = s, 0
                events.append(Event(s.mono, s.wall, PROBE_DOWN, last_node, {"error": s.error}))
            failed += 1
            up = False if up is not None else None
            continue
        if up is False and down_at is not None:
            events.append(Event(s.mono, s.wall, PROBE_UP, s.node,
                                {"outage_s": round(s.mono - down_at.mono, 6), "failed": failed,
                                 "first_error": down_at.error}))
        if last_node is not None and s.node != last_node:
            events.append(Event(s.mono, s.wall, PROBE_NODE_CHANGED, s.node, {"from": last_node, "to": s.node}))
        up, last_node = True, s.node
    return events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.probe", description=__doc__)
    p.add_argument("--url", required=True, help="e.g. http://10.77.1.100:8080/health")
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--timeout", type=float, default=0.5, help="seconds before a request counts as failed")
    p.add_argument("--out", type=Path, required=True, help="JSONL of timeline.ProbeSample")
    args = p.parse_args(argv)
    if not 0 < args.hz <= 1000 or args.timeout <= 0:
        print("harness.probe: --hz must be in (0, 1000] and --timeout > 0", file=sys.stderr)
        return 2
    poller = Poller(args.url, args.hz, args.timeout, args.out)

    def stop(signum: int, frame: FrameType | None) -> None:
        poller.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    poller.run()
    if poller.skipped:
        print(f"harness.probe: skipped {poller.skipped} slots (CPU starved)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
