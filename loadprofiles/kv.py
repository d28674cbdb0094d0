"""Locust profile for the kv service: each user PUTs a unique key and GETs it back; every request is logged."""

# Every request becomes one JSON line shaped like harness.timeline.Request, so the checkers
# can find acknowledged writes (lost-write check) and failed requests without locust's stats.
#
# Environment:
#   FALLOVER_LOAD_LOG      JSONL request log (required)
#   FALLOVER_RUN_ID        prefix of every key (default: random), so runs never collide
#   FALLOVER_LOAD_WAIT     pacing of the PUT+GET cycles: "tput:20" (default: 20 cycles/s per user,
#                          so 10 users make ~400 req/s), "0.05" (seconds between), "0.01-0.05",
#                          or "0" (flat out: ~1,600 req/s here, and users spin on instant errors)
#   FALLOVER_LOAD_TIMEOUT  connect and read timeout in seconds (default 2)
#   FALLOVER_LOAD_GATE     a file: every user waits in on_start until it exists (so locust can be
#                          started, its imports and spawning paid, before the recording begins). If it
#                          holds JSON {"log": PATH, "run_id": ID}, the requests go to that log with that
#                          key prefix instead (a locust spawned before its case's directory existed)
#   FALLOVER_LOAD_DONE     a file created once every user has stopped and the log is flushed: nothing
#                          is written to the log after it (locust's stats and exit take 0.1-0.5 s more)

from __future__ import annotations

import itertools
import json
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import gevent
from locust import FastHttpUser, between, constant, constant_throughput, events, task

RUN_ID = os.environ.get("FALLOVER_RUN_ID") or secrets.token_hex(4)
TIMEOUT = float(os.environ.get("FALLOVER_LOAD_TIMEOUT") or 2.0)
LOG_PATH = os.environ.get("FALLOVER_LOAD_LOG")
if not LOG_PATH:
    raise SystemExit("loadprofiles/kv.py: FALLOVER_LOAD_LOG (the request log path) is not set")

# Line-buffered: one write() per request (a few µs), so a SIGKILLed locust loses at most a
# torn last line, which load_requests skips.
_log = open(LOG_PATH, "a", buffering=1, encoding="utf-8")
_user_ids = itertools.count(1)
GATE = os.environ.get("FALLOVER_LOAD_GATE") or None
_gate_open = GATE is None


def _wait_for_gate() -> None:
    """Until FALLOVER_LOAD_GATE exists (latched: users spawned later go straight through); then the case the
    gate names, if it names one. No greenlet switch between the look and the latch: one user takes the case."""
    global _gate_open, _log, RUN_ID
    while not _gate_open:
        if not os.path.exists(GATE or ""):
            gevent.sleep(0.02)
            continue
        with open(GATE or "", encoding="utf-8") as f:
            named = f.read().strip()
        if named:  # written whole before it appeared (the harness renames it into place)
            case = json.loads(named)
            _log.close()
            if os.path.exists(LOG_PATH or ""):  # the placeholder it started with: empty, no evidence
                os.unlink(LOG_PATH or "")
            _log = open(case["log"], "a", buffering=1, encoding="utf-8")
            RUN_ID = case["run_id"]
        _gate_open = True


def _wait_time(spec: str) -> Callable[..., float]:
    """Parse FALLOVER_LOAD_WAIT; a bad value stops locust at import with the reason."""
    try:
        if spec.startswith("tput:"):
            return constant_throughput(float(spec[5:]))
        if "-" in spec:
            lo, hi = spec.split("-", 1)
            return between(float(lo), float(hi))
        return constant(float(spec))
    except ValueError:
        raise SystemExit(f"loadprofiles/kv.py: bad FALLOVER_LOAD_WAIT={spec!r}") from None


@events.request.add_listener
def _log_request(request_type: str, name: str, response_time: float, response_length: int,
                 response: Any = None, context: dict[str, Any] | None = None,
                 exception: BaseException | None = None, start_time: float | None = None,
                 **_: Any) -> None:
    """Write the request as a timeline.Request line; mono = end - response_time = request start."""
    end = time.monotonic()
    ctx = context or {}
    if "kind" not in ctx:
        return  # not one of ours
    status = getattr(response, "status_code", None) or None  # 0 means "no response" in geventhttpclient
    headers = getattr(response, "headers", None)
    node = headers.get("X-Fallover-Node") if headers else None
    rt = response_time / 1000.0
    ok = exception is None and status is not None and 200 <= status < 300
    error = None if ok else (_describe(exception) if exception is not None else f"HTTP {status}")
    if not ok and status is not None:
        error = f"{error}: {_body(response)}"  # the service names the cause (EIO, ENOSPC ...)
    rec = {"mono": end - rt, "wall": start_time if start_time is not None else time.time() - rt,
           "kind": ctx["kind"], "ok": ok, "latency_s": round(rt, 6), "key": ctx["key"],
           "value": ctx["value"], "node": node, "status": status, "error": error}
    _log.write(json.dumps(rec) + "\n")


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"[:300]


def _body(response: Any) -> str:
    try:
        return str(response.text or "").strip()[:120]
    except Exception:  # a body that never arrived; the status line says enough
        return ""


@events.quitting.add_listener
def _close_log(**_: Any) -> None:
    _log.flush()


@events.test_stop.add_listener
def _users_stopped(**_: Any) -> None:
    """Fired after every user greenlet has stopped: the log is complete, whatever locust does before it exits."""
    _log.flush()
    done = os.environ.get("FALLOVER_LOAD_DONE")
    if done:
        open(done, "a").close()


class KvUser(FastHttpUser):
    """One client writing fresh keys; it carries on after any error, as a real client would retry."""

    # Paced, not flat out: a refused connection fails in microseconds, and unpaced users would
    # then burn the CPU the cluster needs to fail over.
    wait_time = _wait_time(os.environ.get("FALLOVER_LOAD_WAIT") or "tput:20")
    # Short timeouts: a request to a dead or frozen node must fail in seconds, not minutes,
    # so the log shows the outage and users come back as soon as the service does.
    connection_timeout = TIMEOUT
    network_timeout = TIMEOUT
    max_retries = 0  # a silent retry would hide the failure we are here to measure

    def on_start(self) -> None:
        _wait_for_gate()
        self.prefix = f"{RUN_ID}-{next(_user_ids)}"
        self.n = 0

    @task
    def put_then_get(self) -> None:
        self.n += 1
        key = f"{self.prefix}-{self.n}"
        value = secrets.token_hex(16)
        # name= groups every key under one stats entry; unique names would grow locust's
        # stats table by two rows per request.
        with self.client.put(f"/kv/{key}", data=value, name="/kv/[key] put", catch_response=True,
                             context={"kind": "put", "key": key, "value": value}) as r:
            acked = 200 <= (r.status_code or 0) < 300  # locust marks the rest failed itself
        if not acked:
            return  # not acknowledged: nothing to read back
        with self.client.get(f"/kv/{key}", name="/kv/[key] get", catch_response=True,
                             context={"kind": "get", "key": key, "value": value}) as r:
            if r.status_code == 200 and r.text != value:
                r.failure(f"value mismatch: got {r.text[:40]!r}")
