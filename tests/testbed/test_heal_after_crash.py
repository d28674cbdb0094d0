"""SIGKILL the injecting processes in the middle of their faults; `fallover heal` undoes everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from harness.drivers.pacemaker import PacemakerDriver
from harness.faults.journal import Journal
from harness.testbed import network, wire
from harness.testbed.local import LocalTestbed

pytestmark = pytest.mark.testbed

INJECTIONS = [
    ["partition", "--node", "node3"],
    ["cpu_overload", "--node", "node2", "--rate", "0.2"],
    ["adapter_down", "--node", "node1", "--network", "standby"],
    ["disk_full", "--disk", "shared"],
]


def fallover(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness.cli", *args]


def test_fallover_heal_undoes_faults_of_killed_injectors(testbed: LocalTestbed, cluster: PacemakerDriver) -> None:
    env = {**os.environ, "FALLOVER_INSTANCE": testbed.layout.instance}
    journal = Journal(testbed.layout.journal)
    assert journal.entries() == []
    procs = []
    for args in INJECTIONS:  # one at a time, so that disk_full finds the group where it expects
        procs.append(subprocess.Popen(fallover("inject", *args, "--duration", "600"), env=env,
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + 60
        while sum(e.state == "injected" for e in journal.entries()) < len(procs):
            assert procs[-1].poll() is None, f"`fallover inject {' '.join(args)}` exited early"
            assert time.monotonic() < deadline, f"{args[0]} was not injected within 60s"
            time.sleep(0.05)
    for p in procs:
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
    # the faults outlive their injectors
    assert len(journal.entries()) == len(INJECTIONS)
    assert len(wire.filters(testbed.layout)) == 1
    node1 = network.links(f"/proc/{testbed.node('node1').target()}/ns/net")  # type: ignore[attr-defined]
    assert node1["standby"] != "up"
    assert testbed.node("node2").run(["pidof", "stress-ng"], timeout=10, check=False).ok

    r = subprocess.run(fallover("heal"), env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("healed ") == len(INJECTIONS), r.stderr
    assert journal.entries() == []
    assert wire.filters(testbed.layout) == []
    assert not testbed.node("node2").run(["pidof", "stress-ng"], timeout=10, check=False).ok
    node1 = network.links(f"/proc/{testbed.node('node1').target()}/ns/net")  # type: ignore[attr-defined]
    assert node1["standby"] == "up"
    fills = [n for n in testbed.topology.node_names if testbed.running(n) and testbed.node(n).run(
        f"ls {testbed.layout.mountpoint('app')}/.fallover-fill-* 2>/dev/null", timeout=10, check=False).stdout]
    assert fills == []
    r = subprocess.run(fallover("heal"), env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "nothing to heal" in r.stderr
