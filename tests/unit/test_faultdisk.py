"""The pullable shared disk, end to end: real FUSE daemon, real loop device, real ext4.

These are the harness's own tests of its disk-pull mechanism, so they need root, /dev/fuse
and loop devices. Loop numbers are shared with other users of the machine: every test
touches only the device `losetup --find --show` gave it, and each fixture asserts at the
end that no FUSE mount and no loop device of its own is left behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from harness.testbed import faultdisk

MiB = 1024 * 1024

pytestmark = [
    pytest.mark.skipif(
        os.geteuid() != 0 or not Path("/dev/fuse").exists()
        or not all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "fsck.ext4", "fusermount3")),
        reason="needs root, /dev/fuse, losetup, e2fsprogs and fusermount3"),
    pytest.mark.timeout(180),
]


@dataclass
class Disk:
    image: Path
    mountpoint: Path
    exposed: Path
    proc: subprocess.Popen[bytes]


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


def mount_options(path: Path) -> list[str] | None:
    """Options of the mount at `path`, or None if nothing is mounted there."""
    entry = faultdisk.mount_entry(path)
    return entry[1] if entry else None


def mount_ext4(device: str, path: Path) -> None:
    run("mount", "-t", "ext4", "-o", "errors=remount-ro", device, str(path))


def umount_ext4(path: Path) -> None:
    for _ in range(20):
        if mount_options(path) is None:
            return
        if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
            time.sleep(0.1)
    raise AssertionError(f"could not unmount {path}")


def write_fsync(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def rewrite_fsync(path: Path, data: bytes) -> None:
    """Overwrite an existing, cached file in place + fsync: needs no metadata read.

    Creating a file on a pulled disk may need to read an uncached inode bitmap; that read
    error makes ext4 go read-only at once, and the caller sees EROFS instead of EIO.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def is_readonly(options: list[str] | None) -> bool:
    """Kernel 6.18 ext4 keeps "rw" after errors=remount-ro and adds "emergency_ro"."""
    return options is None or "ro" in options or "emergency_ro" in options


def fsck_ext4(device: str, timeout: float = 30.0) -> None:
    """fsck.ext4 -fy, retried while the device is "in use".

    A mount namespace unshared while the ext4 was mounted (any `ip netns exec` on the
    machine) holds a private copy of the mount until it exits: the superblock outlives our
    umount for that long, and e2fsck refuses the device.
    """
    deadline = time.monotonic() + timeout
    while True:
        res = subprocess.run(["fsck.ext4", "-fy", device], capture_output=True, text=True)
        if res.returncode in (0, 1, 2):  # 1 and 2: errors were corrected
            return
        assert "in use" in res.stdout + res.stderr and time.monotonic() < deadline, (
            f"fsck.ext4 exited {res.returncode}: {res.stdout}{res.stderr}")
        time.sleep(0.1)


def wait_no_loops(tmp_path: Path, timeout: float = 10.0) -> None:
    """Our loop devices go when their last holder does (see fsck_ext4): allow a moment."""
    deadline = time.monotonic() + timeout
    while our_loops(tmp_path):
        assert time.monotonic() < deadline, f"loop device left behind: {our_loops(tmp_path)}"
        time.sleep(0.05)


def our_loops(tmp_path: Path) -> list[str]:
    """Every loop device whose backing file lies under this test's temp dir."""
    out = run("losetup", "--list", "--noheadings", "--output", "NAME,BACK-FILE").stdout
    return [line for line in out.splitlines() if str(tmp_path) in line]


def unhang(disk: Disk) -> None:
    """End any hang by signal; never signal a PID the daemon no longer owns."""
    if disk.proc.poll() is None:
        faultdisk.force_ok(disk.proc.pid, disk.mountpoint)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Disk]:
    image = tmp_path / "disk.img"
    with open(image, "wb") as f:
        f.truncate(32 * MiB)
    run("mkfs.ext4", "-q", "-F", str(image))
    mountpoint = tmp_path / "fuse"
    mountpoint.mkdir()
    with open(tmp_path / "daemon.err", "wb") as err:
        proc = faultdisk.start_daemon(image, mountpoint, timeout=15, stderr=err)
    try:
        yield Disk(image, mountpoint, mountpoint / image.name, proc)
    finally:
        faultdisk.stop_daemon(proc, mountpoint)
        assert not faultdisk.is_mounted(mountpoint), "fuse layer still mounted"
        wait_no_loops(tmp_path)
        assert proc.returncode == 0, f"daemon exited with {proc.returncode}"
        assert (tmp_path / "daemon.err").read_text() == "", "daemon wrote to stderr"


@pytest.fixture
def loop(disk: Disk) -> Iterator[str]:
    device = faultdisk.attach_loop(disk.exposed)
    try:
        yield device
    finally:
        unhang(disk)  # held I/O would block the umount and the detach
        faultdisk.detach_loop(device, disk.exposed)
        assert faultdisk.loop_backing_file(device) != str(disk.exposed)


@pytest.fixture
def ext4(disk: Disk, loop: str, tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "ext4"
    path.mkdir()
    mount_ext4(loop, path)
    try:
        yield path
    finally:
        unhang(disk)
        umount_ext4(path)


def test_control_file_switches_and_validates_modes(disk: Disk) -> None:
    assert sorted(os.listdir(disk.mountpoint)) == ["control", "disk.img"]
    assert disk.exposed.stat().st_size == 32 * MiB
    assert faultdisk.get_mode(disk.mountpoint) == "ok"
    for mode in faultdisk.MODES:
        faultdisk.set_mode(disk.mountpoint, mode)
        assert (disk.mountpoint / "control").read_text() == mode + "\n"
    (disk.mountpoint / "control").write_text("eio\n")  # shell-style: O_TRUNC, then write
    assert faultdisk.get_mode(disk.mountpoint) == "eio"

    fd = os.open(disk.mountpoint / "control", os.O_WRONLY)
    try:
        with pytest.raises(OSError) as exc:
            os.write(fd, b"unplug\n")
        assert exc.value.errno == errno.EINVAL
    finally:
        os.close(fd)
    assert faultdisk.get_mode(disk.mountpoint) == "eio"
    with pytest.raises(ValueError):
        faultdisk.set_mode(disk.mountpoint, "unplug")


def test_raw_image_io_follows_the_mode(disk: Disk) -> None:
    block = disk.image.read_bytes()[1024:5120]  # the ext4 superblock and beyond
    fd = os.open(disk.exposed, os.O_RDWR)
    try:
        assert os.pread(fd, 4096, 1024) == block

        def fails(op: str) -> bool:
            try:
                if op == "read":
                    os.pread(fd, 4096, 1024)
                elif op == "write":
                    os.pwrite(fd, block, 1024)
                else:
                    os.fsync(fd)
            except OSError as exc:
                assert exc.errno == errno.EIO
                return True
            return False

        expected = {"ok": (False, False, False), "eio": (True, True, True),
                    "eio-read": (True, False, False), "eio-write": (False, True, True)}
        for mode, outcome in expected.items():
            faultdisk.set_mode(disk.mountpoint, mode)
            assert (fails("read"), fails("write"), fails("fsync")) == outcome, mode
        assert os.pread(fd, 4096, 1024) == block
    finally:
        os.close(fd)
    assert disk.image.read_bytes()[1024:5120] == block


def test_eio_pull_then_heal_keeps_synced_data(disk: Disk, loop: str, ext4: Path) -> None:
    payload = os.urandom(64 * 1024)
    write_fsync(ext4 / "before.bin", payload)
    probe = ext4 / "probe.bin"
    write_fsync(probe, b"p" * 4096)

    faultdisk.set_mode(disk.mountpoint, "eio")
    deadline = time.monotonic() + 30
    while True:
        try:
            rewrite_fsync(probe, b"x" * 4096)
        except OSError as exc:
            assert exc.errno == errno.EIO, exc
            break
        assert time.monotonic() < deadline, "no I/O error on the pulled disk within 30 s"
        time.sleep(0.02)

    with open(disk.exposed, "rb", buffering=0) as raw, pytest.raises(OSError) as raised:
        raw.read(4096)
    assert raised.value.errno == errno.EIO

    # errors=remount-ro: once jbd2 aborts the journal (its next commit fails), the next
    # journalled change turns the fs read-only; keep changing it, as an application would
    deadline = time.monotonic() + 60
    while not is_readonly(mount_options(ext4)):
        assert time.monotonic() < deadline, "ext4 not read-only within 60 s of the pull"
        with contextlib.suppress(OSError):
            rewrite_fsync(probe, b"y" * 4096)
        time.sleep(0.05)

    faultdisk.set_mode(disk.mountpoint, "ok")
    umount_ext4(ext4)
    fsck_ext4(loop)
    mount_ext4(loop, ext4)
    assert (ext4 / "before.bin").read_bytes() == payload
    write_fsync(ext4 / "after.bin", b"healed")
    assert not is_readonly(mount_options(ext4))


def test_hang_holds_a_read_until_ok(disk: Disk) -> None:
    expected = disk.image.read_bytes()[:4096]
    result: list[bytes | BaseException] = []

    def reader() -> None:
        try:
            with open(disk.exposed, "rb", buffering=0) as raw:
                result.append(raw.read(4096))
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            result.append(exc)

    faultdisk.set_mode(disk.mountpoint, "hang")
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(0.5)
    assert thread.is_alive() and not result, "read was not held in hang mode"
    assert faultdisk.get_mode(disk.mountpoint) == "hang"  # control still served
    faultdisk.set_mode(disk.mountpoint, "ok")
    thread.join(10)
    assert not thread.is_alive(), "ok did not release the held read"
    assert result == [expected]


def test_hang_holds_ext4_fsync_until_ok(disk: Disk, loop: str, ext4: Path) -> None:
    write_fsync(ext4 / "warm.bin", b"w")
    done = threading.Event()

    def writer() -> None:
        write_fsync(ext4 / "held.bin", b"h" * 8192)
        done.set()

    faultdisk.set_mode(disk.mountpoint, "hang")
    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    assert not done.wait(0.5), "fsync completed although the disk hangs"
    faultdisk.set_mode(disk.mountpoint, "ok")
    assert done.wait(15), "ok did not release the held fsync"
    assert (ext4 / "held.bin").read_bytes() == b"h" * 8192


def test_force_ok_releases_a_hang_that_holds_every_worker(disk: Disk) -> None:
    """More held reads than libfuse has workers: only the SIGUSR1 escape can end it."""
    done: list[bytes] = []
    faultdisk.set_mode(disk.mountpoint, "hang")

    def reader(offset: int) -> None:
        with open(disk.exposed, "rb", buffering=0) as raw:
            done.append(os.pread(raw.fileno(), 512, offset))

    threads = [threading.Thread(target=reader, args=(i * 4096,), daemon=True)
               for i in range(12)]
    for t in threads:
        t.start()
    time.sleep(0.5)
    assert not done
    faultdisk.force_ok(disk.proc.pid, disk.mountpoint)
    for t in threads:
        t.join(10)
    assert len(done) == 12
    assert faultdisk.get_mode(disk.mountpoint) == "ok"


def test_sigterm_during_hang_unmounts(disk: Disk) -> None:
    errors: list[int | None] = []

    def reader() -> None:
        try:
            with open(disk.exposed, "rb", buffering=0) as raw:
                raw.read(4096)
        except OSError as exc:
            errors.append(exc.errno)

    faultdisk.set_mode(disk.mountpoint, "hang")
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    thread.join(0.3)
    faultdisk.stop_daemon(disk.proc, disk.mountpoint)
    thread.join(10)
    assert not thread.is_alive()
    assert errors and errors[0] in (errno.EIO, errno.ENOTCONN, errno.ECONNABORTED)
    assert disk.proc.returncode == 0
    assert not faultdisk.is_mounted(disk.mountpoint)


def test_external_unmount_ends_the_daemon(disk: Disk) -> None:
    faultdisk.unmount(disk.mountpoint)
    assert disk.proc.wait(10) == 0
    assert not faultdisk.is_mounted(disk.mountpoint)


def test_cli_pidfile_marks_readiness_and_goes_at_exit(tmp_path: Path) -> None:
    image, mountpoint, pidfile = tmp_path / "disk.img", tmp_path / "fuse", tmp_path / "pid"
    image.write_bytes(b"\0" * MiB)
    mountpoint.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness.testbed.faultdisk", "--image", str(image),
         "--mountpoint", str(mountpoint), "--pidfile", str(pidfile)],
        start_new_session=True, stderr=subprocess.PIPE)
    try:
        faultdisk.wait_mounted(mountpoint, 15, proc)
        deadline = time.monotonic() + 10
        while not pidfile.exists():  # written by the FUSE init callback, just after mount
            assert time.monotonic() < deadline, "pidfile not written"
            time.sleep(0.01)
        assert pidfile.read_text() == f"{proc.pid}\n"
    finally:
        faultdisk.stop_daemon(proc, mountpoint)
    assert proc.returncode == 0
    assert proc.stderr is not None and proc.stderr.read() == b""
    assert not pidfile.exists()
    assert not faultdisk.is_mounted(mountpoint)
