"""The harness side of the fallover-app agent: app_kill and app_hang drive its pids and signal actions."""

import os
import time

import pytest
from ocf_agent import AGENT, jrun, proc_state, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/python3"),
                                reason="needs /usr/bin/python3")


# -- the harness side: app_kill / app_hang drive the agent's pids and signal actions ---------------

class HostNode:
    """A "node" that is this host: app.py's commands run here, the agent's files in the test's dirs."""

    def __init__(self, agent):
        self.agent = agent

    def run(self, cmd, *, timeout, check=True, env=None, input=None):
        from harness.faults import app
        from harness.transport.base import run_process

        argv = [str(AGENT) if a == app.AGENT else a for a in cmd]
        env = dict(env or {}, OCF_RESOURCE_INSTANCE="app",
                   **{"OCF_RESKEY_" + k: v for k, v in self.agent.params.items()})
        return run_process("node1", argv, timeout=timeout, check=check, env=env)


class HostTestbed:
    def __init__(self, agent, topology):
        self.topology, self._node = topology, HostNode(agent)

    def running(self, node):
        return True

    def node(self, name):
        return self._node


@pytest.fixture
def faults_here(agent, monkeypatch):
    """(testbed, AppKill, AppHang, Target) with the group running "on node1", which is this host."""
    from harness.faults import app, base
    from harness.faults.base import Target
    from harness.topology import DEFAULT_TESTBED, load_topology

    monkeypatch.setattr(app, "group_node", lambda testbed, group: "node1")
    monkeypatch.setattr(base, "SETTLE_S", 0.5)
    topo = load_topology(DEFAULT_TESTBED.parent / "local-userapp.yaml")
    return HostTestbed(agent, topo), app.AppKill(), app.AppHang(), Target(group="app")


def test_app_kill_kills_every_process_and_verifies_it(agent, daemon, faults_here):
    tb, kill, _, target = faults_here
    assert agent.run("start", start_cmd=daemon + " --child")[0] == 0
    kill.precheck(tb, target)
    undo = {}
    before = time.monotonic()
    kill.inject(tb, target, undo)
    after = time.monotonic()
    assert undo["node"] == "node1" and undo["mechanism"] == "tag" and len(undo["processes"]) == 2
    # the case measures from the kill, which the agent dates before its answer, not from the inject call
    (label, at, data), = undo["marks"]
    assert label == "SIGKILL sent" and data == {"fault_start": True} and before < at < after
    kill.verify(tb, target, undo)
    assert jrun(agent, "pids")["processes"] == []


def test_app_hang_stops_every_process_verifies_it_and_heal_continues_them(agent, daemon, faults_here):
    tb, _, hang, target = faults_here
    assert agent.run("start", start_cmd=daemon + " --child")[0] == 0
    undo = {}
    hang.inject(tb, target, undo)
    hang.verify(tb, target, undo)
    pids = [int(i.split(":")[0]) for i in undo["processes"]]
    assert [proc_state(p) for p in pids] == ["T", "T"]
    hang.heal(tb, target, undo)
    assert all(wait_for(lambda p=p: proc_state(p) in ("S", "R")) for p in pids)
    hang.heal(tb, target, undo)  # idempotent


def test_app_faults_refuse_an_application_they_cannot_find(agent, faults_here):
    from harness.faults.base import FaultNotApplicable

    tb, kill, hang, target = faults_here
    with pytest.raises(FaultNotApplicable, match="no process of app's application on node1: the application "
                                                 "was not started on this node"):
        kill.precheck(tb, target)
    g = tb.topology.groups[0]
    tb.topology = tb.topology.model_copy(update={"groups": [g.model_copy(update={
        "application": g.application.model_copy(update={"detached": True})})]})
    with pytest.raises(FaultNotApplicable, match="declared detached"):
        hang.precheck(tb, target)


def test_app_fault_verifies_report_what_they_see(agent, daemon, faults_here):
    from harness.faults.base import FaultNotInEffect

    tb, kill, hang, target = faults_here
    assert agent.run("start", start_cmd=daemon)[0] == 0
    running = jrun(agent, "pids")["processes"]
    undo = {"node": "node1", "processes": ["%d:%s" % (p["pid"], p["start"]) for p in running]}
    with pytest.raises(FaultNotInEffect, match="app_kill on app did not take effect: still alive on node1"):
        kill.verify(tb, target, undo)  # as if the SIGKILL had not been sent
    with pytest.raises(FaultNotInEffect, match="app_hang on app did not take effect: not stopped on node1"):
        hang.verify(tb, target, undo)
    with pytest.raises(FaultNotInEffect, match="no process of app's application was found on node1: gone"):
        kill.verify(tb, target, {"node": "node1", "processes": [], "problem": "gone"})
