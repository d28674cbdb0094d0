"""One user of a testbed at a time: `up`, `down`, `inject`, `heal`, backup/restore and a pytest
session each hold the testbed's claim while they run.

Why: two sessions on one testbed instance undo each other's work. Seen on the VM testbed: three
sessions started on the same lab; one's `up` redefined the domains the others were failing over, one's
heal restarted a node the other had just powered off, and the lab was left half-built for all three.
Each saw a cluster that made no sense and blamed it. The second user now gets one line naming the
holder (PID, command, since when) and exit status 2, with nothing touched.

An flock, not a PID file: the kernel drops it when the holder dies, even by SIGKILL, so a crashed run
never leaves a stale claim for `fallover down`/`heal` to trip over. The file is removed on release (the
holder still has the lock when it does, and a waiter that locked a removed file tries again), so a
machine with no session running has no claim file at all. Read-only commands (`status`, `exec`) take no
claim: they are how one looks at a run in progress.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from harness.errors import UsageError
from harness.testbed.layout import Layout
from harness.topology import Topology

def claim_root() -> Path:
    """Where claims live: /run (a tmpfs: a reboot ends every session), FALLOVER_CLAIM_ROOT for tests."""
    return Path(os.environ.get("FALLOVER_CLAIM_ROOT", "/run/fallover-claims"))


_held: dict[Path, int] = {}
"""Claims this process holds, with their depth: a command that calls another (up then status, a session's
fixture then a heal) claims once. flock is per open file, so a second open here would refuse ourselves."""

INHERITED = "FALLOVER_CLAIMS"
"""The claims a process holds, passed down in its environment: what a holder starts (a test that runs
`fallover backup` in the session's testbed, `nightly`'s pytest) works under its parent's claim."""
_INHERITED_HERE = [p for p in os.environ.get(INHERITED, "").split(os.pathsep) if p]


def claim_path(topology: Topology, instance: str | None = None, root: Path | None = None) -> Path:
    """The claim of one testbed instance: named as its namespaces, domains and state are (Layout.prefix)."""
    layout = Layout(topology) if instance is None else Layout(topology, instance=instance)
    return (root or claim_root()) / f"{layout.prefix}.claim"


def holder(path: Path) -> str:
    """Who holds a claim, as its holder wrote it ('PID 123 (`pytest …`) since 06:30:12'), or why not known."""
    try:
        pid, since, command = path.read_text().split("\n", 2)
    except (OSError, ValueError):
        return "another fallover process (it has not yet written its name)"
    started = time.strftime("%H:%M:%S", time.localtime(float(since)))
    return f"PID {pid} (`{command.strip()}`) since {started}"


@contextlib.contextmanager
def claim(topology: Topology, command: str | None = None, *, instance: str | None = None,
          root: Path | None = None) -> Iterator[Path]:
    """Hold the testbed's claim for the block; UsageError (exit 2, nothing touched) if another holds it."""
    path = claim_path(topology, instance, root)
    if path not in _held and str(path) in _INHERITED_HERE and path.exists():
        yield path  # a parent holds it and is alive (its release removes the file)
        return
    if path in _held:
        _held[path] += 1
        try:
            yield path
        finally:
            _held[path] -= 1
        return
    fd = _lock(path, topology)
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n{time.time():.0f}\n{command or ' '.join(sys.argv)}\n".encode())
    _held[path] = 1
    _export()
    try:
        yield path
    finally:
        del _held[path]
        _export()
        with contextlib.suppress(OSError):
            path.unlink()  # still locked: no one else can be using this inode's lock right now
        with contextlib.suppress(OSError):
            path.parent.rmdir()  # only when empty: nothing of fallover is left on an idle machine
        os.close(fd)


def hold(topology: Topology, command: str) -> Callable[[], None]:
    """The claim, held until the returned function is called: for a holder whose end is a callback (a pytest
    session's cleanup, which runs after its testbed is down)."""
    held = claim(topology, command)
    held.__enter__()
    return lambda: held.__exit__(None, None, None)


def _export() -> None:
    os.environ[INHERITED] = os.pathsep.join(dict.fromkeys([*_INHERITED_HERE, *map(str, _held)]))


def _lock(path: Path, topology: Topology) -> int:
    """An exclusive lock on the file at `path` (the one that is there *after* locking: a holder that
    released in between removed the file this process opened)."""
    while True:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except FileNotFoundError:  # a holder's release removed the directory in between
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(path)
            os.close(fd)
            raise UsageError(f"testbed {topology.name} ({path.stem}) is in use by {who}: wait for it to end, "
                             "or stop it and run `fallover heal`") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)
