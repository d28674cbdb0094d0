"""The embedded testbed comes up, is idempotent, and goes away without a trace — even after kill -9."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.errors import TransportError
from harness.testbed import disk
from harness.testbed.layout import FREEZER_ROOT
from harness.testbed.local import LocalTestbed
from harness.topology import DEFAULT_TESTBED, load_topology
from harness.wait import wait_until

pytestmark = pytest.mark.testbed

INSTANCE = "lc"  # its own names, so it never touches a session testbed


def machine_leftovers(tb: LocalTestbed) -> list[str]:
    """Independent of the harness's own sweep: look at the machine the way an operator would."""
    prefix = tb.layout.prefix
    left = [f"netns {n}" for n in os.listdir("/run/netns") if n.startswith(prefix)] \
        if os.path.isdir("/run/netns") else []
    loops = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    left += [ln for ln in loops.splitlines() if str(tb.layout.state) + "/" in ln]
    mounts = Path("/proc/mounts").read_text()
    left += [ln for ln in mounts.splitlines() if str(tb.layout.state) + "/" in ln]
    if (FREEZER_ROOT / prefix).exists():
        left.append(f"cgroup {FREEZER_ROOT / prefix}")
    left += tb.leftovers()
    return left


@pytest.fixture
def lc() -> LocalTestbed:
    tb = LocalTestbed(load_topology(DEFAULT_TESTBED), instance=INSTANCE)
    tb.down()
    yield tb
    tb.down()


def test_up_is_idempotent_and_down_leaves_nothing(lc: LocalTestbed) -> None:
    lc.up()
    pids = {n: lc.node(n).target() for n in lc.topology.node_names}  # type: ignore[attr-defined]
    assert all(pids.values())
    assert lc.node("node2").run(["hostname"], timeout=10).stdout.strip() == "node2"
    # the mount of the shared disk exists only inside the node that runs the group
    mounted = {n: str(lc.layout.mountpoint("app")) in lc.node(n).run(["cat", "/proc/mounts"], timeout=10).stdout
               for n in lc.topology.node_names}
    assert mounted == {"node1": True, "node2": False, "node3": False}
    assert str(lc.layout.mountpoint("app")) not in Path("/proc/mounts").read_text()
    # each node has its own loop device (its own view of the shared disk), none the host's
    devices = {n: lc.layout.node_disk_link(n, "shared").resolve() for n in lc.topology.node_names}
    assert len(set(devices.values())) == 3
    assert sorted(map(str, devices.values())) == sorted(disk.find_loops(lc.layout))
    lc.up()  # again: nothing rebuilt, nothing restarted
    assert {n: lc.node(n).target() for n in lc.topology.node_names} == pids  # type: ignore[attr-defined]
    # powered off with the shared filesystem mounted: its loop device goes once the dead namespace lets go
    lc.power_off("node1")
    wait_until(lambda: sorted(disk.find_loops(lc.layout)) == sorted(str(devices[n]) for n in ("node2", "node3")) or None,
               timeout=15, what="node1's loop device gone after its power off")
    gone = lc.down()
    assert any(g.startswith("node ") for g in gone) and any(g.startswith("loop ") for g in gone)
    assert machine_leftovers(lc) == []
    with pytest.raises(TransportError):
        lc.node("node1").run(["true"], timeout=5)


def test_kill_9_of_a_running_up_then_down_leaves_nothing(lc: LocalTestbed) -> None:
    env = {**os.environ, "FALLOVER_INSTANCE": INSTANCE}
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", "up"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    # wait until it is in the middle of things: nodes started, cluster not settled yet
    deadline = time.monotonic() + 60
    while not any(lc.running(n) for n in lc.topology.node_names):
        assert proc.poll() is None, "up exited before starting any node"
        assert time.monotonic() < deadline, "up did not start a node within 60s"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert machine_leftovers(lc), "a killed up should have left something for down to remove"
    r = subprocess.run([sys.executable, "-m", "harness.cli", "down"], env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert machine_leftovers(lc) == []


def test_up_after_a_crash_sweeps_and_rebuilds(lc: LocalTestbed) -> None:
    lc.up()
    # simulate a crash that lost the fabric: the bridges' namespace disappears under the cluster
    subprocess.run(["ip", "netns", "del", lc.layout.net_ns], check=True)
    lc.up()
    assert lc.node("node1").run(["hostname"], timeout=10).stdout.strip() == "node1"
    lc.down()
    assert machine_leftovers(lc) == []


def test_down_with_faults_in_effect_leaves_nothing(lc: LocalTestbed) -> None:
    """Frozen node, pulled disk, switch rules, CPU hogs: `down` removes them with the testbed."""
    from harness.faults import Nemesis

    lc.up()
    n = Nemesis(lc)
    n.start("cpu_overload", node="node2", rate=0.2)
    n.start("partition", nodes=("node1",))
    n.start("disk_pull", disk="shared")
    n.start("node_hang", node="node3")
    assert len(n.journal.entries()) == 4
    r = subprocess.run([sys.executable, "-m", "harness.cli", "down"], env={**os.environ, "FALLOVER_INSTANCE": INSTANCE},
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert machine_leftovers(lc) == []


def test_up_rebuilds_a_testbed_built_from_another_topology(lc: LocalTestbed) -> None:
    lc.up()
    before = lc.node("node1").target()  # type: ignore[attr-defined]
    changed = lc.topology.model_copy(update={"sla": lc.topology.sla.model_copy(update={"max_outage_s": 9.0})})
    same_names = LocalTestbed(changed, instance=INSTANCE)
    same_names.up()
    assert same_names.node("node1").target() != before  # type: ignore[attr-defined]
    same_names.down()
    assert machine_leftovers(lc) == []
