"""Unit tests for the fallover-app OCF agent, driven the way pacemaker-execd drives it."""

import os
import shutil
import signal
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from ocf_agent import AGENT, AGENTS, NODE, Agent

DTD = Path("/usr/share/resource-agents/ra-api-1.dtd")

pytestmark = pytest.mark.skipif(not os.path.exists("/usr/bin/python3"),
                                reason="needs /usr/bin/python3")


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


# What the agent may not import where Pacemaker runs it most (every monitor) or in a takeover's path
# (the meta-data that the controller runs before every start): seconds each on an emulated VM guest.
HEAVY = {"json", "re", "subprocess", "socket", "signal", "enum"}


def test_meta_data_imports_nothing_heavy(agent):
    imported = agent.imports("meta-data")
    assert "os" in imported  # the measurement works
    assert not imported & HEAVY, sorted(imported & HEAVY)


def test_monitor_imports_only_the_c_socket(agent):
    assert agent.run("start")[0] == 0
    try:
        imported = agent.imports("monitor")
        assert "_socket" in imported  # the health check ran
        assert not imported & HEAVY, sorted(imported & HEAVY)
    finally:
        assert agent.run("stop")[0] == 0


def test_stop_of_a_stopped_app_terminates_it_without_waiting_for_kill(agent):
    """app_hang stops the app (SIGSTOP): the stop continues it, so it acts on SIGTERM at once."""
    assert agent.run("start")[0] == 0
    pid = int((agent.tmp / "state" / "app.pid").read_text().split()[0])
    os.kill(pid, signal.SIGSTOP)
    try:
        assert agent.run("stop")[0] == 0
    finally:
        agent.kill_leftover()
    assert "stopping pid %d (SIGTERM, SIGKILL after 5 s)" % pid in agent.log()
    assert "stopped (pid %d, SIGTERM)" % pid in agent.log()


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

