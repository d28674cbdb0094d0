"""Read back every acknowledged write of a load log and append one `verify` record per key to it."""

# Run in the client namespace (`python -m harness.verify --log LOG --url URL`), after the
# cluster has recovered. Standard library only and keep-alive connections from a small
# thread pool: 10,000 keys take a few seconds, not minutes.

from __future__ import annotations

import argparse
import http.client
import json
import os
import queue
import signal
import sys
import threading
import time
import urllib.parse
from dataclasses import asdict
from pathlib import Path

from harness.load import wait_for_gate
from harness.timeline import Request, load_requests

RETRIES = 3  # reads are idempotent: a reset while the service settles is not a lost write


def acknowledged(requests: list[Request]) -> dict[str, str]:
    """key -> value of the last acknowledged (ok) PUT of each key."""
    out: dict[str, str] = {}
    for r in requests:  # load_requests sorts by mono, so the last ack wins
        if r.kind == "put" and r.ok and r.key is not None and r.value is not None:
            out[r.key] = r.value
    return out


class Reader:
    """One keep-alive HTTP connection, reopened after any error."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = u.hostname or "", u.port or 80, timeout
        self.base = u.path.rstrip("/")
        self.conn: http.client.HTTPConnection | None = None

    def get(self, key: str) -> tuple[int, bytes, str | None]:
        if self.conn is None:
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
        try:
            self.conn.request("GET", f"{self.base}/kv/{key}")
            resp = self.conn.getresponse()
            return resp.status, resp.read(), resp.getheader("X-Fallover-Node")
        except BaseException:
            self.conn.close()
            self.conn = None
            raise


def check(reader: Reader, key: str, value: str) -> Request:
    """GET one key; ok only for 200 with the acknowledged value. Retries transport errors and 5xx."""
    error: str | None = None
    status: int | None = None
    node: str | None = None
    for attempt in range(RETRIES):
        mono, wall = time.monotonic(), time.time()
        try:
            status, body, node = reader.get(key)
        except (OSError, http.client.HTTPException) as e:
            status, node, error = None, None, f"{type(e).__name__}: {e}"
        else:
            latency = time.monotonic() - mono
            if status == 200:
                got = body.decode(errors="replace")
                ok = got == value
                error = None if ok else f"value mismatch: got {got[:40]!r}"
                return Request(mono, wall, "verify", ok, round(latency, 6), key, value, node, status, error)
            error = "missing (404)" if status == 404 else f"HTTP {status}: {body[:80].decode(errors='replace')}"
            if status < 500:
                return Request(mono, wall, "verify", False, round(latency, 6), key, value, node, status, error)
        if attempt < RETRIES - 1:
            time.sleep(0.2)
    return Request(mono, wall, "verify", False, round(time.monotonic() - mono, 6), key, value, node, status, error)


def verify_log(log: Path, url: str, *, concurrency: int = 16, timeout: float = 2.0) -> list[Request]:
    """Check every acknowledged key of `log` and append the verify records to it (O_APPEND, whole lines)."""
    todo: queue.SimpleQueue[tuple[str, str]] = queue.SimpleQueue()
    keys = acknowledged(load_requests(log))
    for item in keys.items():
        todo.put(item)
    results: list[Request] = []
    lock = threading.Lock()
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)

    def worker() -> None:
        reader = Reader(url, timeout)
        batch: list[Request] = []
        while True:
            try:
                key, value = todo.get_nowait()
            except queue.Empty:
                break
            batch.append(check(reader, key, value))
            if len(batch) >= 200:
                flush(batch)
                batch = []
        flush(batch)

    def flush(batch: list[Request]) -> None:
        if not batch:
            return
        data = "".join(json.dumps(asdict(r)) + "\n" for r in batch).encode()
        with lock:
            os.write(fd, data)
            results.extend(batch)

    try:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(max(1, min(concurrency, len(keys))))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        os.close(fd)
    return results


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m harness.verify", description=__doc__)
    p.add_argument("--log", type=Path, required=True, help="the load log (JSONL of timeline.Request)")
    p.add_argument("--url", required=True, help="service base URL, e.g. http://10.77.1.100:8080")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--timeout", type=float, default=2.0, help="per-request timeout in seconds")
    p.add_argument("--gate", help="spawned ahead: read nothing until this file exists (exit 0 on SIGTERM before)")
    args = p.parse_args(argv)
    if args.gate:
        stopped: list[int] = []
        signal.signal(signal.SIGTERM, lambda signum, frame: stopped.append(signum))
        wait_for_gate(args.gate, lambda: bool(stopped))
        if stopped:
            return 0
    if not args.log.is_file():
        print(f"harness.verify: {args.log}: no such load log", file=sys.stderr)
        return 2
    t0 = time.monotonic()
    res = verify_log(args.log, args.url, concurrency=args.concurrency, timeout=args.timeout)
    bad = [r for r in res if not r.ok]
    print(f"verified {len(res)} acknowledged keys in {time.monotonic() - t0:.2f}s: {len(res) - len(bad)} ok, "
          f"{len(bad)} bad" + (f" (first: {bad[0].key}: {bad[0].error})" if bad else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
