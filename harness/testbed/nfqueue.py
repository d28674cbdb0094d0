"""Packet delay and corruption in user space through NFQUEUE, for kernels without sch_netem.

Why this shape (measured on the Debian 12 / 6.18 machine): nft's ``queue`` statement is
missing (CONFIG_NFT_QUEUE unset: ENOENT in every family) and the xtables NFQUEUE target
(nft_compat) is refused in the ``bridge`` family but accepted in ``inet``. So the fault stays
on the "switch" (the bridge netns: survives a fenced node, needs nothing inside it) as two
tables named ``table``: a ``bridge`` one applies the caller's nft matches (bridge ports, e.g.
``iifname "v1-service"``) and only *marks*; an ``inet`` one, reached by bridged IP through
br_netfilter, queues that mark with ``bypass`` (no worker bound: traffic flows untouched).
The nft CLI cannot write xtables targets: the inet rule is made as ``meta mark M counter``
and replaced over netlink by the same expressions plus the target; ``nft list`` shows
``queue num N bypass`` (and a cosmetic "managed by iptables-nft" warning on stderr).
ARP is never queued. Each matched direction adds the delay once: RTT+D for one, +2D for both.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import heapq
import os
import random
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

MARK_BASE = 0x0FA10000  # mark = MARK_BASE | queue: one mark per queue, so several faults coexist
_T = TypeVar("_T")


def ns_path(ns_spec: str) -> str:
    """A named netns lives under /run/netns; anything with a slash is already a path."""
    return ns_spec if "/" in ns_spec else f"/run/netns/{ns_spec}"


def in_netns(ns_spec: str, fn: Callable[[], _T]) -> _T:
    """Run ``fn`` in a thread setns()'d into the netns (its sockets belong there); the caller stays put."""
    def run() -> _T:
        with open(ns_path(ns_spec)) as f:
            if ctypes.CDLL(None, use_errno=True).setns(f.fileno(), 0x40000000) != 0:  # CLONE_NEWNET
                raise OSError(ctypes.get_errno(), f"setns {ns_spec}")
        return fn()

    with ThreadPoolExecutor(1) as pool:  # a fresh thread, gone afterwards with its namespace
        return pool.submit(run).result()


def _nft(ns_spec: str, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["nsenter", f"--net={ns_path(ns_spec)}", "--", "nft", "-f", "-"], input=script,
                       capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise RuntimeError(f"nft in {ns_spec} failed: {r.stderr.strip()}")
    return r


def _nla(kind: int, payload: bytes, nested: bool = False) -> bytes:
    head = struct.pack("=HH", 4 + len(payload), kind | (0x8000 if nested else 0))
    return head + payload + b"\0" * (-len(payload) % 4)


def _attrs(buf: bytes) -> dict[int, bytes]:
    out, i = {}, 0
    while i + 4 <= len(buf):
        ln, kind = struct.unpack_from("=HH", buf, i)
        out[kind & 0x3FFF], i = buf[i + 4:i + ln], i + ((ln + 3) & ~3)
    return out


def _msg(mtype: int, flags: int, seq: int, family: int, payload: bytes, res_id: int = 0) -> bytes:
    body = struct.pack("!BBH", family, 0, res_id) + payload  # nfgenmsg
    return struct.pack("=IHHII", 16 + len(body), mtype, flags, seq, 0) + body


def _talk(sock: socket.socket, data: bytes, acks: int) -> list[bytes]:
    """Send; collect dump bodies until NLMSG_DONE, or ``acks`` acks; raise on a netlink error."""
    sock.send(data)
    bodies: list[bytes] = []
    while True:
        buf, i = sock.recv(1 << 20), 0
        while i < len(buf):
            ln, mtype = struct.unpack_from("=IH", buf, i)
            if mtype == 2:  # NLMSG_ERROR; error 0 is an ack
                if err := struct.unpack_from("=i", buf, i + 16)[0]:
                    raise OSError(-err, f"nf_tables: {os.strerror(-err)}")
                if (acks := acks - 1) <= 0:
                    return bodies
            elif mtype == 3:  # NLMSG_DONE
                return bodies
            else:
                bodies.append(buf[i + 20:i + ln])
            i += (ln + 3) & ~3


def _attach_queue(ns_spec: str, table: str, chain: str, queue: int) -> int:
    """Append an NFQUEUE target (queue, bypass) to every rule of an inet chain; returns how many."""
    nft, inet = 10, 1  # NFNL_SUBSYS_NFTABLES, NFPROTO_INET
    with in_netns(ns_spec, lambda: socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 12)) as sock:
        sock.bind((0, 0))  # a NETLINK_NETFILTER socket of that netns
        names = _nla(1, table.encode() + b"\0") + _nla(2, chain.encode() + b"\0")
        rules = _talk(sock, _msg(nft << 8 | 7, 0x301, 1, inet, names), 0)  # GETRULE, REQUEST|DUMP
        info = struct.pack("=HHH", queue, 1, 1) + b"\0\0"  # xt_NFQ_info_v3: num, total, BYPASS
        target = _nla(1, _nla(1, b"target\0") + _nla(2, _nla(1, b"NFQUEUE\0") + _nla(2, struct.pack("!I", 3))
                                                      + _nla(3, info), True), True)
        batch = _msg(0x10, 1, 2, 0, b"", nft)  # NFNL_MSG_BATCH_BEGIN
        for n, body in enumerate(rules):
            a = _attrs(body)
            rule = _nla(1, a[1]) + _nla(2, a[2]) + _nla(3, a[3]) + _nla(4, a[4] + target, True)
            batch += _msg(nft << 8 | 6, 0x105, 3 + n, inet, rule)  # NEWRULE, REQUEST|ACK|REPLACE (handle)
        if rules:
            _talk(sock, batch + _msg(0x11, 1, 3 + len(rules), 0, b"", nft), len(rules))  # ... BATCH_END
    return len(rules)


def install(ns_spec: str, table: str, queue: int, match: Sequence[str]) -> None:
    """Queue to ``queue`` the packets matched by any of ``match`` (nft expressions, a rule each).

    ``ns_spec`` is the bridge netns. An existing install under the same name is replaced.
    """
    mark = MARK_BASE | queue
    remove(ns_spec, table)
    subprocess.run(["nsenter", f"--net={ns_path(ns_spec)}", "--", "sysctl", "-qw",
                    "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"],
                   capture_output=True, timeout=30)  # the default; without it inet never sees bridged IP
    marks = "\n".join(f"        {m} counter meta mark set {mark:#x}" for m in match)
    hook = "type filter hook forward priority -10; policy accept;"
    _nft(ns_spec, f"table bridge {table} {{\n    chain fo_mark {{\n        {hook}\n{marks}\n    }}\n}}\n"
                  f"table inet {table} {{\n    chain fo_queue {{\n        {hook}\n"
                  f"        meta mark {mark:#x} counter\n    }}\n}}\n")
    try:
        if _attach_queue(ns_spec, table, "fo_queue", queue) != 1:
            raise RuntimeError(f"queue rule of {table} not found after creating it")
    except BaseException:
        remove(ns_spec, table)
        raise


def remove(ns_spec: str, table: str) -> bool:
    """Delete both tables; False when neither existed (heal is idempotent)."""
    return any([_nft(ns_spec, f"delete table {fam} {table}\n", check=False).returncode == 0
                for fam in ("inet", "bridge")])


def missing(ns_spec: str, table: str) -> list[str]:
    """What of an `install` is not in the kernel's ruleset (empty: all there).

    Both tables, the bridge table's marking rules, and the inet rule's NFQUEUE target (the
    part written over netlink, which `nft` alone could not have put there).
    """
    gone = []
    for family, want in (("bridge", "mangle"), ("inet", "NFQUEUE")):
        r = _nft_list(ns_spec, family, table)
        if r is None:
            gone.append(f"table {family} {table}")
        elif want not in r:
            gone.append(f"the {'marking rules' if family == 'bridge' else 'NFQUEUE target'} of table {family} {table}")
    return gone


def tables(ns_spec: str, table: str) -> list[str]:
    """The families (bridge, inet) in which a table of this name exists: empty once `remove`d."""
    return [family for family in ("bridge", "inet") if _nft_list(ns_spec, family, table) is not None]


def _nft_list(ns_spec: str, family: str, table: str) -> str | None:
    """`nft -j list table` output (its rules' expressions as JSON text), or None when there is no such table."""
    r = subprocess.run(["nsenter", f"--net={ns_path(ns_spec)}", "--", "nft", "-j", "list", "table", family, table],
                       capture_output=True, text=True, timeout=30)
    return r.stdout if r.returncode == 0 else None


def start_worker(ns_spec: str, queue: int, mode: str, *, preexec_fn: Callable[[], None] | None = None,
                 **params: Any) -> subprocess.Popen[bytes]:
    """Run the worker in the netns; return once it has bound the queue, else raise (worker gone).

    params: delay_ms, jitter_ms, rate, seed, fix_checksum=True. nsenter execs: Popen.pid is the
    worker's. Ready comes over a pipe (/proc's queue list cannot tell whose queue N is).
    """
    cmd = ["nsenter", f"--net={ns_path(ns_spec)}", "--", sys.executable, "-m", "harness.testbed.nfqueue",
           "--queue", str(queue), "--mode", mode]
    for k, v in params.items():
        if v is not None and v is not False:
            cmd += ["--" + k.replace("_", "-")] + ([] if v is True else [str(v)])
    err, (rd, wr) = tempfile.TemporaryFile(), os.pipe()
    with open(rd, "rb", buffering=0) as ready:
        try:
            proc = subprocess.Popen(cmd + ["--ready-fd", str(wr)], stdin=subprocess.DEVNULL,
                                    stdout=subprocess.DEVNULL, stderr=err, pass_fds=(wr,), start_new_session=True,
                                    preexec_fn=preexec_fn)
        finally:
            os.close(wr)
        ok = bool(select.select([ready], [], [], 15)[0]) and ready.read(1) == b"1"  # b"": it exited
    with err:
        if not ok:  # failed, or stuck for 15 s
            proc.kill()
            proc.wait()
            why = os.pread(err.fileno(), 8192, 0).decode()
            raise RuntimeError(f"nfqueue worker, queue {queue}, did not bind: {why}")
    return proc


def worker_alive(pid: int) -> bool:
    """Is the worker (by PID) still running? A zombie is not."""
    return _alive(pid)


def _alive(pid: int) -> bool:
    """Running? A zombie child of ours is reaped here; anyone else's zombie counts as gone."""
    try:
        return os.waitpid(pid, os.WNOHANG)[0] != pid
    except ChildProcessError:  # not our child: ask /proc
        try:
            with open(f"/proc/{pid}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] != "Z"
        except OSError:
            return False


def stop_worker(pid: int, timeout: float = 5.0) -> bool:
    """SIGTERM (the worker releases what it holds and unbinds), SIGKILL after ``timeout``.

    True when the worker ended on SIGTERM; False if it had to be killed or was already gone.
    """
    if not _alive(pid):
        return False
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError):  # died meanwhile
            os.kill(pid, sig)
        end = time.monotonic() + wait
        while _alive(pid) and time.monotonic() < end:
            time.sleep(0.01)
        if not _alive(pid):
            return sig == signal.SIGTERM
    return False


def _layout(d: bytes | bytearray) -> tuple[int, int, int] | None:
    """(L4 offset, protocol, data offset) of a whole IPv4/IPv6 packet; None if not one or cut short."""
    if len(d) >= 20 and d[0] >> 4 == 4:
        l4, total, proto = (d[0] & 15) * 4, int.from_bytes(d[2:4], "big"), d[9]
        if int.from_bytes(d[6:8], "big") & 0x3FFF:  # a fragment: no L4 header to trust
            return (l4, -1, l4) if total == len(d) else None
    elif len(d) >= 40 and d[0] >> 4 == 6:
        l4, total, proto = 40, 40 + int.from_bytes(d[4:6], "big"), d[6]
    else:
        return None
    if total != len(d) or l4 > len(d):
        return None
    hdr = 8 if proto == 17 else (d[l4 + 12] >> 4) * 4 if proto == 6 and len(d) > l4 + 12 else 0
    return l4, proto, min(l4 + hdr, len(d))


def fix_l4_checksum(d: bytearray, l4: int, proto: int) -> None:
    """Recompute the TCP/UDP checksum so that the corrupted data reaches the application."""
    pos = l4 + (6 if proto == 17 else 16)
    if proto not in (6, 17) or pos + 2 > len(d) or (proto == 17 and d[0] >> 4 == 4 and d[pos:pos + 2] == b"\0\0"):
        return  # not TCP/UDP, or IPv4 UDP sent without a checksum
    seg = len(d) - l4
    pseudo = (d[12:20] + struct.pack("!BBH", 0, proto, seg) if d[0] >> 4 == 4
              else d[8:40] + struct.pack("!IxxxB", seg, proto))
    d[pos:pos + 2] = b"\0\0"
    s = sum(memoryview(bytes(pseudo + d[l4:]) + b"\0" * (seg % 2)).cast("H"))  # native order is fine
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    struct.pack_into("=H", d, pos, (~s & 0xFFFF) or 0xFFFF)


class _Stop(Exception):
    """Raised from the callback, after the verdict, to get out of NetfilterQueue.run()."""


class Worker:
    """Binds the queue and gives verdicts. Holding a packet is just not giving its verdict yet
    (the kernel keeps it): each waits in a heap with its own deadline, never blocking the next.
    Per flow (addresses + protocol) deadlines never go backwards, so jitter does not reorder a
    flow (the mean delay grows a little when a flow's packets come closer than the jitter).
    """

    def __init__(self, a: argparse.Namespace) -> None:
        self.a, self.rng = a, random.Random(a.seed)
        self.held: list[tuple[float, int, Any]] = []
        self.last: dict[bytes, float] = {}
        self.seq, self.stop = 0, False

    def release(self, now: float) -> None:
        while self.held and self.held[0][0] <= now:
            heapq.heappop(self.held)[2].accept()

    def on_packet(self, pkt: Any) -> None:
        try:
            now = time.monotonic()
            self.release(now)  # also under a flood, when the select loop does not come round
            if self.a.rate < 1.0 and self.rng.random() >= self.a.rate:
                pkt.accept()
            elif self.a.mode == "delay":
                self.delay(pkt, now)
            else:
                self.corrupt(pkt)
        except Exception as e:  # never leave a packet without a verdict because of a bug
            print(f"nfqueue worker: {e!r}", file=sys.stderr)
            pkt.accept()
        if self.stop:  # leave q.run() even under a flood that never lets recv() say EAGAIN
            raise _Stop

    def delay(self, pkt: Any, now: float) -> None:
        d = pkt.get_payload()
        key = d[12:20] + d[9:10] if d[:1] and d[0] >> 4 == 4 else d[8:40] + d[6:7]
        due = now + max(0.0, self.a.delay_ms + self.rng.uniform(-self.a.jitter_ms, self.a.jitter_ms)) / 1000
        due = max(due, self.last.get(key, 0.0))
        if len(self.last) > 4096:
            self.last = {k: v for k, v in self.last.items() if v > now}
        self.last[key], self.seq = due, self.seq + 1  # seq: ties never compare packets
        heapq.heappush(self.held, (due, self.seq, pkt))

    def corrupt(self, pkt: Any) -> None:
        """Flip one bit of the L4 data (of the L4 header if there is no data); never truncate."""
        d = bytearray(pkt.get_payload())
        lay = _layout(d)  # None: not IP, or longer than the copy range
        start = len(d) if lay is None else lay[2] if lay[2] < len(d) or self.a.fix_checksum else lay[0]
        if lay is not None and start < len(d):
            d[self.rng.randrange(start, len(d))] ^= 1 << self.rng.randrange(8)
            if self.a.fix_checksum:
                fix_l4_checksum(d, lay[0], lay[1])
            pkt.set_payload(bytes(d))
        pkt.accept()

    def run(self) -> None:
        from netfilterqueue import NetfilterQueue  # only the worker needs the C extension

        rd, wr = os.pipe()
        os.set_blocking(wr, False)
        signal.set_wakeup_fd(wr)  # a signal wakes select()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: setattr(self, "stop", True))
        q = NetfilterQueue()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # rcvbuf size notice: not an error, print nothing
            q.bind(self.a.queue, self.on_packet, max_len=16384, range=64 if self.a.mode == "delay" else 0xFFFF)
        if self.a.ready_fd is not None:
            os.write(self.a.ready_fd, b"1")
            os.close(self.a.ready_fd)
        fd = q.get_fd()
        try:
            while not self.stop:
                timeout = max(0.0, self.held[0][0] - time.monotonic()) if self.held else None
                ready = select.select([fd, rd], [], [], timeout)[0]  # rd readable: SIGTERM/INT came, stop is set
                if fd in ready:
                    try:
                        q.run(block=False)
                    except _Stop:
                        break
                self.release(time.monotonic())
        finally:
            self.release(float("inf"))  # heal: whatever is still held goes out now
            q.unbind()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.testbed.nfqueue", description=__doc__.split("\n")[0])
    p.add_argument("--queue", type=int, required=True)
    p.add_argument("--mode", choices=("delay", "corrupt"), required=True)
    p.add_argument("--delay-ms", type=float, default=0.0)
    p.add_argument("--jitter-ms", type=float, default=0.0, help="uniform in [-J, +J], never below 0")
    p.add_argument("--rate", type=float, default=1.0, help="fraction of the queued packets affected")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--fix-checksum", action="store_true", help="corrupt: recompute TCP/UDP checksums, so the "
                   "application gets bad data (default, like netem: the receiving kernel drops it)")
    p.add_argument("--ready-fd", type=int, default=None, help="write '1' here once the queue is bound")
    Worker(p.parse_args(argv)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
