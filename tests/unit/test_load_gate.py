"""Gated recorders (the runner spawns locust, the probe and the ARP watch before the reset, to hide their
start): nothing is sent or recorded before the gate opens, and one stopped before its gate exits cleanly.

The real locust, probe and ARP watch (on loopback) against the sample application; no testbed.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.arpwatch import STARTED, ArpWatch
from harness.load import Load
from harness.probe import Probe, load_samples
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


def _host() -> SimpleNamespace:
    """A testbed whose client is this host: its processes run unwrapped."""
    client = SimpleNamespace(wrap=lambda argv: list(argv))
    return SimpleNamespace(client=lambda: client)


def test_a_gated_load_sends_nothing_until_its_gate_opens(kv: str, tmp_path: Path) -> None:
    tb = _host()
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


def test_stop_sending_returns_once_the_log_is_complete(kv: str, tmp_path: Path) -> None:
    """The read-back starts when every locust user has stopped, not after locust's statistics and exit:
    nothing may be written to the log after `stop_sending` returns."""
    log = tmp_path / "load.jsonl"
    load = Load(_host(), log=log, host=kv, users=4, spawn_rate=100, run_id="done")  # type: ignore[arg-type]
    try:
        load.start()
        time.sleep(0.5)
        load.stop_sending()
        assert load.done.exists() or not load.running()
        complete = log.read_bytes()
    finally:
        assert load.stop() == 0  # and locust still exits on its own, cleanly
    assert log.read_bytes() == complete, "locust wrote to its log after its users had stopped"
    assert load_requests(log) and not load.done.exists()  # a control file, not evidence


def _held(proc: Probe | ArpWatch, out: Path) -> float:
    """Let a gated recorder import and wait at its gate for a while: it must be running and have written nothing."""
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        assert proc.running(), proc.stdout_log.read_text()
        time.sleep(0.1)
    assert out.read_text() == "", f"a gated {proc.what} recorded before its gate opened"
    return time.monotonic()


def test_a_gated_probe_sends_nothing_until_its_gate_opens(kv: str, tmp_path: Path) -> None:
    out = tmp_path / "probe.jsonl"
    probe = Probe(_host(), url=f"{kv}/health", out=out, gated=True)  # type: ignore[arg-type]
    try:
        probe.spawn()
        t_open = _held(probe, out)
        probe.open_gate()
        probe.wait_ready()
        time.sleep(0.3)
    finally:
        assert probe.stop() == 0
    samples = load_samples(out)
    assert samples and all(s.ok and s.node == "nodeX" for s in samples), samples[:3]
    assert min(s.mono for s in samples) >= t_open  # its first request went out when the gate opened
    assert not (tmp_path / "probe.jsonl.gate").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="the ARP watch's raw socket needs root")
def test_a_gated_arp_watch_opens_its_socket_when_its_gate_opens(tmp_path: Path) -> None:
    out = tmp_path / "arp.jsonl"
    arp = ArpWatch(_host(), iface="lo", ips=["127.0.0.1"], out=out, gated=True)  # type: ignore[arg-type]
    try:
        arp.spawn()
        t_open = _held(arp, out)
        arp.open_gate()
        arp.wait_ready()
    finally:
        assert arp.stop() == 0
    first = json.loads(out.read_text().splitlines()[0])
    assert first["kind"] == STARTED and first["mono"] >= t_open


@pytest.mark.parametrize("kind", ["probe", "arp"])
def test_a_recorder_stopped_before_its_gate_opens_exits_on_its_sigterm(kind: str, tmp_path: Path) -> None:
    """The reset failed: the prespawned recorders are stopped unopened. Each must end on SIGTERM (exit 0),
    not wait at its gate until the SIGKILL after the grace period (-9), and leave its output empty."""
    out = tmp_path / f"{kind}.jsonl"
    tb: Any = _host()
    proc: Probe | ArpWatch = (Probe(tb, url="http://127.0.0.1:9/health", out=out, gated=True) if kind == "probe"
                              else ArpWatch(tb, iface="lo", ips=["127.0.0.1"], out=out, gated=True))
    proc.spawn()
    _held(proc, out)
    assert proc.stop(grace=5) == 0, proc.stdout_log.read_text()
    assert out.read_text() == ""


@pytest.mark.skipif(os.geteuid() != 0, reason="a network namespace of its own needs root")
def test_a_process_spawned_before_the_client_namespace_was_rebuilt_is_stale(tmp_path: Path) -> None:
    """A reset that rebuilt a crashed testbed made a new client namespace: what was prespawned into the old
    one (gated recorders, locust) must be replaced, or it would send into a network that is gone."""
    other = subprocess.Popen(["unshare", "--net", "sleep", "30"])  # "the rebuilt client namespace"
    try:
        netns = f"/proc/{other.pid}/ns/net"
        for _ in range(100):
            if os.stat(netns).st_ino != os.stat("/proc/self/ns/net").st_ino:
                break
            time.sleep(0.05)  # unshare has not switched yet
        client = SimpleNamespace(wrap=lambda argv: list(argv), netns_path="/proc/self/ns/net")
        tb: Any = SimpleNamespace(client=lambda: client)
        proc = Probe(tb, url="http://127.0.0.1:9/health", out=tmp_path / "probe.jsonl", gated=True)
        proc.spawn()
        try:
            assert not proc.stale()  # spawned into the client's namespace
            client.netns_path = netns
            assert proc.stale()
        finally:
            proc.stop()
    finally:
        other.kill()
        other.wait()


def test_a_locust_spawned_ahead_takes_its_case_when_its_gate_opens(kv: str, tmp_path: Path) -> None:
    """Spawned before its case's directory existed (at the end of the previous case), it is given the case's
    log and key prefix at the gate: every request lands there, none in the placeholder, and its output moves."""
    ahead = tmp_path / ".load-ahead" / "load-1.jsonl"
    load = Load(_host(), log=ahead, host=kv, users=2, spawn_rate=100, gated=True)  # type: ignore[arg-type]
    case = tmp_path / "case-a" / "load.jsonl"
    try:
        load.spawn()
        load.adopt(case, "case-a")  # as a case that comes at once does: before locust has opened its placeholder
        time.sleep(1.5)  # importing, then its users wait at the gate
        load.open_gate()
        load.wait_ready()
        time.sleep(0.3)
    finally:
        assert load.stop() == 0
    requests = load_requests(case)
    assert requests and all(r.ok for r in requests), requests[:3]
    assert {r.key.split("-")[0] + "-" + r.key.split("-")[1] for r in requests if r.key} == {"case-a"}
    assert not ahead.exists() and (tmp_path / "case-a" / "load.jsonl.stdout").exists()
    assert sorted(p.name for p in ahead.parent.iterdir()) == []  # gate and done file: control files, removed
