"""`vagrant up` run to its end or stopped: a deadline, and nothing of it left running after Ctrl-C.

vagrant runs in a session of its own (a terminal's Ctrl-C reaches fallover only, which then decides),
with its children (ssh, the provisioners) in its process group. Whatever ends the wait early (Ctrl-C,
SIGTERM turned into KeyboardInterrupt by the CLI, the deadline, a broken progress sink) stops that
whole group before it propagates: otherwise vagrant would go on defining and booting VMs while
`down` removes them, and could leave a domain behind that `down` had already looked for.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.base import Progress
from harness.testbed.vagrantprocs import terminate

STOP_GRACE_S = 10.0
"""SIGTERM to vagrant's group, then SIGKILL what is left after this long."""


def run_vagrant(argv: list[str], *, env: dict[str, str], log: Path, progress: Progress, timeout: float,
                what: str = "vagrant up", doomed: Callable[[], str | None] = lambda: None) -> None:
    """Run ``argv``, append its output to ``log``, report its milestones; raise `TestbedError` on a
    failure or at ``timeout`` (with the output's tail), or as soon as ``doomed()`` (asked about once a
    second) says why the run cannot end well. Stops the process group on any early exit."""
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    lines: queue.Queue[bytes | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc, lines), daemon=True, name="vagrant-output").start()
    deadline = time.monotonic() + timeout
    tail: list[str] = []
    next_look = 0.0
    try:
        with open(log, "ab") as out:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TestbedError(f"{what} did not finish within {timeout:g} s (log {log}):\n"
                                       + "\n".join(tail))
                if time.monotonic() >= next_look:
                    next_look = time.monotonic() + 1.0
                    if why := doomed():
                        raise TestbedError(f"{what} cannot finish: {why} (log {log})")
                try:
                    raw = lines.get(timeout=min(left, 1.0))
                except queue.Empty:
                    continue
                if raw is None:
                    break
                out.write(raw)
                line = raw.decode(errors="replace").rstrip()
                tail = (tail + [line])[-15:]
                if line.startswith("==> ") or "provision " in line:
                    progress(f"vagrant: {line.removeprefix('==> ').strip()[:110]}")
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except BaseException:
        stop_group(proc)
        raise
    if status != 0:
        raise TestbedError(f"{what} failed (log {log}):\n" + "\n".join(tail))


def _pump(proc: subprocess.Popen[bytes], lines: queue.Queue[bytes | None]) -> None:
    assert proc.stdout is not None
    for raw in proc.stdout:
        lines.put(raw)
    lines.put(None)


def stop_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process group vagrant leads (its own session), SIGKILL after `STOP_GRACE_S`; reaped."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    members = _group_members(proc.pid)
    terminate(members, STOP_GRACE_S)  # the leader's children may outlive it: each by its PID
    try:
        proc.wait(timeout=STOP_GRACE_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def _group_members(pgid: int) -> list[int]:
    """Every live process of process group ``pgid`` (the leader included while it lives)."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            if int(stat.rsplit(") ", 1)[1].split()[2]) == pgid:
                found.append(int(d.name))
        except (OSError, ValueError, IndexError):
            continue
    return found
