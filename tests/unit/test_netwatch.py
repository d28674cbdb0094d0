"""ocf:fallover:netwatch, the TCG guests' link/reachability watcher: the agent's actions with a stand-in
attrd_updater that records its calls, the watcher pinging loopback (the only address a unit test may reach)."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

AGENTS = Path(__file__).resolve().parents[2] / "harness" / "agents"
AGENT = AGENTS / "netwatch"


def _watcher():  # netwatch.py has no .py-importable package: load it by path
    spec = importlib.util.spec_from_loader("netwatch", importlib.machinery.SourceFileLoader(
        "netwatch", str(AGENTS / "netwatch.py")))
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def bin_(tmp_path: Path) -> Path:
    """A directory for PATH with a stand-in attrd_updater that records its arguments in attrd.calls."""
    d = tmp_path / "bin"
    d.mkdir()
    (d / "attrd_updater").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path}/attrd.calls\n')
    (d / "attrd_updater").chmod(0o755)
    return d


@pytest.fixture
def ns() -> Iterator[str]:
    """A network namespace of the test's own, deleted afterwards."""
    name = f"fo-nwtest-{os.getpid()}"
    if subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode != 0:
        pytest.skip("no network namespaces here")
    try:
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False)


@pytest.fixture
def env(tmp_path: Path, bin_: Path) -> dict[str, str]:
    return {"PATH": f"{bin_}:{os.environ['PATH']}", "NETWATCH_RUN": str(tmp_path),
            "NETWATCH_LOG": str(tmp_path / "log"),
            "OCF_RESKEY_daemon": str(AGENTS / "netwatch.py"), "OCF_RESKEY_name": "reach-test"}


def agent(action: str, env: dict[str, str], **params: str) -> int:
    extra = {f"OCF_RESKEY_{k}": v for k, v in params.items()}
    return subprocess.run(["sh", str(AGENT), action], env={**env, **extra}, timeout=60,
                          capture_output=True).returncode


def calls(tmp_path: Path) -> list[str]:
    f = tmp_path / "attrd.calls"
    return f.read_text().splitlines() if f.exists() else []


def test_ping_watcher_starts_keeps_the_attribute_and_is_monitored(env: dict[str, str], tmp_path: Path) -> None:
    assert agent("monitor", env, host="127.0.0.1") == 7  # a probe before start: not running
    assert agent("start", env, host="127.0.0.1", dampen="1s") == 0
    assert calls(tmp_path) == ["-n reach-test -U 1 -d 1s"]  # loopback answers: reachable, in attrd before start returns
    assert agent("monitor", env, host="127.0.0.1") == 0
    assert agent("start", env, host="127.0.0.1") == 0  # idempotent: no second watcher
    pid = int((tmp_path / "netwatch-reach-test.pid").read_text())
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "netwatch"
    assert agent("stop", env) == 0
    assert calls(tmp_path)[-1] == "-D -n reach-test"  # the attribute goes, as with ethmonitor and ping
    assert not Path(f"/proc/{pid}").exists()
    assert agent("monitor", env, host="127.0.0.1") == 7


def test_a_dead_watcher_is_a_failed_monitor(env: dict[str, str], tmp_path: Path) -> None:
    assert agent("start", env, host="127.0.0.1") == 0
    pid = int((tmp_path / "netwatch-reach-test.pid").read_text())
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while Path(f"/proc/{pid}/comm").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert agent("monitor", env) == 1
    assert agent("stop", env) == 0 and agent("monitor", env) == 7


def test_a_link_without_carrier_is_0(env: dict[str, str], tmp_path: Path) -> None:
    env = {**env, "OCF_RESKEY_name": "ethmonitor-test"}
    assert agent("start", env, interface="no-such-nic0") == 0
    assert "-n ethmonitor-test -U 0" in calls(tmp_path)
    assert agent("stop", env) == 0


def test_a_link_change_is_seen_from_the_kernel_event_not_the_next_reread(tmp_path: Path, bin_: Path,
                                                                         ns: str) -> None:
    """A veth adapter in a network namespace of the test's own: down, up, down; the watcher re-reads on
    each event although its periodic re-read is a minute away."""
    ipns = ["ip", "netns", "exec", ns]
    proc = None
    try:
        subprocess.run(ipns + ["ip", "link", "add", "nw0", "type", "veth", "peer", "name", "nw1"], check=True)
        subprocess.run(ipns + ["ip", "link", "set", "nw1", "up"], check=True)  # nw0's carrier: its peer is up
        proc = subprocess.Popen(ipns + [sys.executable, "-S", str(AGENTS / "netwatch.py"), "--name", "link",
                                        "--interface", "nw0", "--interval", "60", "--pidfile", str(tmp_path / "pid")],
                                env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}, stderr=subprocess.DEVNULL)

        def seen(n: int) -> list[str]:
            deadline = time.monotonic() + 30
            while len(calls(tmp_path)) < n and time.monotonic() < deadline:
                time.sleep(0.05)
            return calls(tmp_path)

        assert seen(1) == ["-n link -U 0"]  # created down
        subprocess.run(ipns + ["ip", "link", "set", "nw0", "up"], check=True)
        assert seen(2)[1] == "-n link -U 1"
        subprocess.run(ipns + ["ip", "link", "set", "nw0", "down"], check=True)
        assert seen(3)[2] == "-n link -U 0"
    finally:
        try:
            if proc:
                proc.terminate()  # SIGTERM ends even a wait for the next event (a minute away here)
                assert proc.wait(timeout=10) == 0
        finally:
            if proc and proc.poll() is None:
                proc.kill()


def test_a_client_that_never_answers_is_0_from_the_start(tmp_path: Path, bin_: Path, ns: str) -> None:
    """In a namespace of the test's own with no route anywhere: the echoes cannot leave, no reply comes."""
    proc = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-S", str(AGENTS / "netwatch.py"),
                             "--name", "reach", "--host", "10.99.99.99", "--pidfile", str(tmp_path / "pid")],
                            env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}"}, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "pid").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        assert calls(tmp_path) == ["-n reach -U 0"]  # never a 1 it did not see
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_bad_parameters_are_configuration_errors(env: dict[str, str]) -> None:
    assert agent("validate-all", env) == 6  # neither interface nor host
    assert agent("validate-all", env, interface="lo", host="127.0.0.1") == 6
    assert agent("start", {**env, "OCF_RESKEY_name": ""}, interface="lo") == 6
    assert agent("validate-all", env, interface="lo") == 0
    assert b"<resource-agent name=\"netwatch\"" in subprocess.run(["sh", str(AGENT), "meta-data"],
                                                                  capture_output=True, timeout=10).stdout


def test_link_and_echo_pieces() -> None:
    w = _watcher()
    assert w.link_up("lo") == 1 and w.link_up("no-such-nic0") == 0
    packet = w.echo_request(0x1234, 7)
    assert packet[:2] == b"\x08\x00" and w.checksum(packet) == 0  # a valid ICMP checksum sums to zero


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


class Sent:
    """A socket that only records what was sent."""

    def __init__(self) -> None:
        self.echoes: list[tuple[bytes, tuple[str, int]]] = []

    def sendto(self, data: bytes, address: tuple[str, int]) -> None:
        self.echoes.append((data, address))


def _pinger(clock: Clock):  # type: ignore[no-untyped-def]
    return _watcher().Pinger("10.81.1.1", 1.6, 0.2, clock=clock, sock=Sent())


def _echo_every(p, clock: Clock, seconds: float) -> None:  # type: ignore[no-untyped-def]
    for _ in range(round(seconds / 0.2)):  # the watcher's loop: an echo, then 0.2 s of listening
        p.send()
        clock.t += 0.2


def test_unreachable_once_three_echoes_were_each_unanswered_for_their_time() -> None:
    clock = Clock()
    p = _pinger(clock)
    _echo_every(p, clock, 0.4)
    assert p.value() == 0  # nothing answered yet: never a guessed 1 (the watcher waits out the window)
    p.reply()
    assert p.value() == 1
    _echo_every(p, clock, 1.4)  # the network dies right after that reply: echoes 0.2 s apart, none answered
    assert p.value() == 1  # the third echo went out 1.0 s ago: its 1.2 s are not over
    clock.t += 0.2
    assert p.value() == 0  # 1.6 s after the last reply: three echoes over their time, as ping's 3 attempts
    p.reply()
    assert p.value() == 1  # the next reply


def test_a_watcher_that_was_not_scheduled_is_no_news_about_the_network() -> None:
    clock = Clock()
    p = _pinger(clock)
    p.send()
    p.reply()
    p.send()
    clock.t += 2.5  # the guest (or this process) stood still: no echoes went out meanwhile
    assert p.value() == 1, "one old echo across a stall is no outage"
    _echo_every(p, clock, 1.0)  # it runs again; the answers are slow to come
    assert p.value() == 1, "the echoes sent since have not had their time"
    _echo_every(p, clock, 0.6)
    assert p.value() == 0  # now three of them are over their time unanswered: a real silence


def test_the_unanswered_echoes_kept_are_bounded() -> None:
    clock = Clock()
    p = _pinger(clock)
    p.reply()
    _echo_every(p, clock, 60)  # a minute of outage
    assert len(p.unanswered) == p.KEPT and p.value() == 0
    assert len(p.sock.echoes) == 300 and p.sock.echoes[-1][1] == ("10.81.1.1", 0)
