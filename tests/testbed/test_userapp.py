"""A user's own application (examples/userapp, testbeds/local-userapp.yaml) on the embedded cluster.

Its start script daemonizes the server (fork, setsid, fork), so only the OCF agent's tracking
(a freezer sub-cgroup of the node's group, and an environment tag) says where it is: the
application faults must find it, the node faults must still reach it, and `down` must leave
nothing of it behind.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from harness.drivers.pacemaker import PacemakerDriver
from harness.faults import Nemesis
from harness.faults.app import AGENT
from harness.status import service_answer
from harness.testbed.local import LocalTestbed
from own_testbed import separate_testbed

pytestmark = pytest.mark.testbed

USERAPP = Path(__file__).resolve().parents[2] / "testbeds" / "local-userapp.yaml"
AGENT_ENV = {"OCF_RESOURCE_INSTANCE": "app-app", "OCF_RESKEY_state_dir": "/run/fallover-app-app"}


@pytest.fixture(scope="module")
def userapp() -> Iterator[LocalTestbed]:
    with separate_testbed(USERAPP) as tb:
        yield tb
    assert tb.leftovers() == [], "down must remove the application's cgroup and processes too"


@pytest.fixture
def nemesis(userapp: LocalTestbed) -> Iterator[Nemesis]:
    userapp.up()
    n = Nemesis(userapp)
    yield n
    n.heal_all()
    assert n.journal.entries() == []
    userapp.up()


def pids(tb: LocalTestbed, node: str, *given: str) -> dict[str, Any]:
    answer: dict[str, Any] = json.loads(tb.node(node).run([AGENT, "pids", *given], env=AGENT_ENV, timeout=20).stdout)
    return answer


def app_group(tb: LocalTestbed, node: str) -> Path:
    return tb.layout.node_cgroup(node) / "fallover-app.app-app"


def test_the_user_application_serves_and_keeps_writes_on_the_shared_disk(userapp: LocalTestbed) -> None:
    userapp.up()
    assert service_answer(userapp, "app", timeout=3) == "node1"
    key, value = f"userapp-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    base = "http://10.77.1.100:8080/kv/"
    userapp.client().run(["curl", "-sf", "-m", "5", "-X", "PUT", "--data", value, base + key], timeout=10)
    assert userapp.client().run(["curl", "-sf", "-m", "5", base + key], timeout=10).stdout == value
    on_disk = userapp.node("node1").run(["cat", f"{userapp.layout.mountpoint('app')}/userapp/{key}"], timeout=10)
    assert on_disk.stdout == value


def test_the_daemonized_application_is_in_the_agents_cgroup(userapp: LocalTestbed) -> None:
    userapp.up()
    found = pids(userapp, "node1")
    assert found["mechanism"] == "cgroup+tag", found
    [proc] = found["processes"]
    assert "userapp/server.py" in proc["cmd"]
    stat = userapp.node("node1").run(["cat", f"/proc/{proc['pid']}/stat"], timeout=10).stdout
    ppid, pgrp, session = (int(f) for f in stat.rsplit(")", 1)[1].split()[1:4])
    # start.sh daemonizes (fork, setsid, fork): an orphan of a session whose leader is gone
    assert ppid == 1 and pgrp == session != proc["pid"]
    assert not userapp.node("node1").run(["test", "-e", f"/proc/{session}"], timeout=10, check=False).ok
    # the same process, seen from the host: in a group under the node's, which freezes and dies with it
    assert len((app_group(userapp, "node1") / "cgroup.procs").read_text().split()) == 1


def test_freezing_the_node_freezes_the_applications_group(userapp: LocalTestbed) -> None:
    userapp.up()
    group = app_group(userapp, "node1")
    userapp.freeze("node1")
    try:  # a few milliseconds, far below the token: the cluster does not notice
        deadline = time.monotonic() + 2
        while (group / "freezer.state").read_text().strip() != "FROZEN" and time.monotonic() < deadline:
            time.sleep(0.005)
        state = (group / "freezer.state").read_text().strip()
    finally:
        userapp.thaw("node1")
    assert state == "FROZEN"
    assert (group / "freezer.parent_freezing").read_text().strip() == "0"  # thawed with its node


def test_app_kill_kills_the_user_application_and_the_cluster_moves_it(userapp: LocalTestbed,
                                                                       nemesis: Nemesis) -> None:
    with nemesis.inject("app_kill", group="app") as inj:
        killed = inj.entry.undo["processes"]
        assert inj.entry.undo["node"] == "node1" and len(killed) == 1
        assert pids(userapp, "node1", *killed)["processes"] == []
        PacemakerDriver(userapp).wait_until(lambda s: s.group_node("app") == "node2", timeout=60,
                                            what="app to fall over to node2")
    assert service_answer(userapp, "app", timeout=5) == "node2"
    assert not (app_group(userapp, "node1") / "cgroup.procs").exists() or \
        not (app_group(userapp, "node1") / "cgroup.procs").read_text().split()


def test_app_hang_stops_the_user_application_and_heal_continues_it(userapp: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("app_hang", group="app") as inj:
        stopped = inj.entry.undo["processes"]
        assert [p["state"] for p in pids(userapp, "node1", *stopped)["processes"]] == ["T"]
    still = pids(userapp, "node1", *stopped)["processes"]  # continued, or already stopped by the cluster
    assert all(p["state"] != "T" for p in still)
