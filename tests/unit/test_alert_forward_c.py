"""The VM guests' compiled alert agent (vagrant/fallover-alert-forward.c) writes the Python agent's line, byte
for byte but for its own clock's `wall`, keeps it in the log Pacemaker names, and sends it to the collector."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from harness.testbed import alertagent
from harness.testbed.layout import ASSETS

pytestmark = pytest.mark.skipif(alertagent.compiler() is None, reason="no C compiler")
PY_AGENT = ASSETS / "fallover-alert"

EVENTS = [
    {b"CRM_alert_kind": b"node", b"CRM_alert_node": b"node1", b"CRM_alert_desc": b"lost", b"CRM_alert_nodeid": b"1"},
    {b"CRM_alert_kind": b"resource", b"CRM_alert_rsc": b"app-fs", b"CRM_alert_task": b"monitor",
     b"CRM_alert_interval": b"5000", b"CRM_alert_rc": b"7", b"CRM_alert_target_rc": b"0", b"CRM_alert_status": b"0",
     b"CRM_alert_desc": b'not running: "quote" back\\slash\ttab\nnewline\x01\x7f'},
    {b"CRM_alert_kind": b"fencing", b"CRM_alert_node": b"node2",
     b"CRM_alert_desc": "Operation off of node2: OK é € 😀".encode()},
    {b"CRM_alert_kind": b"attribute", b"CRM_alert_attribute_name": b"reach-service",
     b"CRM_alert_attribute_value": b"", b"CRM_alert_desc": b"bad \xff \xc3( \xed\xa0\x80 \xe2\x82 end"},
]


@pytest.fixture(scope="module")
def agent(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return alertagent.build(tmp_path_factory.mktemp("agent"))


def run(argv: list[str], event: dict[bytes, bytes], log: Path) -> str:
    env = {k: v for k, v in os.environb.items() if not k.startswith(b"CRM_alert_")}
    env.update(event)
    env[b"CRM_alert_recipient"] = str(log).encode()
    subprocess.run(argv, env=env, check=True, timeout=30)
    return log.read_text()


def without_wall(text: str) -> str:
    return re.sub(r', "wall": [0-9.e+]+', "", text)


@pytest.mark.parametrize("event", EVENTS, ids=["node", "resource", "unicode", "undecodable"])
def test_the_compiled_agent_writes_the_python_agents_line(agent: Path, tmp_path: Path,
                                                          event: dict[bytes, bytes]) -> None:
    (agent.parent / "collector").write_text("127.0.0.1:9\n")  # nothing listens: sending fails fast
    log = tmp_path / "notifications.log"  # one recipient for both: it is in the line
    c = run([str(agent)], event, log)
    log.unlink()
    py = run([sys.executable, "-S", str(PY_AGENT)], event, log)
    assert without_wall(c) == without_wall(py)
    assert c.count("\n") == 1 and json.loads(c)["wall"] > 1e9


def test_the_line_reaches_the_collector(agent: Path, tmp_path: Path) -> None:
    server = socket.create_server(("127.0.0.1", 0))
    got: list[bytes] = []

    def accept() -> None:
        conn, _ = server.accept()
        with conn:
            while chunk := conn.recv(65536):
                got.append(chunk)

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    (agent.parent / "collector").write_text(f"127.0.0.1:{server.getsockname()[1]}\n")
    kept = run([str(agent)], EVENTS[0], tmp_path / "c.log")
    t.join(timeout=10)
    server.close()
    assert b"".join(got).decode() == kept


def test_without_a_compiler_the_python_forwarder_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alertagent, "compiler", lambda: None)
    assert alertagent.forwarder(tmp_path) == alertagent.FALLBACK and alertagent.FALLBACK.exists()


def test_a_build_is_reused_until_the_source_changes(tmp_path: Path) -> None:
    src = tmp_path / "a.c"
    src.write_text(alertagent.SOURCE.read_text())
    first = alertagent.build(tmp_path / "out", src)
    assert alertagent.build(tmp_path / "out", src) == first
    src.write_text(src.read_text() + "\n/* changed */\n")
    second = alertagent.build(tmp_path / "out", src)
    assert second != first and not first.exists() and second.exists()
