"""Pullable shared disk for the embedded testbed: a FUSE pass-through with a fault switch.

No device-mapper (dm-flakey) and no nbd here, so a "disk pull" is made in user space: FUSE
exposes the disk image, a loop device is made on the *exposed* file, and the cluster mounts
ext4 from that loop device. Every block passes through this daemon, which fails it (EIO) or
holds it (hang) on command, like a pulled or frozen SAN path. Mount point layout::

    <mountpoint>/<image name>   the image, passed through with pread/pwrite
    <mountpoint>/control        read: current mode + "\\n"; write a mode word to switch
    <mountpoint>/<view>         a node's view, which a power cut rolls back to its last
                                flush (diskviews.py); added and cut through ``--control``

The daemon is its own process (``python -m harness.testbed.faultdisk``) so that held I/O
never blocks the harness; it is stopped by PID with SIGTERM, which unmounts.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import errno
import logging
import os
import re
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

# libfuse 3, always: mfusepy looks for libfuse 2 first, which a machine with the VM packages also has
# (guestmount pulls it in), and under libfuse 2 neither our libfuse 3 calls (_Libfuse: a SIGTERM during a
# hang) nor `max_idle_threads` work ("fuse: unknown option", no mount: a fresh machine's `fallover up`).
if "FUSE_LIBRARY_PATH" not in os.environ and (_fuse3 := ctypes.util.find_library("fuse3")):
    os.environ["FUSE_LIBRARY_PATH"] = _fuse3
from mfusepy import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]  # noqa: E402

from harness.testbed.diskviews import View, Views, serve_control
from harness.testbed.loops import attach_loop, detach_loop, loop_backing_file  # noqa: F401 - their old home

MODES: tuple[str, ...] = ("ok", "eio", "eio-read", "eio-write", "hang")
CONTROL = "control"
_HANG_POLL_S = 0.2  # bounds how long SIGTERM waits for a held thread; `ok` wakes at once


class _Libfuse:
    """libfuse calls mfusepy does not wrap, with pointer-correct ctypes signatures.

    libfuse's SIGTERM handler only sets a flag in C, and libfuse joins every worker before
    it unmounts: a Python thread held in `hang` never sees the signal, so it polls
    ``fuse_session_exited`` instead, and SIGTERM still unmounts during a hang.
    """

    def __init__(self) -> None:
        name = ctypes.util.find_library("fuse3")
        self.lib = ctypes.CDLL(name) if name else None
        if self.lib is not None:
            self.lib.fuse_get_context.restype = ctypes.POINTER(ctypes.c_void_p)  # 1st: fuse*
            self.lib.fuse_get_session.argtypes = [ctypes.c_void_p]
            self.lib.fuse_get_session.restype = ctypes.c_void_p
            self.lib.fuse_session_exited.argtypes = [ctypes.c_void_p]

    def current_session(self) -> int | None:
        """Session of the calling FUSE worker (valid only inside an operation)."""
        fuse_ptr = self.lib.fuse_get_context().contents.value if self.lib else None
        return self.lib.fuse_get_session(fuse_ptr) if self.lib and fuse_ptr else None

    def exited(self, session: int | None) -> bool:
        return bool(session and self.lib and self.lib.fuse_session_exited(session))


class FaultDisk(Operations):  # type: ignore[misc]
    """FUSE operations exposing one image file plus the ``control`` file.

    Image I/O is pread/pwrite on one O_RDWR descriptor (positional calls are thread-safe,
    so libfuse runs requests in parallel). Files are opened ``direct_io``, so the kernel
    keeps no page cache of the image: otherwise reads could be served from cache while the
    disk is "pulled", and a failed write would leave cached data the image never got.
    """

    use_ns = True  # mfusepy: nanosecond timestamps (silences its deprecation warning)

    def __init__(self, image: Path, mountpoint: Path, control: Path | None = None) -> None:
        self.image, self.mountpoint, self.control = Path(image), Path(mountpoint), control
        self.name = self.image.name
        if self.name == CONTROL:
            raise ValueError(f"image must not be named {CONTROL!r}")
        self._fd = os.open(self.image, os.O_RDWR | os.O_CLOEXEC)
        self._mode = "ok"
        self._cond = threading.Condition()
        self.views = Views(self._fd, reserved=(CONTROL, self.name), on_cut=self._wake)
        self._libfuse = _Libfuse()
        self._session: int | None = None
        self.ready = False  # init ran: the kernel connection was up
        self.pidfile: Path | None = None

    @property
    def mode(self) -> str:
        return self._mode  # reading one reference is atomic; writers hold the condition

    def set_mode(self, mode: str) -> None:
        """Switch behaviour; leaving `hang` wakes every held I/O thread."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}, expected one of {MODES}")
        with self._cond:
            self._mode = mode
            self._cond.notify_all()

    def _wake(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def _view(self, path: str) -> View | None:
        return self.views.get(path[1:]) if path not in ("/" + CONTROL, "/" + self.name) else None

    def _gate(self, kind: str, view: View | None = None) -> None:
        """Apply the current mode to one image I/O of `kind` ("read" or "write").

        A cut view is a powered-off node's: its I/O never reaches the disk, so the disk's
        mode does not apply (nor does a hang hold the dying node's umount).
        """
        with self._cond:
            while self._mode == "hang" and not (view is not None and view.cut):
                if self._libfuse.exited(self._session):
                    raise FuseOSError(errno.EIO)  # SIGTERM during a hang: let libfuse exit
                self._cond.wait(_HANG_POLL_S)
            mode = self._mode
        if mode in ("eio", f"eio-{kind}") and not (view is not None and view.cut):
            raise FuseOSError(errno.EIO)

    def init(self, path: str) -> None:
        """The kernel connection is up, so the mount is usable: signal readiness."""
        self._session = self._libfuse.current_session()
        self.ready = True
        if self.pidfile is not None:
            self.pidfile.write_text(f"{os.getpid()}\n")

    def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
        now = time.time_ns()
        times = {"st_atime": now, "st_mtime": now, "st_ctime": now}
        if path == "/":
            return {"st_mode": stat.S_IFDIR | 0o755, "st_nlink": 2, **times}
        if path == "/" + CONTROL:
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1,
                    "st_size": len(self.mode) + 1, **times}
        if path == "/" + self.name:  # metadata never fails: a pulled disk still has a size
            st = os.fstat(self._fd)
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": st.st_size,
                    "st_blocks": st.st_blocks, "st_atime": st.st_atime_ns,
                    "st_mtime": st.st_mtime_ns, "st_ctime": st.st_ctime_ns}
        view = self.views.get(path[1:])
        if view is not None:
            return {"st_mode": stat.S_IFREG | 0o600, "st_nlink": 1, "st_size": view.size, **times}
        raise FuseOSError(errno.ENOENT)

    def readdir(self, path: str, fh: int) -> Iterable[str]:  # only "/" is a directory
        return [".", "..", CONTROL, self.name, *self.views.names()]

    def open(self, path: str, flags: int) -> int:
        if path not in ("/" + CONTROL, "/" + self.name):
            try:
                self.views.opened(path[1:])
            except KeyError:
                raise FuseOSError(errno.ENOENT) from None
        return 0

    def release(self, path: str, fh: int) -> int:
        """A view's last handle gone (its loop device cleared): a cut view is forgotten."""
        self.views.released(path[1:])
        return 0

    def read(self, path: str, size: int, offset: int, fh: int) -> bytes:
        if path == "/" + CONTROL:
            return (self.mode + "\n").encode()[offset:offset + size]
        self._gate("read", self._view(path))
        return os.pread(self._fd, size, offset)

    def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
        if path == "/" + CONTROL:
            try:
                self.set_mode(data.decode().strip())
            except (UnicodeDecodeError, ValueError):
                raise FuseOSError(errno.EINVAL) from None
            return len(data)
        view = self._view(path)
        self._gate("write", view)
        return self.views.write(view, data, offset)

    def truncate(self, path: str, length: int, fh: int | None = None) -> int:
        """O_TRUNC on `control` (a shell ``>``) must succeed; the image is passed through."""
        if self._view(path) is not None:
            raise FuseOSError(errno.EPERM)  # a view is a disk: its size is the image's
        if path != "/" + CONTROL:
            self._gate("write")
            os.ftruncate(self._fd, length)
        return 0

    def fsync(self, path: str, datasync: int, fh: int) -> int:
        """A loop-device flush (the ext4 journal commit) lands here: honour it or fail it.
        On a view it is also the point a power cut rolls back to."""
        if path != "/" + CONTROL:
            view = self._view(path)
            self._gate("write", view)
            self.views.flush(view, bool(datasync))
        return 0

    def flush(self, path: str, fh: int) -> int:
        return 0  # close(2): nothing is buffered here, and close must neither hang nor fail

    def _escape_hatch(self) -> None:
        """SIGUSR1 switches to `ok` without a FUSE worker: libfuse 3.14 runs at most 10
        (fuse_main_real ignores max_threads), and ten I/Os held in `hang` leave none to
        serve a write to `control`; only a signal can end that hang (see `force_ok`)."""
        while True:
            signal.sigwait({signal.SIGUSR1})
            self.set_mode("ok")

    def serve(self, pidfile: Path | None = None) -> None:
        """Mount and serve in the foreground until SIGTERM/SIGINT or an external unmount.

        Multithreaded, so held I/O does not stop the control file or other I/O. On SIGTERM
        libfuse leaves its loop, joins its workers and unmounts; with auto_unmount,
        fusermount3 removes the mount even if this process is SIGKILLed.
        """
        self.pidfile = pidfile
        # Blocked before libfuse starts its workers (they inherit the mask): only the
        # escape thread receives SIGUSR1.
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGUSR1})
        threading.Thread(target=self._escape_hatch, name="sigusr1", daemon=True).start()
        if self.control is not None:
            serve_control(self.views, self.control)
        try:
            FUSE(self, str(self.mountpoint), foreground=True, nothreads=False,
                 max_idle_threads=10, direct_io=True, subtype="faultdisk",
                 fsname="faultdisk:" + self.name.replace(",", "_"), auto_unmount=True)
        except RuntimeError:
            # libfuse 3.14 returns 8 ("loop failed") when a signal ended the loop, though it
            # then unmounted cleanly: a stop after a served mount is a success.
            if not self.ready:
                raise
        finally:
            os.close(self._fd)
            if pidfile is not None:
                pidfile.unlink(missing_ok=True)
            if self.control is not None:
                self.control.unlink(missing_ok=True)


def set_mode(mountpoint: Path, mode: str) -> None:
    """Switch the disk behind `mountpoint`; raises ValueError before touching the daemon."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}, expected one of {MODES}")
    fd = os.open(Path(mountpoint) / CONTROL, os.O_WRONLY)  # no O_TRUNC: one request, not two
    try:
        os.write(fd, mode.encode() + b"\n")
    finally:
        os.close(fd)


def get_mode(mountpoint: Path) -> str:
    return (Path(mountpoint) / CONTROL).read_text().strip()


def force_ok(pid: int, mountpoint: Path | None = None, timeout: float = 5.0) -> None:
    """Switch daemon `pid` to `ok` by signal: works even when all its threads are held.
    Signals are asynchronous: given `mountpoint`, wait until the daemon reports `ok`."""
    os.kill(pid, signal.SIGUSR1)
    deadline = time.monotonic() + timeout
    while mountpoint is not None and get_mode(mountpoint) != "ok":
        if time.monotonic() >= deadline:
            raise TimeoutError(f"faultdisk {pid} not back to ok after {timeout} s")
        time.sleep(0.005)


def _mounts_at(mountpoint: Path) -> list[tuple[str, list[str]]]:
    """(fstype, options) of every mount at `mountpoint` in this mount namespace, bottom first."""
    target = os.path.realpath(mountpoint)
    found = []
    with open("/proc/mounts", encoding="utf-8") as mounts:
        for line in mounts:
            fields = line.split()
            # /proc/mounts escapes space, tab, newline and backslash as octal (\040)
            path = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m[1], 8)), fields[1])
            if path == target:
                found.append((fields[2], fields[3].split(",")))
    return found


def mount_entry(mountpoint: Path) -> tuple[str, list[str]] | None:
    """(fstype, options) of the visible (topmost) mount at `mountpoint`, or None."""
    found = _mounts_at(mountpoint)
    return found[-1] if found else None


def is_mounted(mountpoint: Path) -> bool:
    """Whether a FUSE filesystem is mounted at `mountpoint` (in this mount namespace)."""
    return any(fstype.startswith("fuse") for fstype, _ in _mounts_at(mountpoint))


def wait_mounted(mountpoint: Path, timeout: float,
                 proc: subprocess.Popen[Any] | None = None) -> None:
    """Poll until the FUSE mount shows up; fail fast if `proc` (the daemon) has died."""
    deadline = time.monotonic() + timeout
    while not is_mounted(mountpoint):
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"faultdisk daemon exited with {proc.returncode} before mounting")
        if time.monotonic() >= deadline:
            raise TimeoutError(f"no fuse mount at {mountpoint} after {timeout} s")
        time.sleep(0.01)


def unmount(mountpoint: Path) -> None:
    """Unmount the FUSE layer if mounted: fusermount3 -u, falling back to a lazy umount."""
    if is_mounted(mountpoint):
        res = subprocess.run(["fusermount3", "-u", str(mountpoint)], capture_output=True)
        if res.returncode != 0 and is_mounted(mountpoint):
            subprocess.run(["umount", "-l", str(mountpoint)], check=True, capture_output=True)


def start_daemon(image: Path, mountpoint: Path, timeout: float = 10.0,
                 stderr: Any = None, control: Path | None = None) -> subprocess.Popen[bytes]:
    """Start the daemon in its own session and wait until it has mounted."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.testbed.faultdisk", "--image", str(image),
         "--mountpoint", str(mountpoint), *(["--control", str(control)] if control else [])],
        start_new_session=True,
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
        cwd=Path(__file__).resolve().parents[2])
    try:
        wait_mounted(mountpoint, timeout, proc)
    except BaseException:
        stop_daemon(proc, mountpoint)
        raise
    return proc


def stop_daemon(proc: subprocess.Popen[Any], mountpoint: Path, timeout: float = 10.0) -> None:
    """SIGTERM by PID (held I/O then fails), SIGKILL if it lingers; make sure it unmounted."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    unmount(mountpoint)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--image", type=Path, required=True)
    parser.add_argument("--mountpoint", type=Path, required=True)
    parser.add_argument("--pidfile", type=Path, help="written once mounted, removed at exit")
    parser.add_argument("--control", type=Path, help="unix socket for the views (add, cut, status)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="faultdisk: %(levelname)s %(message)s")
    try:
        FaultDisk(args.image, args.mountpoint, args.control).serve(args.pidfile)
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"faultdisk: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
