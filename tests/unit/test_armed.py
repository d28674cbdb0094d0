"""The armed kill (harness/transport/armed.py): nothing is signalled until fire(), and on fire() the kill is done
by the time it returns; a transport without channels gets None (the caller runs the kill as a command)."""

from __future__ import annotations

import os
import select
import subprocess
import time
from collections.abc import Sequence

import pytest

from harness.errors import TransportError
from harness.transport.armed import arm_kill


class PipeChannel:
    """What arm_kill uses of a paramiko channel, over a local process's pipes."""

    def __init__(self, argv: Sequence[str]) -> None:
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None

    def fileno(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def recv_ready(self) -> bool:
        return bool(select.select([self], [], [], 0)[0]) and self.proc.poll() is None

    def recv(self, n: int) -> bytes:
        return os.read(self.fileno(), n)

    def exit_status_ready(self) -> bool:
        return self.proc.poll() is not None

    def sendall(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


class PipeTransport:
    name = "node1"

    def __init__(self, slow_start: float = 0.0) -> None:
        self.slow_start = slow_start

    def stream(self, argv: Sequence[str], *, timeout: float) -> PipeChannel:
        if self.slow_start:
            argv = ["sh", "-c", f"sleep {self.slow_start}; exec \"$@\"", "sh", *argv]
        return PipeChannel(argv)


@pytest.fixture
def victim():  # type: ignore[no-untyped-def]
    p = subprocess.Popen(["sleep", "60"])
    yield p
    p.kill()
    p.wait()


def test_nothing_is_killed_until_fire_and_all_of_it_by_its_return(victim: subprocess.Popen[bytes]) -> None:
    armed = arm_kill(PipeTransport(slow_start=0.3), "KILL", [victim.pid], timeout=10)
    assert armed is not None
    time.sleep(0.3)
    assert victim.poll() is None  # armed, not fired
    armed.fire()
    assert victim.wait(timeout=5) == -9


def test_a_shell_that_never_gets_ready_is_an_error(victim: subprocess.Popen[bytes]) -> None:
    class Silent(PipeTransport):
        def stream(self, argv: Sequence[str], *, timeout: float) -> PipeChannel:
            return PipeChannel(["sleep", "30"])

    with pytest.raises(TransportError, match="did not get ready within 0.5s"):
        arm_kill(Silent(), "KILL", [victim.pid], timeout=0.5)
    assert victim.poll() is None


def test_a_transport_without_channels_runs_the_kill_itself() -> None:
    class Local:
        name = "node1"

    assert arm_kill(Local(), "KILL", [1]) is None  # type: ignore[arg-type]
