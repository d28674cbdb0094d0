"""A gated load (the runner spawns locust before the reset, to hide its start): nothing is sent before the gate opens.

The real locust and the real kv profile against the sample application on loopback; no testbed.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

from harness.load import Load
from harness.timeline import load_requests

KVAPP = Path(__file__).resolve().parents[2] / "harness" / "agents" / "kvapp.py"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def kv(tmp_path: Path):  # type: ignore[no-untyped-def]
    port = _free_port()
    data = tmp_path / "data"
    data.mkdir()
    app = subprocess.Popen([sys.executable, str(KVAPP), "--data-dir", str(data), "--port", str(port),
                            "--bind", "127.0.0.1", "--node", "nodeX"], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline and app.poll() is None, "kvapp did not start"
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        app.terminate()
        app.wait(10)


def test_a_gated_load_sends_nothing_until_its_gate_opens(kv: str, tmp_path: Path) -> None:
    client = SimpleNamespace(wrap=lambda argv: list(argv))
    tb = SimpleNamespace(client=lambda: client)
    log = tmp_path / "load.jsonl"
    load = Load(tb, log=log, host=kv, users=2, spawn_rate=100, run_id="gated", gated=True)  # type: ignore[arg-type]
    try:
        load.spawn()
        # long enough for locust to import and spawn both users: they must be waiting at the gate
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline:
            assert load.running(), (tmp_path / "load.jsonl.stdout").read_text()
            time.sleep(0.1)
        assert log.read_text() == "", "a gated load sent requests before its gate opened"
        t_open = time.monotonic()
        load.open_gate()
        load.wait_ready()
        time.sleep(0.5)
    finally:
        load.stop()
    requests = load_requests(log)
    assert requests and all(r.ok for r in requests), requests[:3]
    assert min(r.mono for r in requests) >= t_open  # nothing was sent before the gate
    assert {r.key.split("-")[0] for r in requests if r.key} == {"gated"}
    assert not (tmp_path / "load.jsonl.gate").exists()  # a control file, not left in the evidence
