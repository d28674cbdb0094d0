"""The fallover-app agent finds the user's application: the processes its start command left running
(by tag, pid file, process pattern or cgroup), signals them and sweeps them at stop."""

import os
import signal
from pathlib import Path

import pytest
from ocf_agent import jrun, proc_state, wait_for

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/python3"),
                                reason="needs /usr/bin/python3")


# -- where the user's application is: the processes its start command left running -----------

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

