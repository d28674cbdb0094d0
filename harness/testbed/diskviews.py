"""Per-node views of the shared disk that a power cut rolls back to their last FLUSH.

Why: every node used to mount the one loop device, so the host kernel kept a single page
cache (and a single ext4 superblock) that outlived a powered-off node; an application that
acknowledged before fsync lost nothing here, though it would on a real power cut. Jepsen's
lazyfs models that loss with a FUSE layer that keeps writes until fsync and forgets them on
``clear-cache``. This is the same idea one level down, at the block device a node mounts:

- each incarnation of a node gets its own *view*, a file the FUSE layer exposes next to the
  image, with its own loop device (so its own ext4 superblock and page cache, which die with
  the node's mount namespace);
- a write to a view goes to the image at once, and the view keeps what each page held before
  its first write since the last FLUSH (ext4's journal commit, any fsync: the loop device
  turns it into fsync on the file). A FLUSH forgets those old contents: the writes are durable;
- ``cut`` is the power cut: the view writes the old contents back (the image is as it was at
  the view's last FLUSH, a state ext4 recovers from like any crash) and from then on discards
  every write (the dying ext4's own write-back at umount) and never waits on a hung disk.

Why write-through with an undo log rather than a write cache that a FLUSH applies (lazyfs's
way): a cache private to one node goes stale. An ext4 that aborted on a pulled disk never
flushes again, and its cache, kept, surfaced later over what the next node wrote (seen: "bad
block bitmap checksum" after a disk_pull). Here the image always holds the newest data, and a
write by any other view takes those pages out of every undo log: rolling them back would undo
the other node's writes, and a FLUSH by another view empties every other undo log: the next
node committed on top of what they left. So the next node to mount after a power cut (which
comes first: fencing precedes any takeover) sees only flushed data.

The control socket (``add NAME``, ``cut NAME``, ``status``; one JSON line back) is served by
a thread of its own, so it answers even when every FUSE worker is held by a ``hang``.
"""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PAGE = 4096
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass
class ViewStats:
    """What a view did: the evidence that a cut rolled writes back (or that there was nothing to undo)."""

    state: str = "on"            # "on", or "cut" after the power cut
    opens: int = 0               # open handles: the loop device holds one while it is bound
    unflushed_pages: int = 0     # written since the last flush (rolled back if cut now)
    flushes: int = 0
    rolled_back_pages: int = 0   # what the cut undid
    discarded_writes: int = 0    # writes that arrived after the cut


class View:
    """One node's block-level path to the image, with the old contents of the pages it has not flushed."""

    def __init__(self, name: str, size: int) -> None:
        self.name, self.size = name, size
        self.undo: dict[int, bytes] = {}  # page index -> what the image held at the view's last FLUSH
        self.stats = ViewStats()

    @property
    def cut(self) -> bool:
        return self.stats.state == "cut"

    def snapshot(self) -> dict[str, Any]:
        self.stats.unflushed_pages = len(self.undo)
        return asdict(self.stats)


class Views:
    """The views of one image. One lock orders every write, flush and cut against each other.

    A cut view goes away when its last handle is released (its loop device is gone).
    """

    def __init__(self, fd: int, reserved: tuple[str, ...], on_cut: Callable[[], None] | None = None) -> None:
        self._fd, self._reserved = fd, reserved
        self._views: dict[str, View] = {}
        self._lock = threading.Lock()
        self._on_cut = on_cut  # wakes I/O held by a hang, so that a cut view stops waiting

    def get(self, name: str) -> View | None:
        return self._views.get(name)

    def names(self) -> list[str]:
        return sorted(self._views)

    def add(self, name: str) -> View:
        if not NAME_RE.fullmatch(name) or name in self._reserved:
            raise ValueError(f"bad view name {name!r}")
        with self._lock:
            if name in self._views:
                raise ValueError(f"view {name!r} exists already")
            view = self._views[name] = View(name, os.fstat(self._fd).st_size)
            return view

    def write(self, view: View | None, data: bytes, offset: int) -> int:
        """Write through to the image; `view` None is the raw image (the harness's own writes)."""
        if view is not None and offset + len(data) > view.size:
            raise OSError(errno.ENOSPC, f"write beyond the end of view {view.name}")
        with self._lock:
            if view is not None and view.cut:
                view.stats.discarded_writes += 1
                return len(data)
            pages = range(offset // PAGE, (offset + len(data) - 1) // PAGE + 1) if data else range(0)
            for other in self._views.values():
                if other is not view and other.undo:
                    for index in pages:
                        other.undo.pop(index, None)
            if view is not None:
                for index in pages:
                    if index not in view.undo:
                        view.undo[index] = os.pread(self._fd, PAGE, index * PAGE)
            return _pwrite_all(self._fd, data, offset)

    def flush(self, view: View | None, datasync: bool = True) -> None:
        """Make the image durable; the view's writes so far can no longer be rolled back."""
        with self._lock:
            if view is not None:
                view.stats.flushes += 1
                if view.cut:
                    return
                pending, view.undo = view.undo, {}
            for other in self._views.values():
                # another node committed on top of what they left unflushed (an ext4 that aborted on a
                # pulled disk never flushes again): that is history now, never to be rolled back
                if other is not view:
                    other.undo.clear()
        try:
            (os.fdatasync if datasync else os.fsync)(self._fd)
        except OSError:
            if view is not None:
                with self._lock:  # not durable: the last FLUSH that was stays the point to roll back to
                    view.undo.update(pending)
            raise

    def cut(self, name: str) -> dict[str, Any]:
        """The power cut: roll the view back to its last FLUSH, discard whatever it writes from now."""
        with self._lock:
            view = self._views.get(name)
            if view is None:
                raise ValueError(f"no view {name!r}")
            if not view.cut:
                view.stats.state = "cut"
                for index, old in sorted(view.undo.items()):
                    _pwrite_all(self._fd, old, index * PAGE)
                view.stats.rolled_back_pages += len(view.undo)
                view.undo.clear()
                os.fdatasync(self._fd)
            if view.stats.opens == 0:
                self._views.pop(name, None)
            answer = view.snapshot()
        if self._on_cut is not None:
            self._on_cut()
        return answer

    def opened(self, name: str) -> None:
        with self._lock:
            self._views[name].stats.opens += 1

    def released(self, name: str) -> None:
        with self._lock:
            view = self._views.get(name)
            if view is None:
                return
            view.stats.opens -= 1
            if view.cut and view.stats.opens <= 0:
                del self._views[name]

    def status(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {name: view.snapshot() for name, view in sorted(self._views.items())}

    def command(self, line: str) -> dict[str, Any]:
        """One control request → its JSON-able answer; errors are answers too (`error`)."""
        words = line.split()
        try:
            if words == ["status"]:
                return {"views": self.status()}
            if len(words) == 2 and words[0] == "add":
                return {"view": words[1], **self.add(words[1]).snapshot()}
            if len(words) == 2 and words[0] == "cut":
                return {"view": words[1], **self.cut(words[1])}
        except (ValueError, OSError) as exc:
            return {"error": str(exc)}
        return {"error": f"unknown request {line.strip()!r} (add NAME, cut NAME, status)"}


def _pwrite_all(fd: int, data: bytes, offset: int) -> int:
    view = memoryview(data)
    while view:
        n = os.pwrite(fd, view, offset)
        view, offset = view[n:], offset + n
    return len(data)


def serve_control(views: Views, path: Path) -> threading.Thread:
    """Answer control requests on a unix socket at `path`, in a daemon thread."""
    path.unlink(missing_ok=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    server.bind(str(path))
    os.chmod(path, 0o600)
    server.listen(16)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                conn.settimeout(5)
                try:
                    line = conn.makefile("r", encoding="utf-8").readline(4096)
                    conn.sendall((json.dumps(views.command(line)) + "\n").encode())
                except OSError:
                    continue  # a client that went away: its problem, not the daemon's

    thread = threading.Thread(target=loop, name="views-control", daemon=True)
    thread.start()
    return thread


def request(path: Path, line: str, timeout: float = 10.0) -> dict[str, Any]:
    """Send one control request to the daemon at socket `path`; raises OSError on a refusal."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout)
        conn.connect(str(path))
        conn.sendall(line.encode() + b"\n")
        answer = conn.makefile("r", encoding="utf-8").readline()
    if not answer:
        raise OSError(errno.EPROTO, f"no answer from {path} to {line!r}")
    reply: dict[str, Any] = json.loads(answer)
    if "error" in reply:
        raise OSError(errno.EINVAL, f"{path}: {line}: {reply['error']}")
    return reply
