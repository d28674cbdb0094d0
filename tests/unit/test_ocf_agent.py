"""Unit tests for the fallover-app OCF agent, driven the way pacemaker-execd drives it."""

import os
import shutil
import signal
import socket
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / "harness" / "agents"
AGENT = AGENTS / "fallover-app"
DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")
NODE = "testnode"

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/python3"),
                                reason="needs /usr/bin/python3")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Agent:
    """Runs agent actions with OCF_RESKEY_* params; cleans up the app by its recorded PID."""

    def __init__(self, tmp_path, agent=AGENT):
        self.agent = str(agent)
        self.tmp = tmp_path
        (tmp_path / "data").mkdir(exist_ok=True)
        self.port = free_port()
        self.params = {"data_dir": str(tmp_path / "data"), "port": str(self.port),
                       "node_name": NODE, "state_dir": str(tmp_path / "state"),
                       "logfile": str(tmp_path / "log" / "agent.log")}

    preexec = None  # e.g. join a freezer group, as the agent runs in an embedded node's group

    def run(self, action, **extra):
        return self.run_args([action], **extra)

    def run_args(self, args, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith("OCF_")}
        env.update({"OCF_RESKEY_" + k: v for k, v in {**self.params, **extra}.items()})
        env["OCF_RESOURCE_INSTANCE"] = "app"
        proc = subprocess.run([self.agent, *args], env=env, capture_output=True, text=True,
                              timeout=60, preexec_fn=self.preexec)
        return proc.returncode, proc.stdout

    def log(self):
        path = Path(self.params["logfile"])
        return path.read_text() if path.exists() else ""

    def kill_leftover(self):
        pidfile = self.tmp / "state" / "app.pid"
        try:
            pid, start = pidfile.read_text().split()
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[19] == start:
                    os.kill(int(pid), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            pass


@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.kill_leftover()


def test_meta_data_is_valid_xml_listing_params(agent):
    rc, out = agent.run("meta-data")
    assert rc == 0
    root = ET.fromstring(out.split("\n", 2)[2])  # skip the XML decl and DOCTYPE lines
    assert root.tag == "resource-agent" and root.get("name") == "fallover-app"
    params = {p.get("name"): p for p in root.iter("parameter")}
    assert {"data_dir", "port", "node_name", "kvapp", "state_dir", "logfile", "start_cmd",
            "stop_cmd", "monitor_cmd", "fail_start_marker"} <= set(params)
    assert params["data_dir"].get("required") == "1"
    assert params["port"].find("content").get("default") == "8080"
    actions = {a.get("name"): a for a in root.iter("action")}
    assert {"start", "stop", "monitor", "meta-data", "validate-all"} <= set(actions)
    assert actions["monitor"].get("interval") == "5s"
    assert actions["monitor"].get("timeout") == "10s"


@pytest.mark.skipif(not (DTD.exists() and shutil.which("xmllint")), reason="no DTD/xmllint")
def test_meta_data_conforms_to_ra_api_dtd(agent, tmp_path):
    md = tmp_path / "md.xml"
    md.write_text(agent.run("meta-data")[1])
    proc = subprocess.run(["xmllint", "--noout", "--dtdvalid", str(DTD), str(md)],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr


def test_meta_data_needs_no_params(tmp_path):
    proc = subprocess.run([str(AGENT), "meta-data"], capture_output=True, text=True,
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")}, timeout=30)
    assert proc.returncode == 0 and "<resource-agent" in proc.stdout


def test_validate_all(agent):
    assert agent.run("validate-all")[0] == 0
    assert agent.run("validate-all", data_dir="")[0] == 6
    assert agent.run("validate-all", port="http")[0] == 6
    assert agent.run("validate-all", port="70000")[0] == 6


def test_unknown_action_is_unimplemented(agent):
    assert agent.run("promote")[0] == 3


def test_lifecycle(agent):
    assert agent.run("monitor")[0] == 7
    assert agent.run("start")[0] == 0
    assert agent.run("monitor")[0] == 0
    pid = (agent.tmp / "state" / "app.pid").read_text().split()[0]
    assert agent.run("start")[0] == 0  # starting a running app is success
    assert (agent.tmp / "state" / "app.pid").read_text().split()[0] == pid
    assert agent.run("stop")[0] == 0
    assert agent.run("monitor")[0] == 7
    assert agent.run("stop")[0] == 0  # stopping a stopped app is success
    log = agent.log()
    assert "started (pid %s)" % pid in log
    assert "listening on" in log  # the app's own stderr goes to the same logfile
    assert "error" not in log.lower()  # the harness scans this log for real errors


def test_app_serves_node_name_and_data_dir(agent):
    import urllib.request
    assert agent.run("start")[0] == 0
    try:
        req = urllib.request.Request(f"http://127.0.0.1:{agent.port}/kv/k1", data=b"v",
                                     method="PUT")
        with urllib.request.urlopen(req, timeout=10) as r:
            assert r.status == 201 and r.headers["X-Fallover-Node"] == NODE
        assert (agent.tmp / "data" / "kv" / "k1").read_bytes() == b"v"
    finally:
        assert agent.run("stop")[0] == 0


def test_monitor_alive_but_unhealthy_is_generic_error(agent):
    assert agent.run("start")[0] == 0
    (agent.tmp / "data" / ".fallover-kv").unlink()
    assert agent.run("monitor")[0] == 1
    assert agent.run("stop")[0] == 0
    assert agent.run("monitor")[0] == 7


def test_monitor_after_app_killed_is_not_running(agent):
    assert agent.run("start")[0] == 0
    agent.kill_leftover()  # SIGKILL our app by its recorded PID, like a crash
    rc = None
    for _ in range(100):
        rc = agent.run("monitor")[0]
        if rc == 7:
            break
    assert rc == 7
    assert agent.run("stop")[0] == 0


def test_fail_start_marker_refuses_start_on_named_node(agent, tmp_path):
    marker = tmp_path / "fail-start"
    marker.write_text("othernode\n%s\n" % NODE)
    assert agent.run("start", fail_start_marker=str(marker))[0] == 1
    assert "start refused by fault marker" in agent.log()
    assert agent.run("monitor")[0] == 7


def test_fail_start_marker_for_other_node_is_ignored(agent, tmp_path):
    marker = tmp_path / "fail-start"
    marker.write_text("othernode\n")
    assert agent.run("start", fail_start_marker=str(marker))[0] == 0
    assert agent.run("stop")[0] == 0
    assert agent.run("start", fail_start_marker=str(tmp_path / "absent"))[0] == 0
    assert agent.run("stop")[0] == 0


def test_user_commands_pass_exit_codes_through(agent):
    assert agent.run("start", start_cmd="exit 0")[0] == 0
    assert agent.run("monitor", monitor_cmd="exit 7")[0] == 7
    assert agent.run("monitor", monitor_cmd="exit 0")[0] == 0
    assert agent.run("stop", stop_cmd="exit 1")[0] == 1
    assert agent.run("stop", stop_cmd="exit 0")[0] == 0
    assert not (agent.tmp / "state" / "app.pid").exists()  # the sample app never ran


def test_user_commands_get_fallover_env(agent):
    check = ('test "$FALLOVER_NODE" = %s && test "$FALLOVER_PORT" = %d && '
             'test "$FALLOVER_DATA_DIR" = %s' % (NODE, agent.port, agent.params["data_dir"]))
    assert agent.run("start", start_cmd=check)[0] == 0
    assert agent.run("start", start_cmd="echo from-user-cmd; exit 0")[0] == 0
    assert "from-user-cmd" in agent.log()


def test_fail_start_marker_applies_to_user_start_cmd(agent, tmp_path):
    marker = tmp_path / "fail-start"
    marker.write_text(NODE + "\n")
    assert agent.run("start", start_cmd="exit 0", fail_start_marker=str(marker))[0] == 1


def test_copied_agent_uses_kvapp_param(tmp_path):
    copy = tmp_path / "bin" / "fallover-app"
    copy.parent.mkdir()
    shutil.copy2(AGENT, copy)
    a = Agent(tmp_path, agent=copy)
    try:
        assert a.run("start")[0] == 5  # no kvapp.py next to the copy: not installed
        assert a.run("start", kvapp=str(AGENTS / "kvapp.py"))[0] == 0
        assert a.run("monitor")[0] == 0
        assert a.run("stop")[0] == 0
    finally:
        a.kill_leftover()


def test_start_fails_when_data_dir_missing(agent):
    assert agent.run("start", data_dir=str(agent.tmp / "not-mounted"))[0] == 1
    assert agent.run("monitor")[0] == 7


# -- where the user's application is: the processes its start command left running -----------

DAEMON = r'''
import os, signal, sys, time
args = sys.argv[1:]
if "--worker" not in args:                  # daemonize like an init script: fork, setsid, fork
    if os.fork():
        os._exit(0)
    os.setsid()
    if os.fork():
        os._exit(0)
    if "--clear-env" in args:               # a daemon that wipes its environment (no tag left)
        os.execve(sys.executable, [sys.executable, __file__, "--worker"], {})
if "--pidfile" in args:
    with open(args[args.index("--pidfile") + 1], "w") as f:
        f.write("%d\n" % os.getpid())
if "--ignore-term" in args:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if "--child" in args and os.fork() == 0:    # a worker process of the daemon
    time.sleep(100000)
time.sleep(100000)
'''


@pytest.fixture
def daemon(tmp_path):
    """A start command's daemon; every process whose command line names it is killed afterwards."""
    path = tmp_path / "daemon.py"
    path.write_text(DAEMON)
    yield "/usr/bin/python3 %s" % path
    for _ in range(3):
        for pid in os.listdir("/proc"):
            try:
                cmd = Path("/proc/%s/cmdline" % pid).read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmd and pid.isdigit():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass


def jrun(agent, *args, **extra):
    import json
    rc, out = agent.run_args(list(args), **extra)
    assert rc == 0, out
    return json.loads(out)


def proc_state(pid):
    try:
        return Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


def wait_for(pred, timeout=5.0):
    import time
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_double_forked_daemon_is_found_by_its_tag(agent, daemon):
    assert agent.run("start", start_cmd=daemon)[0] == 0
    found = jrun(agent, "pids")
    assert found["mechanism"] == "tag"  # the test runs in the host's root freezer group: no cgroup there
    assert [p["cmd"].split()[1] for p in found["processes"]] == [daemon.split()[1]]
    assert "the application is 1 process(es) (tag)" in agent.log()


def test_signal_stops_continues_and_kills_the_whole_application(agent, daemon):
    assert agent.run("start", start_cmd=daemon + " --child")[0] == 0
    stopped = jrun(agent, "signal", "STOP")["processes"]
    assert len(stopped) == 2  # the daemon and its worker
    assert all(wait_for(lambda p=p: proc_state(p["pid"]) == "T") for p in stopped)
    ids = ["%d:%s" % (p["pid"], p["start"]) for p in stopped]
    assert {p["state"] for p in jrun(agent, "pids", *ids)["processes"]} == {"T"}
    jrun(agent, "signal", "CONT", *ids)
    assert all(wait_for(lambda p=p: proc_state(p["pid"]) in ("S", "R")) for p in stopped)
    killed = jrun(agent, "signal", "KILL")["processes"]
    assert {p["pid"] for p in killed} == {p["pid"] for p in stopped}
    assert wait_for(lambda: not jrun(agent, "pids", *ids)["processes"])
    after = jrun(agent, "pids")
    assert after["processes"] == [] and "nothing that start_cmd started is running" in after["problem"]
    assert "SIGKILL sent to 2 process(es) of the application (tag)" in agent.log()
    assert "error" not in agent.log().lower()


def test_given_pids_of_a_recycled_start_time_are_left_alone(agent, daemon):
    assert agent.run("start", start_cmd=daemon)[0] == 0
    pid = jrun(agent, "pids")["processes"][0]["pid"]
    assert jrun(agent, "signal", "STOP", "%d:1" % pid)["processes"] == []  # wrong start time: not ours
    assert proc_state(pid) != "T"


def test_nothing_started_here_is_a_problem_not_a_crash(agent):
    out = jrun(agent, "pids")
    assert out["processes"] == [] and "not started on this node" in out["problem"]
    assert jrun(agent, "signal", "KILL")["processes"] == []
    assert agent.run_args(["signal", "NOSUCH"])[0] == 2


def test_the_sample_app_is_found_by_its_pidfile(agent):
    assert agent.run("start")[0] == 0
    out = jrun(agent, "pids")
    pid = int((agent.tmp / "state" / "app.pid").read_text().split()[0])
    assert out["mechanism"] == "pidfile" and [p["pid"] for p in out["processes"]] == [pid]
    jrun(agent, "signal", "KILL")
    assert wait_for(lambda: agent.run("monitor")[0] == 7, timeout=10)
    assert agent.run("stop")[0] == 0


def test_stop_ends_what_the_stop_command_left_running(agent, daemon):
    assert agent.run("start", start_cmd=daemon + " --child")[0] == 0
    pids = [p["pid"] for p in jrun(agent, "pids")["processes"]]
    assert agent.run("stop", stop_cmd="exit 0")[0] == 0  # a stop command that forgot the worker
    assert all(proc_state(p) in (None, "Z") for p in pids)
    assert "2 process(es) outlived the stop command" in agent.log()
    assert not (agent.tmp / "state" / "app.track").exists()
    assert "error" not in agent.log().lower()


def test_stop_kills_leftovers_that_ignore_sigterm(agent, daemon):
    assert agent.run("start", start_cmd=daemon + " --ignore-term")[0] == 0
    pid = jrun(agent, "pids")["processes"][0]["pid"]
    rc, _ = agent.run("stop", stop_cmd="exit 0", CRM_meta_timeout="8000")
    assert rc == 0 and proc_state(pid) in (None, "Z")


def test_a_failed_stop_command_is_passed_through_and_sweeps_nothing(agent, daemon):
    assert agent.run("start", start_cmd=daemon)[0] == 0
    pid = jrun(agent, "pids")["processes"][0]["pid"]
    assert agent.run("stop", stop_cmd="exit 1")[0] == 1
    assert proc_state(pid) not in (None, "Z")


def test_a_restart_keeps_its_tag(agent, daemon):
    assert agent.run("start", start_cmd=daemon)[0] == 0
    assert agent.run("start", start_cmd="exit 0")[0] == 0  # start on a running app: the app's own business
    assert len(jrun(agent, "pids")["processes"]) == 1


def test_pid_file_override_is_the_process_and_its_descendants(agent, daemon, tmp_path):
    pf = tmp_path / "my.pid"
    assert agent.run("start", start_cmd="%s --child --pidfile %s" % (daemon, pf), pid_file=str(pf))[0] == 0
    assert wait_for(lambda: pf.exists() and len(jrun(agent, "pids")["processes"]) == 2)
    out = jrun(agent, "pids")
    assert out["mechanism"] == "pid_file" and out["processes"][0]["pid"] == int(pf.read_text())
    pf.unlink()
    out = jrun(agent, "pids")
    assert out["processes"] == [] and "pid_file %s" % pf in out["problem"]


def test_process_override_matches_command_lines(agent, daemon):
    assert agent.run("start", start_cmd=daemon, process=r"daemon\.py")[0] == 0
    out = jrun(agent, "pids")
    assert out["mechanism"] == "process" and len(out["processes"]) == 1
    assert agent.run("stop", stop_cmd="exit 0")[0] == 0  # the cgroup/tag sweep still ends it
    assert agent.run("start", start_cmd="exit 0", process="no-such-program-anywhere")[0] == 0
    out = jrun(agent, "pids")
    assert out["processes"] == [] and "no process of this node matches" in out["problem"]


def test_user_commands_run_in_workdir(agent, tmp_path):
    (tmp_path / "wd").mkdir()
    (tmp_path / "wd" / "here").touch()
    assert agent.run("start", start_cmd="test -f here", workdir=str(tmp_path / "wd"))[0] == 0
    assert agent.run("monitor", monitor_cmd="test -f here", workdir=str(tmp_path / "wd"))[0] == 0
    # absolute commands still work where the topology's directory is not visible (a node's own /tmp)
    assert agent.run("start", start_cmd="test $PWD = /", workdir=str(tmp_path / "absent"))[0] == 0
    assert agent.run("stop", stop_cmd="exit 0", workdir=str(tmp_path / "absent"))[0] == 0


FREEZER = Path("/sys/fs/cgroup/freezer")


@pytest.fixture
def in_freezer_group(agent, tmp_path):
    """Run the agent in a freezer group of its own, as it runs in an embedded node's group."""
    if not os.access(FREEZER / "cgroup.procs", os.W_OK):
        pytest.skip("needs a writable cgroup-v1 freezer hierarchy")
    group = FREEZER / ("fallover-unit-%d-%s" % (os.getpid(), tmp_path.name))
    group.mkdir()

    def join():
        (group / "cgroup.procs").write_text(str(os.getpid()))

    agent.preexec = join
    yield group
    for sub in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True) + [group]:
        if sub.is_dir():
            for pid in (sub / "cgroup.procs").read_text().split():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass
            assert wait_for(lambda s=sub: not (s / "cgroup.procs").read_text().split())
            wait_for(lambda s=sub: _rmdir(s))


def _rmdir(path):
    try:
        path.rmdir()
        return True
    except FileNotFoundError:
        return True
    except OSError:
        return False


def test_cgroup_finds_a_daemon_that_escaped_session_and_environment(agent, daemon, in_freezer_group):
    assert agent.run("start", start_cmd=daemon + " --clear-env")[0] == 0
    out = jrun(agent, "pids")
    assert out["mechanism"] == "cgroup+tag"
    assert [p["cmd"].split()[-1] for p in out["processes"]] == ["--worker"]  # no tag left, the cgroup has it
    sub = in_freezer_group / "fallover-app.app"
    assert (sub / "cgroup.procs").read_text().split() == [str(out["processes"][0]["pid"])]
    assert jrun(agent, "signal", "KILL")["processes"]
    assert wait_for(lambda: not jrun(agent, "pids")["processes"])
    assert agent.run("stop", stop_cmd="exit 0")[0] == 0
    assert wait_for(lambda: not sub.exists())  # a clean stop removes the application's group


def test_cgroup_stop_sweeps_an_environment_wiping_leftover(agent, daemon, in_freezer_group):
    assert agent.run("start", start_cmd=daemon + " --clear-env")[0] == 0
    pid = jrun(agent, "pids")["processes"][0]["pid"]
    assert agent.run("stop", stop_cmd="exit 0")[0] == 0
    assert proc_state(pid) in (None, "Z")


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
    kill.inject(tb, target, undo)
    assert undo["node"] == "node1" and undo["mechanism"] == "tag" and len(undo["processes"]) == 2
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
