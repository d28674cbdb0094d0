"""The alert agents the testbeds install: fallover-alert (embedded, and inside the VM forwarder) and the VM
testbed's fallover-alert-forward, run the way Pacemaker runs an alert agent (CRM_alert_* variables)."""

import json
import os
import runpy
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ALERT = ROOT / "harness" / "testbed" / "assets" / "fallover-alert"
FORWARD = ROOT / "vagrant" / "fallover-alert-forward"
PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.skipif(not os.path.exists(PYTHON), reason="the agents run with /usr/bin/python3")

EVENT = {"kind": "resource", "node": "node1", "rsc": "app-app", "task": "monitor", "rc": "1",
         "desc": 'not running: "pid 12"\\ gone\n', "interval": "3000", "exec_time": "", "recipient": ""}


def run(agent: Path, recipient: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CRM_alert_")}
    env.update({"CRM_alert_" + k: v for k, v in {**EVENT, **extra}.items()})
    env["CRM_alert_recipient"] = str(recipient)
    return subprocess.run([str(agent)], env=env, capture_output=True, text=True, timeout=60)


def test_alert_appends_one_json_line_per_event(tmp_path: Path) -> None:
    log = tmp_path / "notifications.log"
    assert run(ALERT, log).returncode == 0
    assert run(ALERT, log, kind="node", desc="lost").returncode == 0
    first, second = [json.loads(x) for x in log.read_text().splitlines()]
    assert first["desc"] == EVENT["desc"] and first["rsc"] == "app-app" and first["interval"] == "3000"
    assert "exec_time" not in first  # an empty variable is left out
    assert first["recipient"] == str(log) and first["from"] == os.uname().nodename
    assert isinstance(first["wall"], float)
    assert (second["kind"], second["desc"]) == ("node", "lost")


@pytest.mark.parametrize("text", ["plain", 'q"uote', "back\\slash", "new\nline\t\r\b\f", "\x00\x1f\x7f",
                                  "é ü 日本", "\U0001f600", "bad byte \udcff", ""])
def test_the_line_is_what_json_dumps_writes(text: str) -> None:
    agent = runpy.run_path(str(ALERT), run_name="fallover_alert")
    event = {"desc": text, "wall": 1796127599.1353736, "kind": "resource"}
    assert agent["line"](event) == (json.dumps(event, sort_keys=True) + "\n").encode()


@pytest.mark.parametrize("agent", [ALERT, FORWARD], ids=["alert", "forward"])
def test_an_alert_imports_nothing_the_interpreter_has_not_loaded(agent: Path, tmp_path: Path) -> None:
    """Pacemaker runs it once per event on emulated guests, beside the operations being timed (module docs)."""
    if agent == FORWARD:
        agent = install_forwarder(tmp_path, "127.0.0.1:9")
    r = subprocess.run([PYTHON, "-S", "-X", "importtime", str(agent)], capture_output=True, text=True, timeout=60,
                       env={"CRM_alert_recipient": str(tmp_path / "n.log"), "CRM_alert_kind": "node"})
    assert r.returncode == 0, r.stderr
    imported = {line.split("|")[-1].strip() for line in r.stderr.splitlines() if line.startswith("import time:")}
    assert not imported & {"json", "re", "socket", "enum", "tempfile", "importlib.util"}, sorted(imported)


def install_forwarder(d: Path, collector: str) -> Path:
    """As provision.sh installs it: the forwarder, the real agent beside it, the collector's address."""
    shutil.copy(FORWARD, d / "fallover-alert")
    shutil.copy(ALERT, d / "fallover-alert.real")
    (d / "collector").write_text(collector + "\n")
    return d / "fallover-alert"


def test_forwarder_keeps_the_line_and_sends_it_to_the_collector(tmp_path: Path) -> None:
    got: list[bytes] = []
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()

        def collect() -> None:
            conn, _ = srv.accept()
            with conn:
                data = b""
                while chunk := conn.recv(4096):
                    data += chunk
                got.append(data)

        t = threading.Thread(target=collect, daemon=True)
        t.start()
        agent = install_forwarder(tmp_path, "127.0.0.1:%d" % srv.getsockname()[1])
        r = run(agent, tmp_path / "n.log")
        t.join(30)
    assert r.returncode == 0, r.stderr
    kept = (tmp_path / "n.log").read_bytes()
    assert got == [kept] and json.loads(kept)["desc"] == EVENT["desc"]
    assert json.loads(kept)["recipient"] == str(tmp_path / "n.log")


def test_forwarder_without_a_collector_still_keeps_the_line(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on: refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = run(install_forwarder(tmp_path, "127.0.0.1:%d" % port), tmp_path / "n.log")
    assert r.returncode == 0, r.stderr
    assert json.loads((tmp_path / "n.log").read_text())["node"] == "node1"


def test_forwarder_send_tries_three_times(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fwd = runpy.run_path(str(install_forwarder(tmp_path, "x:1")), run_name="fallover_forward")
    tries = []

    class Refusing:
        def __init__(self, *_: object) -> None:
            tries.append(1)

        def settimeout(self, _: float) -> None: ...

        def connect(self, _: object) -> None:
            raise ConnectionRefusedError

        def close(self) -> None: ...

    monkeypatch.setattr(fwd["_socket"], "socket", Refusing)
    assert fwd["send"]("127.0.0.1:7700\n", b"x\n") is False and len(tries) == 3
