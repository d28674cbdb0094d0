"""The transport interface and the one place that runs a local process with a hard timeout."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from typing import Protocol

from harness import oplog
from harness.errors import CommandFailed, CommandTimedOut
from harness.result import Result

Command = str | Sequence[str]


def as_argv(cmd: Command) -> tuple[str, ...]:
    """A string is a shell command line (as a user types it); a sequence is an exact argv."""
    return ("/bin/sh", "-c", cmd) if isinstance(cmd, str) else tuple(cmd)


class Transport(Protocol):
    """Runs commands on one machine of the testbed (a node, the client, the host)."""

    name: str

    def run(self, cmd: Command, *, timeout: float, check: bool = True,
            env: Mapping[str, str] | None = None, input: str | None = None) -> Result: ...

    def alive(self) -> bool: ...


def run_process(node: str, argv: Sequence[str], *, timeout: float, check: bool = True,
                env: Mapping[str, str] | None = None, input: str | None = None,
                shown_argv: Sequence[str] | None = None) -> Result:
    """Run ``argv`` here with a mandatory timeout; on timeout the whole process group dies.

    ``shown_argv`` is what the Result reports (the user's command, not the nsenter wrapper).
    """
    started_at = time.time()
    t0 = time.monotonic()
    full_env = None if env is None else {**os.environ, **env}
    proc = subprocess.Popen(list(argv), stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, errors="replace",
                            env=full_env, start_new_session=True)
    try:
        out, err = proc.communicate(input=input, timeout=timeout)
        status: int | None = proc.returncode
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        out, err = proc.communicate()
        status = None
    except BaseException:
        _kill_group(proc)  # Ctrl-C: never leave a command of ours running in a node
        proc.wait()
        raise
    result = Result(node=node, argv=tuple(shown_argv or argv), exit_status=status, stdout=out, stderr=err,
                    duration_s=time.monotonic() - t0, started_at=started_at)
    oplog.command(result)  # the recovery runbook's record (a no-op outside a recorded phase)
    if status is None:
        raise CommandTimedOut(result, timeout)
    if check and status != 0:
        raise CommandFailed(result)
    return result


def _kill_group(proc: subprocess.Popen[str]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
