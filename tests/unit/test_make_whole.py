"""make_whole never takes a stack that the node's own init is still starting for a half-dead one."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
from fake_testbed import FakeTestbed

from harness.errors import TransportError
from harness.faults import ops
from harness.faults.ops import _BOOTED, booted, make_whole


def _node(tmp_path: Path, *, systemd: bool, controller_after: int) -> FakeTestbed:
    """A node whose controller appears at the ``controller_after``-th look (0: there from the start)."""
    tb = FakeTestbed(tmp_path)
    looks = {"n": 0}

    def shell(node: str, cmd: str) -> tuple[int, str]:
        if "is-system-running" in cmd:
            return 0, "systemd\n" if systemd else ""
        if cmd == "pidof pacemaker-controld":
            looks["n"] += 1
            return (0, "289\n") if looks["n"] > controller_after else (1, "")
        if cmd.startswith("pidof "):
            return 0, "278\n"
        return 0, ""
    tb.shell = shell
    return tb


@pytest.fixture(autouse=True)
def no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops, "RELOOK_S", 0.0)
    monkeypatch.setattr(ops, "STARTING_S", 0.5)  # the fake's looks are instant: hundreds of them


def _killed(tb: FakeTestbed) -> list[str]:
    return [cmd for _, cmd in tb.commands if cmd.startswith("kill -KILL")]


def test_a_stack_its_init_is_still_starting_is_left_to_it(tmp_path: Path) -> None:
    tb = _node(tmp_path, systemd=True, controller_after=1)  # pacemakerd up, its controller forked a moment later
    make_whole(tb, "node2")
    assert not _killed(tb) and ("start_services", "node2") not in tb.switched
    waited = [cmd for n, cmd in tb.commands if "is-system-running --wait" in cmd]
    assert waited and tb.commands.index(("node2", waited[0])) < tb.commands.index(("node2", "pidof pacemaker-controld"))


def test_a_stack_systemd_is_still_starting_seconds_after_the_boot_is_left_to_it(tmp_path: Path) -> None:
    """On a loaded TCG guest pacemakerd ran 4.7 s after systemd called the boot finished (2026-12-01): a
    second look 3 s after the first still missed it, and the stack systemd was starting was SIGKILLed."""
    tb = _node(tmp_path, systemd=True, controller_after=5)
    make_whole(tb, "node2")
    assert not _killed(tb) and ("start_services", "node2") not in tb.switched
    assert sum(1 for _, cmd in tb.commands if cmd == "pidof pacemaker-controld") == 6


def test_a_stack_still_incomplete_when_its_time_to_start_is_up_is_restarted_as_a_whole(tmp_path: Path) -> None:
    tb = _node(tmp_path, systemd=True, controller_after=10**9)
    make_whole(tb, "node2")
    assert _killed(tb) and ("start_services", "node2") in tb.switched


def test_without_systemd_the_harness_starts_the_stack_and_does_not_wait(tmp_path: Path) -> None:
    tb = _node(tmp_path, systemd=False, controller_after=1)  # the embedded testbed: nobody else starts it
    make_whole(tb, "node2")
    assert _killed(tb) and ("start_services", "node2") in tb.switched
    assert sum(1 for _, cmd in tb.commands if cmd == "pidof pacemaker-controld") == 2  # no second look


def test_a_stack_seen_complete_is_not_looked_for_again_a_restarted_one_is(tmp_path: Path) -> None:
    """Every pidof is an SSH round trip (4.3 s for the re-check on a loaded TCG guest): a stack just seen whole
    is trusted; one the harness restarted must show its corosync and pacemakerd again."""
    tb = _node(tmp_path, systemd=True, controller_after=0)
    make_whole(tb, "node2")
    looks = [cmd for _, cmd in tb.commands if cmd.startswith("pidof ")]
    assert looks == ["pidof corosync", "pidof pacemakerd", "pidof pacemaker-controld"]
    tb = _node(tmp_path, systemd=False, controller_after=1)
    make_whole(tb, "node2")
    after = [cmd for _, cmd in tb.commands[tb.commands.index(("node2", "kill -KILL 278")):] if cmd.startswith("pidof ")]
    assert after[-2:] == ["pidof corosync", "pidof pacemakerd"]


@pytest.mark.parametrize("units,out", [(True, "systemd"), (False, "")])
def test_the_boot_wait_runs_only_under_systemd(tmp_path: Path, units: bool, out: str) -> None:
    run = tmp_path / "run-systemd"
    if units:
        run.mkdir()
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "systemctl").write_text("#!/bin/sh\necho running\n")
    (fake / "systemctl").chmod(0o755)
    r = subprocess.run(["sh", "-c", _BOOTED], env={"FALLOVER_SYSTEMD_RUN": str(run), "PATH": f"{fake}:/usr/bin:/bin",
                                                 "FALLOVER_INIT_MARKS": str(tmp_path / "none")},
                       capture_output=True, text=True, timeout=30)
    assert r.stdout.strip() == out
    tb = FakeTestbed(tmp_path)
    tb.shell = lambda node, cmd: (0, out + "\n")
    assert booted(tb, "node1") is units


def _boot_wait(tmp_path: Path, marks: list[str], age_s: int = 0) -> subprocess.Popen[str]:
    """_BOOTED on an embedded node whose init left ``marks`` (``booted`` written ``age_s`` ago)."""
    d = tmp_path / "init"
    d.mkdir(exist_ok=True)
    for m in marks:
        (d / m).touch()
        if m == "booted":
            t = time.time() - age_s
            os.utime(d / m, (t, t))
    return subprocess.Popen(["sh", "-c", _BOOTED], env={"FALLOVER_SYSTEMD_RUN": str(tmp_path / "no-systemd"),
                                                      "FALLOVER_INIT_MARKS": str(d), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, text=True)


def test_an_embedded_node_still_booting_is_waited_for(tmp_path: Path) -> None:
    p = _boot_wait(tmp_path, ["booting"])
    with pytest.raises(subprocess.TimeoutExpired):
        p.wait(timeout=0.5)  # its services script has not returned
    (tmp_path / "init" / "booted").touch()
    out, _ = p.communicate(timeout=10)
    assert out.split()[0] == "init" and int(out.split()[1]) in (0, 1)  # whole seconds


@pytest.mark.parametrize("age_s,relook", [(0, True), (ops.BOOT_GRACE_S - 2, True), (ops.BOOT_GRACE_S + 30, False)])
def test_under_the_embedded_init_only_a_fresh_boot_is_looked_at_twice(tmp_path: Path, age_s: int,
                                                                       relook: bool) -> None:
    out, _ = _boot_wait(tmp_path, ["booting", "booted"], age_s).communicate(timeout=10)
    assert out.split()[0] == "init" and int(out.split()[1]) in (age_s, age_s + 1)  # whole seconds
    tb = FakeTestbed(tmp_path)
    tb.shell = lambda node, cmd: (0, out)
    assert booted(tb, "node1") is relook  # long after its boot, a missing daemon is a dead one: restart at once


def test_a_node_without_either_init_is_not_waited_for(tmp_path: Path) -> None:
    out, _ = _boot_wait(tmp_path, []).communicate(timeout=10)
    assert out == ""


@pytest.mark.parametrize("stack", ["pacemaker", "keepalived"])
def test_every_services_script_marks_when_it_last_started_the_services(tmp_path: Path, stack: str) -> None:
    """At boot and at a harness restart alike: a stack restarted a moment ago is still forking its daemons."""
    from harness.testbed.layout import Layout
    from harness.testbed.nodes import STARTED_MARK, services_script
    from harness.topology import DEFAULT_TESTBED, load_topology

    topo = load_topology(DEFAULT_TESTBED)
    topo = topo.model_copy(update={"cluster": topo.cluster.model_copy(update={"stack": stack})})
    assert services_script(Layout(topo, instance="unit", state_root=tmp_path)).endswith(STARTED_MARK)
    assert "/run/fallover-init/booted" in STARTED_MARK and "fallover-init" in ops.INIT_MARKS


def _booting(tmp_path: Path, refusals: int) -> FakeTestbed:
    """A running node whose SSH refuses the first ``refusals`` connections (its boot has not started sshd)."""
    tb = _node(tmp_path, systemd=True, controller_after=0)
    answer, tries = tb.shell, {"n": 0}

    def shell(node: str, cmd: str) -> tuple[int, str]:
        tries["n"] += 1
        if tries["n"] <= refusals:
            raise TransportError(node, "root@10.81.9.12:22: ConnectionRefusedError: [Errno 111] Connection refused")
        return answer(node, cmd)
    tb.shell = shell
    return tb


def test_a_node_whose_ssh_is_not_up_yet_is_waited_for(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """corosync_kill-node2 on the VMs (2026-12-02): fenced and powered on during the heal, the node refused SSH
    for its boot's first minute; five tries in 2.5 s called the heal of a correct cluster failed."""
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    tb = _booting(tmp_path, refusals=12)
    make_whole(tb, "node2")
    assert any("pidof" in cmd for _, cmd in tb.commands)


def test_a_node_that_never_answers_fails_the_repair_once_its_time_is_up(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ops.time, "sleep", lambda s: None)
    monkeypatch.setattr(ops, "REACH_S", 0.05)
    tb = _booting(tmp_path, refusals=10**9)
    with pytest.raises(TransportError):
        make_whole(tb, "node2")
