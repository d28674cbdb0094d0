"""The probe: GET /health on a fixed schedule (≥ 50 Hz), the ground truth for client-visible outage."""

# One process in the client namespace, one thread, non-blocking sockets: a request goes out
# every 1/hz s whatever earlier ones are doing (a frozen node completes the TCP handshake and
# then never answers). No HTTP library: at 100 Hz its cost would be most of the probe's CPU.
# Connections are reused only while they work: any error or timeout closes one, so the end
# of every outage is seen on a fresh connection, as a new client would make. A connection
# per sample cost 2.5-3x the CPU here (both ends' handshakes run in the probe's context
# across the local veths) and a server thread per sample.

from __future__ import annotations

import argparse
import collections
import errno
import json
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

from harness.load import ClientProcess, gate_of, wait_for_gate
from harness.timeline import PROBE_DOWN, PROBE_NODE_CHANGED, PROBE_UP, Event, ProbeSample
from harness.wait import wait_until

if TYPE_CHECKING:  # the pydantic topology is not needed in the probe process
    from harness.testbed.base import Testbed

NODE_HEADER = b"x-fallover-node:"
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux value; CLOCK_REALTIME stamp per segment
CMSG_SPACE = socket.CMSG_SPACE(16)  # one struct timespec
MAX_IDLE = 4  # idle connections kept for reuse


@dataclass(eq=False)
class _Sample:
    mono: float
    wall: float
    deadline: float
    arrived: float | None = None  # answer latency from the kernel's receive stamp
    done: bool = False


@dataclass(eq=False)
class _Conn:
    sock: socket.socket
    connected: bool = False
    reused: bool = False
    sample: _Sample | None = None
    buf: bytearray = field(default_factory=bytearray)


def parse_response(buf: bytes) -> tuple[int, str | None, bool] | None:
    """(status, node, keep-alive) once the whole response is in `buf`, else None; node from header or body.

    >>> parse_response(b"HTTP/1.1 200 OK\\r\\nContent-Length: 6\\r\\n\\r\\nnode2\\n")
    (200, 'node2', True)
    """
    head, sep, body = buf.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return (0, None, False)  # garbage: report it as a failure rather than wait for more
    length, node, keep = 0, None, lines[0].startswith(b"HTTP/1.1")
    for line in lines[1:]:
        low = line.lower()
        if low.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif low.startswith(NODE_HEADER):
            node = line.split(b":", 1)[1].strip().decode(errors="replace")
        elif low.startswith(b"connection:") and b"close" in low:
            keep = False
    if len(body) < length:
        return None
    return status, node or body[:length].strip().decode(errors="replace") or None, keep


def _ename(e: OSError | int) -> str:
    n = e if isinstance(e, int) else (e.errno or 0)
    return errno.errorcode.get(n, str(e))


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
        self.request = f"GET {u.path or '/health'} HTTP/1.1\r\nHost: {u.netloc}\r\n\r\n".encode()
        self.period, self.timeout = 1.0 / hz, timeout
        # Flushed every ~100 ms, not per line: a write per sample was a quarter of the probe's
        # CPU here; a SIGKILLed probe loses at most the last 100 ms.
        self.out = open(out, "a", encoding="utf-8")
        self.sel = selectors.DefaultSelector()
        self.pending: collections.deque[tuple[_Sample, _Conn]] = collections.deque()  # in deadline order
        self.idle: list[_Conn] = []
        self.stopping = False
        self.skipped = 0
        self.written = 0

    def run(self) -> None:
        next_send = next_flush = time.monotonic()
        while not self.stopping:
            if next_send >= next_flush:
                self.out.flush()
                next_flush = next_send + 0.1
            delay = next_send - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            for key, _ in self.sel.select(0):
                self.handle(key.data)
            now = time.monotonic()
            while self.pending and (self.pending[0][0].done or self.pending[0][0].deadline <= now):
                sample, conn = self.pending.popleft()
                if not sample.done:
                    self.fail(conn, f"timeout {self.timeout:g}s "
                              + ("after connect (no answer)" if conn.connected else "connecting"))
            self.launch()
            next_send += self.period
            while next_send <= now:  # fell behind (CPU starved): skip slots, never burst
                next_send += self.period
                self.skipped += 1
        for key in list(self.sel.get_map().values()):
            key.fileobj.close()  # type: ignore[union-attr]
        self.out.close()

    def launch(self) -> None:
        sample = _Sample(time.monotonic(), time.time(), time.monotonic() + self.timeout)
        if self.idle:
            conn = self.idle.pop()
        else:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM | socket.SOCK_NONBLOCK)
            s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = _Conn(s)
            rc = s.connect_ex(self.addr)
            if rc not in (0, errno.EINPROGRESS):
                conn.sample = sample
                return self.fail(conn, f"connect: {_ename(rc)}")
            self.sel.register(s, selectors.EVENT_READ, conn)
        conn.sample = sample
        self.pending.append((sample, conn))
        # Across local veths a handshake usually completes inside connect(): send at once
        # (a refused connection fails right here), else when the socket turns writable.
        try:
            conn.sock.send(self.request)
            conn.connected = True
        except (BlockingIOError, InterruptedError):
            self.sel.modify(conn.sock, selectors.EVENT_WRITE, conn)
        except OSError as e:
            self.fail(conn, f"{'send' if conn.reused else 'connect'}: {_ename(e)}")

    def handle(self, conn: _Conn) -> None:
        sample = conn.sample
        if sample is None:  # an idle connection woke up: the server closed it
            return self.drop(conn)
        try:
            if not conn.connected:
                rc = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if rc:
                    return self.fail(conn, f"connect: {_ename(rc)}")
                conn.connected = True
                conn.sock.send(self.request)  # tiny: fits in an empty send buffer
                self.sel.modify(conn.sock, selectors.EVENT_READ, conn)
                return
            data, anc, _, _ = conn.sock.recvmsg(4096, CMSG_SPACE)
        except OSError as e:
            return self.fail(conn, f"{'recv' if conn.connected else 'connect'}: {_ename(e)}")
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(cdata) >= 16:
                sec, nsec = struct.unpack("qq", cdata[:16])
                sample.arrived = sec + nsec * 1e-9 - sample.wall
        conn.buf += data
        parsed = parse_response(bytes(conn.buf))
        if parsed is None:
            if not data:
                self.fail(conn, "connection closed before a full response")
            return
        status, node, keep = parsed
        if sample.arrived is not None and sample.arrived > self.timeout:
            return self.fail(conn, f"timeout {self.timeout:g}s (answered after {sample.arrived:.3f}s)", node)
        if status != 200:
            return self.fail(conn, f"HTTP {status}", node)
        self.write(sample, True, node, None)
        conn.sample, conn.reused = None, True
        conn.buf.clear()
        if keep and len(self.idle) < MAX_IDLE:
            self.idle.append(conn)
        else:
            self.drop(conn)

    def fail(self, conn: _Conn, error: str, node: str | None = None) -> None:
        """Record the connection's sample as failed and close the connection: it is never reused."""
        if conn.sample is not None:
            self.write(conn.sample, False, node, error + (" (reused connection)" if conn.reused else ""))
        self.drop(conn)

    def drop(self, conn: _Conn) -> None:
        conn.sample = None
        if conn in self.idle:
            self.idle.remove(conn)
        try:
            self.sel.unregister(conn.sock)
        except (KeyError, ValueError):
            pass
        conn.sock.close()

    def write(self, sample: _Sample, ok: bool, node: str | None, error: str | None) -> None:
        latency = sample.arrived if sample.arrived is not None else time.monotonic() - sample.mono
        sample.done = True
        self.out.write(json.dumps({"mono": sample.mono, "wall": sample.wall, "ok": ok,
                                   "latency_s": round(latency, 6), "node": node, "error": error}) + "\n")
        self.written += 1
        if self.written == 1:  # the harness waits for the first line to go on: not for the next 100 ms flush
            self.out.flush()


class Probe(ClientProcess):
    """The probe process in the client namespace; stopped by PID on every exit path.

    Usage::

        with Probe(tb, url="http://10.77.1.100:8080/health", out=run_dir / "probe.jsonl") as probe:
            inject_fault()
        transitions(probe.samples())
    """

    def __init__(self, testbed: Testbed, *, url: str, out: Path, hz: float | None = None,
                 timeout: float | None = None, gated: bool = False) -> None:
        from harness.testbed.base import pace_of  # here: the probe process itself never loads the topology

        pace = pace_of(testbed)  # the testbed's own rate and patience (an emulated guest answers in seconds)
        hz = pace.probe_hz if hz is None else hz
        timeout = pace.probe_timeout_s if timeout is None else timeout
        argv = [sys.executable, "-m", "harness.probe", "--url", url, "--hz", str(hz), "--timeout", str(timeout),
                "--out", str(out)]
        gate = gate_of(out) if gated else None
        if gate is not None:  # spawned before the reset: it sends its first request when the gate opens
            argv += ["--gate", str(gate)]
        super().__init__(testbed, argv, out=out, what="probe", ready_timeout=15.0 + timeout, gate=gate)
        self.url, self.hz = url, hz

    def samples(self) -> list[ProbeSample]:
        return load_samples(self.out)


def wait_for_answer(out: Path, node: str | None, *, timeout: float, after: float = 0.0) -> None:
    """Until a running probe's log has a good answer (from ``node``, if given) sent after ``after``.

    Reads only what was appended since the last look, so a long wait costs little.
    """
    offset = [0]

    def seen() -> bool:
        with open(out, "rb") as f:
            f.seek(offset[0])
            chunk = f.read()
        end = chunk.rfind(b"\n") + 1
        offset[0] += end
        for line in chunk[:end].splitlines():
            s = json.loads(line)
            if s["ok"] and s["mono"] >= after and (node is None or s.get("node") == node):
                return True
        return False

    wait_until(seen, timeout=timeout, interval=0.05, what=f"the service to answer{' from ' + node if node else ''}")


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
    """Runs of failed samples: (first failure mono, first success mono or None if still down, count).

    The DESIGN's client-visible outage is the longest `end - start` of these.
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
    seen_ok, last_node = False, None  # last_node: of the last success
    down_at: ProbeSample | None = None
    failed = 0
    for s in sorted(samples, key=lambda s: s.mono):
        if not s.ok:
            if seen_ok and down_at is None:
                down_at, failed = s, 0
                events.append(Event(s.mono, s.wall, PROBE_DOWN, last_node, {"error": s.error}))
            failed += 1
            continue
        if down_at is not None:
            events.append(Event(s.mono, s.wall, PROBE_UP, s.node,
                                {"outage_s": round(s.mono - down_at.mono, 6), "failed": failed,
                                 "first_error": down_at.error}))
        if seen_ok and s.node != last_node:
            events.append(Event(s.mono, s.wall, PROBE_NODE_CHANGED, s.node, {"from": last_node, "to": s.node}))
        seen_ok, last_node, down_at = True, s.node, None
    return events


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.probe", description=__doc__)
    p.add_argument("--url", required=True, help="e.g. http://10.77.1.100:8080/health")
    p.add_argument("--hz", type=float, default=100.0)
    p.add_argument("--timeout", type=float, default=0.5, help="seconds before a request counts as failed")
    p.add_argument("--out", type=Path, required=True, help="JSONL of timeline.ProbeSample")
    p.add_argument("--gate", default=None, help="send nothing until this file exists")
    args = p.parse_args(argv)
    if not 0 < args.hz <= 1000 or args.timeout <= 0:
        print("harness.probe: --hz must be in (0, 1000] and --timeout > 0", file=sys.stderr)
        return 2
    poller = Poller(args.url, args.hz, args.timeout, args.out)

    def stop(signum: int, frame: FrameType | None) -> None:
        poller.stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    wait_for_gate(args.gate, lambda: poller.stopping)  # a SIGTERM meanwhile: run() ends at once
    poller.run()
    if poller.skipped:
        print(f"harness.probe: skipped {poller.skipped} slots (CPU starved)", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
