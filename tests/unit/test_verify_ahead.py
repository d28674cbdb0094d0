"""The read-back spawned ahead (load.verify_ahead): real processes against a local key-value stand-in.

Why: it starts while the cluster still recovers, so it must read nothing before its gate opens (the
load is still writing), read every acknowledged key once it does, and leave nothing behind either way.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.load import verify, verify_ahead

STORE = {"k1": "v1", "k2": "v2"}


class _KV(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 — http.server's name
        value = STORE.get(self.path.rsplit("/", 1)[-1])
        body = (value or "").encode()
        self.send_response(200 if value is not None else 404)
        self.send_header("X-Fallover-Node", "node1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def url() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _KV)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def testbed() -> SimpleNamespace:
    client = SimpleNamespace(wrap=lambda argv: list(argv))  # the client namespace: here, this one
    return SimpleNamespace(client=lambda: client)


def _log(tmp_path: Path) -> Path:
    log = tmp_path / "load.jsonl"
    acks = [{"mono": i, "wall": i, "kind": "put", "ok": True, "latency_s": 0.01, "key": k, "value": v,
             "node": "node1", "status": 200, "error": None} for i, (k, v) in enumerate(STORE.items())]
    log.write_text("".join(json.dumps(a) + "\n" for a in acks))
    return log


def _verified(log: Path) -> dict[str, bool]:
    return {r["key"]: r["ok"] for r in map(json.loads, log.read_text().splitlines()) if r["kind"] == "verify"}


def test_it_waits_at_its_gate_then_reads_every_key(tmp_path: Path, url: str, testbed: SimpleNamespace) -> None:
    log = _log(tmp_path)
    ahead = verify_ahead(testbed, log, url)  # type: ignore[arg-type]
    assert ahead is not None
    try:
        with pytest.raises(Exception):  # noqa: B017 — WaitTimeout: still at the gate
            ahead.wait(0.5)
        assert _verified(log) == {}
        verify(testbed, log, url, ahead=ahead)  # type: ignore[arg-type]
    finally:
        ahead.stop()
    assert _verified(log) == {"k1": True, "k2": True}
    assert "verified 2 acknowledged keys" in (tmp_path / "verify.txt").read_text()
    assert not (tmp_path / "verify.gate").exists(), "the gate is a control file, removed"


def test_stopped_at_its_gate_it_reads_nothing_and_exits_cleanly(tmp_path: Path, url: str,
                                                                testbed: SimpleNamespace) -> None:
    log = _log(tmp_path)
    ahead = verify_ahead(testbed, log, url)  # type: ignore[arg-type]
    assert ahead is not None
    assert ahead.stop() in (0, -15)  # 0 from its handler at the gate; -15 if it was still importing
    assert _verified(log) == {} and not ahead.running()
    assert not (tmp_path / "verify.gate").exists()


def test_a_client_that_cannot_run_a_background_process_gets_none(tmp_path: Path) -> None:
    tb = SimpleNamespace(client=lambda: SimpleNamespace())
    assert verify_ahead(tb, _log(tmp_path), "http://127.0.0.1:9") is None  # type: ignore[arg-type]
