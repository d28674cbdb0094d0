"""Ctrl-C during `fallover up` of the VM testbed: vagrant is stopped with everything it started, then the
half-built testbed is removed, and a second Ctrl-C does not cut that removal short.

`run_vagrant` runs a stand-in for vagrant (a python script that prints vagrant's milestones and starts a
child of its own, as vagrant starts ssh); only processes this test started are signalled.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pytest

from harness import cli
from harness.errors import TestbedError
from harness.interrupt import sigterm
from harness.testbed import vagrantrun
from harness.testbed.vagrant import fenced_since
from harness.testbed.vagrantrun import run_vagrant

VAGRANT_YAML = Path(__file__).resolve().parents[2] / "testbeds" / "vagrant.yaml"

# prints its own PID and its child's, a milestone, then waits forever (or exits 3 when told to fail)
FAKE_VAGRANT = """
import os, subprocess, sys, time
child = subprocess.Popen(["sleep", "300"])
print(f"pids {os.getpid()} {child.pid}", flush=True)
print("==> node1: Creating domain with the following settings...", flush=True)
if sys.argv[1] == "fail":
    print("boom: the box is missing", flush=True)
    child.kill()
    sys.exit(3)
time.sleep(300)
"""


@pytest.fixture(autouse=True)
def _short_grace(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vagrantrun, "STOP_GRACE_S", 5.0)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _run(tmp_path: Path, mode: str, progress, timeout: float = 120.0, **kw) -> None:  # type: ignore[no-untyped-def]
    script = tmp_path / "fake_vagrant.py"
    script.write_text(FAKE_VAGRANT)
    run_vagrant([sys.executable, str(script), mode], env=dict(os.environ), log=tmp_path / "up.log",
                progress=progress, timeout=timeout, **kw)


def test_ctrl_c_stops_vagrant_and_its_children_before_it_propagates(tmp_path: Path) -> None:
    seen: list[str] = []

    def progress(msg: str) -> None:
        seen.append(msg)
        raise KeyboardInterrupt  # the user's Ctrl-C, arriving while vagrant boots the VMs

    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "hang", progress)
    assert seen == ["vagrant: node1: Creating domain with the following settings..."]
    pids = [int(p) for p in (tmp_path / "up.log").read_text().split("\n")[0].split()[1:]]
    assert len(pids) == 2 and not any(_alive(p) for p in pids), "vagrant and its child are gone"


def test_a_vagrant_up_past_its_deadline_is_stopped_and_named(tmp_path: Path) -> None:
    with pytest.raises(TestbedError) as e:
        _run(tmp_path, "hang", lambda _: None, timeout=1.0)
    assert "vagrant up did not finish within 1 s" in str(e.value) and "Creating domain" in str(e.value)
    pids = [int(p) for p in (tmp_path / "up.log").read_text().split("\n")[0].split()[1:]]
    assert not any(_alive(p) for p in pids)


def test_a_guest_fenced_during_up_stops_it_at_once_and_is_named(tmp_path: Path) -> None:
    """The cluster fenced a guest that was still provisioning: vagrant would wait for it to its deadline."""
    events = tmp_path / "fence-events.jsonl"
    events.write_text('{"action": "st_notify_fence", "node": "node2", "outcome": "ok"}\n')  # an earlier up's
    doomed = fenced_since(events)
    assert doomed() is None
    with events.open("a") as f:
        f.write('{"action": "st_notify_fence", "node": "node3", "outcome": "ok"}\n')
    log, asked = tmp_path / "up.log", []

    def later() -> str | None:  # from the third look (2 s in): vagrant has started its child by then
        asked.append(1)
        return doomed() if len(asked) >= 3 else None

    with pytest.raises(TestbedError) as e:
        _run(tmp_path, "hang", lambda _: None, doomed=later)
    assert "vagrant up cannot finish: the cluster fenced node3 while the guests were starting" in str(e.value)
    pids = [int(p) for p in log.read_text().split("\n")[0].split()[1:]]
    assert len(pids) == 2 and not any(_alive(p) for p in pids), "vagrant and its child are gone"


def test_a_failed_vagrant_up_quotes_its_output(tmp_path: Path) -> None:
    with pytest.raises(TestbedError) as e:
        _run(tmp_path, "fail", lambda _: None)
    assert "vagrant up failed" in str(e.value) and "boom: the box is missing" in str(e.value)


class HalfBuilt:
    """A testbed whose `up` is interrupted; its `down` meets a second Ctrl-C half-way and must finish."""

    def __init__(self) -> None:
        self.steps: list[str] = []
        self.topology = None

    def up(self, progress=None, placement=True) -> None:  # type: ignore[no-untyped-def]
        self.steps.append("up")
        raise KeyboardInterrupt

    def down(self, progress=None) -> list[str]:  # type: ignore[no-untyped-def]
        self.steps.append("down: domains")
        os.kill(os.getpid(), signal.SIGINT)   # a second Ctrl-C
        os.kill(os.getpid(), signal.SIGTERM)  # and a SIGTERM
        self.steps.append("down: daemons, namespaces")
        return ["domain x", "namespace y"]


def test_ctrl_c_during_up_removes_the_half_built_testbed_to_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    tb = HalfBuilt()
    import harness.testbed

    monkeypatch.setattr(harness.testbed, "open_testbed", lambda topology: tb)
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, sigterm)
    try:
        assert cli.main(["up", "--testbed", str(VAGRANT_YAML)]) == 130
        assert tb.steps == ["up", "down: domains", "down: daemons, namespaces"]
        assert signal.getsignal(signal.SIGINT) is before[0], "Ctrl-C works again afterwards"
    finally:
        signal.signal(signal.SIGTERM, before[1])
