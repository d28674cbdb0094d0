"""cgroup-v1 freezer groups: how the embedded testbed finds, freezes and kills a node's processes."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

from harness.errors import TestbedError


def create(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def procs(path: Path) -> list[int]:
    try:
        return [int(p) for p in (path / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def join_self(path: Path) -> None:
    """Move the calling process into the group (used in a child before it execs)."""
    (path / "cgroup.procs").write_text(str(os.getpid()))


def spawn(group: Path, argv: list[str], *, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a detached process of the testbed inside ``group`` (created if needed), output to ``log``.

    Its own session keeps a Ctrl-C meant for the harness away from it; the cgroup is what lets
    `fallover down` find and kill it whatever happened to the process that started it.
    """
    create(group)
    with open(log, "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, start_new_session=True,
                                cwd="/", env=env, preexec_fn=lambda: join_self(group))


def set_state(path: Path, state: str) -> None:
    (path / "freezer.state").write_text(state)


def state(path: Path) -> str:
    try:
        return (path / "freezer.state").read_text().strip()
    except FileNotFoundError:
        return "ABSENT"


def kill_all(path: Path, timeout: float = 20.0) -> None:
    """SIGKILL every task, *then* thaw: a thawed-first frozen node would run user code again."""
    deadline = time.monotonic() + timeout
    while True:
        pids = procs(path)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if state(path) != "THAWED":
            set_state(path, "THAWED")
        if time.monotonic() > deadline:
            raise TestbedError(f"cgroup {path}: tasks {pids} survived SIGKILL for {timeout:g}s")
        time.sleep(0.02)


def remove_tree(root: Path) -> None:
    """Kill everything under ``root`` and remove the (now empty) groups, children first."""
    if not root.exists():
        return
    groups = sorted((p for p in root.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
    for g in [*groups, root]:
        kill_all(g)
    for g in [*groups, root]:
        for _ in range(50):
            try:
                g.rmdir()
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)  # the kernel releases the group a moment after its last task
    parent = root.parent
    try:
        parent.rmdir()  # the shared /fallover level, when no other testbed uses it
    except OSError:
        pass
