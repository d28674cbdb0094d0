"""The SSH transport's pure parts: the command a node runs (sudo, timeout, env), errors without secrets."""

from __future__ import annotations

import shlex
from typing import Any

import paramiko
import pytest

from harness.errors import CommandFailed, CommandTimedOut
from harness.inventory import SshHost
from harness.transport.ssh import SshTransport, describe, wrap


def test_root_runs_the_command_under_a_group_killing_timeout() -> None:
    line = wrap(["echo", "a b"], timeout=5, user="root", sudo=True)
    assert shlex.split(line) == ["timeout", "-s", "KILL", "5", "echo", "a b"]  # root needs no sudo


def test_a_user_with_sudo_goes_through_sudo_n_which_never_asks() -> None:
    line = wrap(["crm_mon", "-1"], timeout=2.5, user="ops", sudo=True, env={"LC_ALL": "C"})
    assert shlex.split(line) == ["sudo", "-n", "--", "timeout", "-s", "KILL", "2.5", "env", "LC_ALL=C", "crm_mon", "-1"]
    assert shlex.split(wrap(["id"], timeout=1, user="ops", sudo=False))[0] == "timeout"


def test_connect_failures_are_one_clause_without_key_material() -> None:
    assert "authentication failed" in describe(paramiko.AuthenticationException("Authentication failed."))
    leaked = ValueError("bad key -----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA")
    text = describe(leaked)
    assert "b3Blbn" not in text and "BEGIN" not in text and "\n" not in text
    assert describe(TimeoutError()) == "connection timed out"


class FakeChannel:
    """Just enough of paramiko.Channel for `run`: scripted output and exit status."""

    def __init__(self, out: bytes, err: bytes, status: int) -> None:
        self.out, self.err, self.status = out, err, status
        self.command = ""
        self.sent = b""
        self.closed = False
        self.eof_received = True

    def exec_command(self, command: str) -> None:
        self.command = command

    def sendall(self, data: bytes) -> None:
        self.sent += data

    def shutdown_write(self) -> None: ...

    def fileno(self) -> int:
        import os

        r, _ = os.pipe()
        return r

    def recv_ready(self) -> bool:
        return bool(self.out)

    def recv_stderr_ready(self) -> bool:
        return bool(self.err)

    def recv(self, n: int) -> bytes:
        data, self.out = self.out, b""
        return data

    def recv_stderr(self, n: int) -> bytes:
        data, self.err = self.err, b""
        return data

    def exit_status_ready(self) -> bool:
        return True

    def recv_exit_status(self) -> int:
        return self.status

    def close(self) -> None:
        self.closed = True


def fake(monkeypatch: pytest.MonkeyPatch, chan: FakeChannel, **host: Any) -> SshTransport:
    t = SshTransport("node1", SshHost(host="db1", **host), known_hosts=None, strict=True, connect_timeout=1)

    class Conn:
        def open_session(self, timeout: float) -> FakeChannel:
            return chan

    monkeypatch.setattr(t, "connect", lambda: Conn())
    return t


def test_result_shows_the_callers_argv_never_the_wrapper_or_env(monkeypatch: pytest.MonkeyPatch) -> None:
    chan = FakeChannel(b"out\n", b"denied\n", 3)
    t = fake(monkeypatch, chan, user="ops", sudo=True)
    with pytest.raises(CommandFailed) as e:
        t.run(["curl", "-H", "x"], timeout=5, env={"API_TOKEN": "s3cr3t"}, input="payload")
    r = e.value.result
    assert r.argv == ("curl", "-H", "x") and r.exit_status == 3 and r.stderr == "denied\n"
    assert "s3cr3t" in chan.command and chan.sent == b"payload"  # it reached the node...
    assert "s3cr3t" not in str(e.value) and "s3cr3t" not in repr(r)  # ...and nothing that is reported
    assert "sudo" not in str(e.value)


def test_a_kill_at_the_deadline_is_a_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    t = fake(monkeypatch, FakeChannel(b"", b"", 137))
    with pytest.raises(CommandTimedOut) as e:
        t.run(["sleep", "9"], timeout=0)
    assert e.value.result.exit_status is None and e.value.timeout == 0
    assert fake(monkeypatch, FakeChannel(b"", b"", 137)).run(["x"], timeout=60, check=False).exit_status == 137


def test_an_out_of_band_failure_names_the_key_never_the_command_line(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from harness.errors import TestbedError
    from harness.testbed.ssh import SshTestbed
    from harness.topology import load_topology
    from tests.unit.test_ssh_inventory import real_inventory

    raw = real_inventory()
    raw["ssh"]["oob"] = {"power_off": "echo failed >&2; exit 4 # -P hunter2", "power_on": "true",
                         "power_status": "echo on"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    tb = SshTestbed(load_topology(tmp_path / "t.yaml"), instance="unit")
    assert tb.running("node2") is True
    with pytest.raises(TestbedError) as e:
        tb.power_off("node2")
    assert str(e.value) == "ssh.oob.power_off for node2 exited 4: failed" and "hunter2" not in str(e.value)


@pytest.mark.parametrize("mode, letter, oob_calls", [("reboot", "b", []), ("off", "o", ["power_on"])])
def test_sysrq_cuts_the_power_from_inside_and_waits_for_silence(tmp_path, monkeypatch, mode, letter,  # type: ignore[no-untyped-def]
                                                                 oob_calls) -> None:
    import yaml

    from harness.testbed import ssh as sshmod
    from harness.testbed import sshpower
    from harness.topology import load_topology
    from tests.unit.test_ssh_inventory import real_inventory

    raw = real_inventory()
    raw["ssh"]["oob"] = {"sysrq": mode} if mode == "reboot" else {"sysrq": mode, "power_on": "y", "power_status": "z"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    tb = sshmod.SshTestbed(load_topology(tmp_path / "t.yaml"), instance="unit")
    sent: list[str] = []
    answers = iter([True, True, False])  # the node still answers twice after the trigger, then is silent
    monkeypatch.setattr(tb, "_sh", lambda node, script, **kw: sent.append(f"{node}: {script}") or "")
    monkeypatch.setattr(sshpower, "_answers", lambda host, port, timeout=1.0: next(answers))
    monkeypatch.setattr(sshpower.time, "sleep", lambda s: None)
    called: list[str] = []
    monkeypatch.setattr(tb, "_oob", lambda key, **kw: called.append(key) or "")
    monkeypatch.setattr(tb, "_reach", lambda node, first: called.append("reach") or True)
    tb.power_off("node2")
    assert sent == [(f"node2: setsid -f sh -c 'sleep 0.3; echo {letter} > /proc/sysrq-trigger' >/dev/null 2>&1 "
                     "</dev/null")]
    assert tb.running("node2") is False and called == []  # no out-of-band command cut it
    tb.power_on("node2")
    assert called == [*oob_calls, "reach"]  # `reboot` boots by itself: only wait for SSH


def test_a_sysrq_that_did_not_cut_the_power_is_an_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import yaml

    from harness.errors import TestbedError
    from harness.testbed import ssh as sshmod
    from harness.testbed import sshpower
    from harness.topology import load_topology
    from tests.unit.test_ssh_inventory import real_inventory

    raw = real_inventory()
    raw["ssh"]["oob"] = {"sysrq": "reboot"}
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    tb = sshmod.SshTestbed(load_topology(tmp_path / "t.yaml"), instance="unit")
    monkeypatch.setattr(tb, "_sh", lambda node, script, **kw: "")
    monkeypatch.setattr(sshpower, "_answers", lambda host, port, timeout=1.0: True)
    monkeypatch.setattr(sshpower, "SYSRQ_WAIT_S", 0.0)
    with pytest.raises(TestbedError, match=r"node1 still answers on db1\.example\.net:22 0s after sysrq 'b'"):
        tb.power_off("node1")
