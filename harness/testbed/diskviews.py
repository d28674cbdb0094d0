"""Per-node views of the shared disk with a volatile write cache: what a power cut loses.

Why: every node used to mount the one loop device, so the host kernel kept a single page
cache (and a single ext4 superblock) that outlived a powered-off node; an application that
acknowledged before fsync lost nothing here, though it would on a real power cut. Jepsen's
lazyfs models that loss with a FUSE layer that keeps writes until fsync and forgets them on
``clear-cache``. This is the same idea one level down, at the block device a node mounts:

- each incarnation of a node gets its own *view*, a file the FUSE layer exposes next to the
  image, with its own loop device (so its own ext4 superblock and page cache);
- a write to a view lands in the view's cache; a FLUSH (ext4's journal commit, any fsync: the
  loop device turns it into fsync on the file) writes the cache to the image;
- ``cut`` is the power cut: the cache is dropped, and from then on the view discards every
  write (the dying ext4's own write-back at umount) and never waits on a hung disk.

Other views read the image: the next node to mount sees exactly what was flushed.
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
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

PAGE = 4096
NAME_RE = re.compile(r"[a-z0-9][a-z0-9._-]{0,63}")


@dataclass
class ViewStats:
    """What a view did: the evidence that a cut dropped writes (or that there was nothing to drop)."""

    state: str = "on"            # "on", or "cut" after the power cut
    opens: int = 0               # open handles: the loop device holds one while it is bound
    cached_pages: int = 0        # written since the last flush (lost if cut now)
    flushes: int = 0
    flushed_pages: int = 0
    dropped_pages: int = 0       # cache dropped by the cut
    discarded_writes: int = 0    # writes that arrived after the cut


class View:
    """One node's block-level path to the image: reads see its own cache over the image.

    One lock serialises the view's I/O: a flush applies the cache and fsyncs the image under
    it, so no read sees a page half-way between cache and image, and a cut either precedes a
    flush (the flush finds nothing) or follows it (the data is on the image, as a real disk
    that acknowledged the FLUSH before the power went).
    """

    def __init__(self, name: str, fd: int, size: int) -> None:
        self.name, self._fd, self.size = name, fd, size
        self._pages: dict[int, bytes | bytearray] = {}
        self._lock = threading.Lock()
        self.stats = ViewStats()

    @property
    def cut(self) -> bool:
        return self.stats.state == "cut"

    def write(self, data: bytes, offset: int) -> int:
        if offset + len(data) > self.size:
            raise OSError(errno.ENOSPC, f"write beyond the end of view {self.name}")
        with self._lock:
            if self.cut:
                self.stats.discarded_writes += 1
                return len(data)
            view, pos, end = memoryview(data), offset, offset + len(data)
            while pos < end:
                index, within = divmod(pos, PAGE)
                n = min(PAGE - within, end - pos)
                chunk = view[pos - offset:pos - offset + n]
                if n == PAGE:
                    self._pages[index] = bytes(chunk)
                else:  # a partial page: start from what a read would return
                    page = self._pages.get(index)
                    if not isinstance(page, bytearray):
                        page = bytearray(page if page is not None else self._image_page(index))
                        self._pages[index] = page
                    page[within:within + n] = chunk
                pos += n
            return len(data)

    def read(self, size: int, offset: int) -> bytes:
        with self._lock:
            data = os.pread(self._fd, size, offset)
            if self.cut or not self._pages or not data:
                return data
            out = bytearray(data)
            end = offset + len(out)
            for index in range(offset // PAGE, (end - 1) // PAGE + 1):
                page = self._pages.get(index)
                if page is None:
                    continue
                lo, hi = max(offset, index * PAGE), min(end, (index + 1) * PAGE)
                out[lo - offset:hi - offset] = page[lo - index * PAGE:hi - index * PAGE]
            return bytes(out)

    def flush(self, datasync: bool = True) -> None:
        """Write the cache to the image (runs of adjacent pages in one pwrite), then fsync it."""
        with self._lock:
            self.stats.flushes += 1
            if self.cut or not self._pages:
                return  # every earlier flush fsynced the image: nothing of this view is unsynced
            run_start, chunks = -1, list[bytes | bytearray]()
            for index in sorted(self._pages):
                if chunks and index != run_start + len(chunks):
                    self._pwrite_all(b"".join(chunks), run_start * PAGE)
                    chunks = []
                if not chunks:
                    run_start = index
                chunks.append(self._pages[index])
            if chunks:
                self._pwrite_all(b"".join(chunks), run_start * PAGE)
            (os.fdatasync if datasync else os.fsync)(self._fd)
            self.stats.flushed_pages += len(self._pages)
            self._pages.clear()

    def power_cut(self) -> int:
        """Drop the cache and discard every later write; returns how many pages were dropped."""
        with self._lock:
            self.stats.state = "cut"
            return self._drop()

    def lose_cache(self) -> int:
        """Drop the cache but stay on: a FLUSH failed (the disk was pulled), so what it held never
        reaches the disk. Kept, it would land at some later flush, over what other nodes wrote since."""
        with self._lock:
            return self._drop()

    def _drop(self) -> int:
        dropped = len(self._pages)
        self._pages.clear()
        self.stats.dropped_pages += dropped
        return dropped

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            self.stats.cached_pages = len(self._pages)
            return asdict(self.stats)

    def _image_page(self, index: int) -> bytes:
        page = os.pread(self._fd, PAGE, index * PAGE)
        return page + bytes(PAGE - len(page))

    def _pwrite_all(self, data: bytes, offset: int) -> None:
        view = memoryview(data)
        while view:
            n = os.pwrite(self._fd, view, offset)
            view, offset = view[n:], offset + n


class Views:
    """The views of one image, by name; a cut view goes away when its last handle is released."""

    def __init__(self, fd: int, reserved: tuple[str, ...], on_cut: Any = None) -> None:
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
            view = self._views[name] = View(name, self._fd, os.fstat(self._fd).st_size)
            return view

    def cut(self, name: str) -> dict[str, Any]:
        view = self._views.get(name)
        if view is None:
            raise ValueError(f"no view {name!r}")
        view.power_cut()
        if self._on_cut is not None:
            self._on_cut()
        with self._lock:
            if view.stats.opens == 0:
                self._views.pop(name, None)
        return view.snapshot()

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
        return {name: view.snapshot() for name, view in sorted(self._views.items())}

    def command(self, line: str) -> dict[str, Any]:
        """One control request → its JSON-able answer; errors are answers too (`error`)."""
        words = line.split()
        try:
            if words == ["status"]:
                return {"views": self.status()}
            if len(words) == 2 and words[0] == "add":
                self.add(words[1])
                return {"view": words[1], **self._views[words[1]].snapshot()}
            if len(words) == 2 and words[0] == "cut":
                return {"view": words[1], **self.cut(words[1])}
        except ValueError as exc:
            return {"error": str(exc)}
        return {"error": f"unknown request {line.strip()!r} (add NAME, cut NAME, status)"}


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
