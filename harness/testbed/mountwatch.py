"""Where a node's filesystems are mounted, watched on the node instead of asked at every poll.

The poller looks at every node's mounts at every poll (split brain: one shared disk mounted on two
nodes at once). Over SSH one look is a session: sshd forks, then the login shell, `timeout`, `sh` and
`findmnt` start. On an emulated (TCG) VM guest that is about a quarter of a second of its one CPU,
every 2 s: the harness's own commands took 9.5-15 % of each guest's CPU through a case, CPU that the
cluster's takeover waited for (node_stop-node1, 2026-12-02). The kernel says when a mount table
changes (poll(2) on /proc/self/mounts wakes with POLLPRI, as `findmnt --poll` uses it), so one small
process per node, started once, prints the table when it starts and after every change, and costs
nothing in between. It exits when its input closes (the channel, the connection or the harness goes),
so nothing of it outlives the harness; `timeout` bounds it besides.

A node without a live watcher (not started yet, python3 missing, the node rebooted) is read the old way
for that look, and its watcher is started again, unless it failed before it ever reported.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("fallover.ssh")

WATCH_S = 7 * 24 * 3600
"""The watcher's hard limit (`timeout -s KILL`): it exits with its input long before, this only bounds a stray."""
GIVE_UP_AFTER = 2
"""Watchers of one node that died before reporting anything (no python3, refused): then only plain reads."""

WATCHER = r"""
import os, select
f = os.open("/proc/self/mounts", os.O_RDONLY)
p = select.poll()
p.register(f, select.POLLPRI | select.POLLERR)
p.register(0, select.POLLIN | select.POLLHUP)
while True:
    os.lseek(f, 0, 0)
    table = b""
    while True:
        chunk = os.read(f, 65536)
        if not chunk:
            break
        table += chunk
    targets = [line.split()[1] for line in table.splitlines() if len(line.split()) > 1]
    os.write(1, b"\t".join([b"mounts"] + targets) + b"\n")
    if any(fd == 0 for fd, _ in p.poll()):
        break
"""
"""Run as `python3 -S -c WATCHER`: only os and select (C modules), no site. /proc/mounts escapes blanks in
a path as octal (\\040, \\011 for a tab), so a tab separates the targets. Any input, or its end, ends it."""

_OCTAL = re.compile(r"\\([0-7]{3})")


def parse(line: str) -> set[str] | None:
    """The mount targets of one watcher line (/proc/mounts' octal escapes undone); None for any other line.

    >>> sorted(parse("mounts\\t/\\t/srv/app\\t/mnt/with\\\\040blank"))
    ['/', '/mnt/with blank', '/srv/app']
    >>> parse("Traceback (most recent call last):") is None
    True
    """
    words = line.rstrip("\n").split("\t")
    if words[0] != "mounts":
        return None
    return {_OCTAL.sub(lambda m: chr(int(m[1], 8)), w) for w in words[1:] if w}


class Stream(Protocol):
    """What a watcher reads: a paramiko channel (`SshTransport.stream`)."""

    def recv(self, nbytes: int) -> bytes: ...

    def close(self) -> None: ...


class MountWatch:
    """One node's watcher: the targets it last reported, for as long as its stream lives."""

    def __init__(self, node: str, stream: Stream) -> None:
        self.node = node
        self._stream = stream
        self._lock = threading.Lock()
        self._targets: set[str] | None = None
        self.alive = True
        self.reported = False
        self._thread = threading.Thread(target=self._read, name=f"mountwatch-{node}", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        buf = b""
        try:
            while True:
                data = self._stream.recv(65536)
                if not data:
                    break
                *lines, buf = (buf + data).split(b"\n")
                for raw in lines:
                    found = parse(raw.decode(errors="replace"))
                    if found is not None:
                        with self._lock:
                            self._targets, self.reported = found, True
        except Exception as exc:  # noqa: BLE001 - a lost connection ends the watch, whatever paramiko raises
            log.info("%s: mount watcher ended: %s", self.node, exc)
        finally:
            self.alive = False

    def targets(self) -> set[str] | None:
        """The node's mount targets now, or None when this watcher cannot say (not reported yet, or ended)."""
        with self._lock:
            return set(self._targets) if self.alive and self._targets is not None else None

    def close(self) -> None:
        self.alive = False
        try:
            self._stream.close()
        except Exception:  # noqa: BLE001 - closing a channel of a dead connection
            pass


class MountWatches:
    """The watchers of every node of one testbed; ``start(node)`` opens a node's watcher stream."""

    def __init__(self, start: Callable[[str], Stream]) -> None:
        self._start = start
        self._watches: dict[str, MountWatch] = {}
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()  # the poller's thread and the case's may look at once

    def targets(self, node: str, read: Callable[[], set[str]]) -> set[str]:
        """The node's mount targets: from its watcher when that has reported, else ``read()`` (and a watcher
        is started for the next look)."""
        with self._lock:
            found = self._watched(node)
        return found if found is not None else read()

    def _watched(self, node: str) -> set[str] | None:
        """The watcher's report; None when it has none (then it is started, unless it has failed too often)."""
        w = self._watches.get(node)
        if w is not None:
            found = w.targets()
            if found is not None:
                return found
            if not w.alive:
                w.close()
                del self._watches[node]
                if not w.reported:
                    self._failures[node] = self._failures.get(node, 0) + 1
                    if self._failures[node] == GIVE_UP_AFTER:
                        log.warning("%s: no mount watcher (it ended before reporting, %d times): polling instead",
                                    node, GIVE_UP_AFTER)
        if node not in self._watches and self._failures.get(node, 0) < GIVE_UP_AFTER:
            try:
                self._watches[node] = MountWatch(node, self._start(node))
            except Exception as exc:  # noqa: BLE001 - the plain read says what is wrong with the node
                log.info("%s: mount watcher not started: %s", node, exc)
        return None

    def close(self) -> None:
        """End every watcher (each exits on its closed input)."""
        with self._lock:
            for w in self._watches.values():
                w.close()
            self._watches.clear()
