"""The nodes' views of the shared disk: a write cache that a FLUSH makes durable and a power cut drops.

The first half tests `View` on a plain file (no root needed); the second half runs the real
chain a node uses (ext4 in a private mount namespace → its own loop device → its view in the
FUSE layer → image), cuts the power as nodes.power_off does, and mounts through another view.
"""

from __future__ import annotations

import mmap
import os
import random
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.testbed import diskviews, faultdisk
from harness.testbed.diskviews import PAGE, View, Views

MiB = 1024 * 1024


@pytest.fixture
def image_fd(tmp_path: Path) -> Iterator[int]:
    image = tmp_path / "disk.img"
    image.write_bytes(bytes(range(256)) * (64 * PAGE // 256))
    fd = os.open(image, os.O_RDWR)
    try:
        yield fd
    finally:
        os.close(fd)


def on_image(fd: int, size: int, offset: int) -> bytes:
    return os.pread(fd, size, offset)


def test_writes_stay_in_the_view_until_a_flush(image_fd: int) -> None:
    view = View("node1.1", image_fd, 64 * PAGE)
    before = on_image(image_fd, 3 * PAGE, PAGE)
    assert view.write(b"x" * 5000, PAGE + 100) == 5000  # unaligned, over two pages
    assert on_image(image_fd, 3 * PAGE, PAGE) == before  # the image has not seen it
    expected = bytearray(before)
    expected[100:5100] = b"x" * 5000
    assert view.read(3 * PAGE, PAGE) == bytes(expected)  # the view reads its own writes
    assert view.read(50, PAGE + 90) == bytes(expected[90:140])
    view.flush()
    assert on_image(image_fd, 3 * PAGE, PAGE) == bytes(expected)
    assert view.snapshot() | {"opens": 0} == {"state": "on", "opens": 0, "cached_pages": 0, "flushes": 1,
                                              "flushed_pages": 2, "dropped_pages": 0, "discarded_writes": 0}


def test_a_power_cut_drops_the_unflushed_and_discards_what_comes_after(image_fd: int) -> None:
    view = View("node1.1", image_fd, 64 * PAGE)
    view.write(b"a" * PAGE, 0)
    view.flush()
    view.write(b"b" * PAGE, PAGE)
    view.write(b"c" * 10, 0)
    before = on_image(image_fd, 2 * PAGE, 0)
    assert view.power_cut() == 2
    assert view.write(b"d" * PAGE, 2 * PAGE) == PAGE  # accepted, and never stored: the node is dead
    view.flush()
    assert on_image(image_fd, 3 * PAGE, 0) == before + on_image(image_fd, PAGE, 2 * PAGE)
    assert before[:PAGE] == b"a" * PAGE and before[PAGE:] != b"b" * PAGE
    assert view.read(PAGE, 0) == b"a" * PAGE  # reads after the cut see the image
    stats = view.snapshot()
    assert (stats["state"], stats["dropped_pages"], stats["discarded_writes"]) == ("cut", 2, 1)


def test_a_lost_cache_never_lands_later(image_fd: int) -> None:
    """A failed FLUSH (pulled disk) loses the cache: a later flush must not write it over newer data."""
    one, two = View("node1.1", image_fd, 64 * PAGE), View("node2.1", image_fd, 64 * PAGE)
    one.write(b"old" * 100, 0)
    assert one.lose_cache() == 1 and one.snapshot()["state"] == "on"
    two.write(b"new" * 100, 0)
    two.flush()
    one.flush()
    assert on_image(image_fd, 300, 0) == b"new" * 100


def test_another_view_sees_only_what_was_flushed(image_fd: int) -> None:
    one, two = View("node1.1", image_fd, 64 * PAGE), View("node2.1", image_fd, 64 * PAGE)
    one.write(b"1" * PAGE, 0)
    assert two.read(PAGE, 0) != b"1" * PAGE
    one.flush()
    assert two.read(PAGE, 0) == b"1" * PAGE


def test_a_write_past_the_end_is_refused(image_fd: int) -> None:
    view = View("node1.1", image_fd, 64 * PAGE)
    with pytest.raises(OSError, match="beyond the end"):
        view.write(b"z" * 10, 64 * PAGE - 5)


def test_random_io_matches_a_model_of_cache_over_disk(image_fd: int) -> None:
    """Random unaligned writes, reads, flushes and a final cut against two byte arrays (seeded)."""
    rng = random.Random(14)
    size = 64 * PAGE
    view = View("node1.1", image_fd, size)
    disk = bytearray(on_image(image_fd, size, 0))
    cache = bytearray(disk)  # what the node sees
    for _ in range(600):
        op = rng.random()
        offset = rng.randrange(size)
        length = rng.randint(1, min(3 * PAGE, size - offset))
        if op < 0.5:
            data = rng.randbytes(length)
            view.write(data, offset)
            cache[offset:offset + length] = data
        elif op < 0.9:
            assert view.read(length, offset) == bytes(cache[offset:offset + length])
        else:
            view.flush()
            disk[:] = cache
        assert on_image(image_fd, size, 0) == bytes(disk)
    view.power_cut()
    assert view.read(size, 0) == bytes(disk) == on_image(image_fd, size, 0)


def test_views_by_name_and_the_control_requests(image_fd: int) -> None:
    woken: list[bool] = []
    views = Views(image_fd, reserved=("control", "disk.img"), on_cut=lambda: woken.append(True))
    assert views.command("add node1.1")["state"] == "on"
    for bad in ("add control", "add Node1", "add ../x", "add node1.1", "cut node9.1", "mode eio", ""):
        assert "error" in views.command(bad), bad
    views.opened("node1.1")  # the loop device holds it
    assert views.command("cut node1.1")["state"] == "cut" and woken == [True]
    assert views.names() == ["node1.1"]  # still held by the dying node's loop device
    views.released("node1.1")
    assert views.names() == [] and views.command("status") == {"views": {}}
    views.add("node1.2")
    views.cut("node1.2")  # never opened (its losetup failed): forgotten at once
    assert views.names() == []


# -- the real chain: ext4 → loop device → view → image ---------------------------------------------

needs_root = pytest.mark.skipif(
    os.geteuid() != 0 or not Path("/dev/fuse").exists()
    or not all(shutil.which(t) for t in ("losetup", "mkfs.ext4", "fsck.ext4", "fusermount3", "unshare")),
    reason="needs root, /dev/fuse, losetup, e2fsprogs, fusermount3 and unshare")


class Layer:
    """A FUSE layer with a control socket; every loop device it hands out is detached at the end."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.image = tmp_path / "disk.img"
        with open(self.image, "wb") as f:
            f.truncate(32 * MiB)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0",
                        str(self.image)], check=True, capture_output=True)
        self.mnt, self.control = tmp_path / "fuse", tmp_path / "ctl"
        self.mnt.mkdir()
        self.err = open(tmp_path / "daemon.err", "wb")  # noqa: SIM115 - closed in close()
        self.proc = faultdisk.start_daemon(self.image, self.mnt, timeout=15, stderr=self.err,
                                           control=self.control)
        self.loops: list[tuple[str, Path]] = []

    def attach(self, view: str) -> str:
        diskviews.request(self.control, f"add {view}")
        device = faultdisk.attach_loop(self.mnt / view)
        self.loops.append((device, self.mnt / view))
        return device

    def close(self) -> None:
        if self.proc.poll() is None:
            faultdisk.force_ok(self.proc.pid, self.mnt)
        for device, backing in self.loops:
            faultdisk.detach_loop(device, backing)
        faultdisk.stop_daemon(self.proc, self.mnt)
        self.err.close()


@pytest.fixture
def layer(tmp_path: Path) -> Iterator[Layer]:
    lay = Layer(tmp_path)
    try:
        yield lay
    finally:
        lay.close()
        assert not faultdisk.is_mounted(lay.mnt)
        assert lay.proc.returncode == 0, f"daemon exited with {lay.proc.returncode}"
        assert (tmp_path / "daemon.err").read_text() == "", "daemon wrote to stderr"
        assert not lay.control.exists()


WRITER = """
import os, sys
d = sys.argv[1]
def put(name, data, sync):
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
        if sync:
            f.flush(); os.fsync(f.fileno())
    if sync:
        fd = os.open(d, os.O_RDONLY); os.fsync(fd); os.close(fd)
put("synced", b"S" * 5000, True)
put("unsynced", b"U" * 5000, False)
"""


def node_writes(device: str, ext4: Path, ready: Path) -> subprocess.Popen[bytes]:
    """A "node": ext4 mounted in a mount namespace of its own, one file fsynced and one not, then idle."""
    script = (f'mount -t ext4 {device} {ext4} && python3 -c "$0" {ext4} && touch {ready} && exec sleep 300')
    proc = subprocess.Popen(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, WRITER],
                            start_new_session=True)
    deadline = time.monotonic() + 30
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the node did not write"
        time.sleep(0.02)
    return proc


def read_back(device: str, ext4: Path) -> str:
    """Mount through another view (in a namespace of its own), list the sizes, unmount."""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                        f"mount -t ext4 {device} {ext4} && for f in synced unsynced; do "
                        f"[ -e {ext4}/$f ] && echo $f=$(wc -c <{ext4}/$f) || echo $f=absent; done; umount {ext4}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()  # type: ignore[return-value]


@needs_root
@pytest.mark.timeout(120)
def test_a_power_cut_loses_what_the_node_did_not_fsync_and_keeps_what_it_did(layer: Layer) -> None:
    ext4, ready = layer.tmp / "ext4", layer.tmp / "ready"
    ext4.mkdir()
    device = layer.attach("node1.1")
    assert sorted(os.listdir(layer.mnt)) == ["control", "disk.img", "node1.1"]
    node = node_writes(device, ext4, ready)
    # as nodes.power_off: cut, then kill; the dead namespace's umount writes back into the cut view
    cut = diskviews.request(layer.control, "cut node1.1")
    os.killpg(node.pid, signal.SIGKILL)
    node.wait()
    subprocess.run(["losetup", "-d", device], check=True)
    deadline = time.monotonic() + 10
    while "node1.1" in diskviews.request(layer.control, "status")["views"]:  # gone with its loop device
        assert time.monotonic() < deadline, "the cut view outlived its loop device"
        time.sleep(0.02)
    assert cut["state"] == "cut" and cut["flushes"] > 0, cut
    assert read_back(layer.attach("node2.1"), ext4) in (["synced=5000", "unsynced=0"],
                                                       ["synced=5000", "unsynced=absent"])
    faultdisk.detach_loop(*layer.loops[-1])
    fsck = subprocess.run(["fsck.ext4", "-fn", str(layer.image)], capture_output=True, text=True)
    assert fsck.returncode == 0, fsck.stdout + fsck.stderr


@needs_root
@pytest.mark.timeout(120)
def test_without_a_cut_the_next_mounter_sees_everything_once_unmounted(layer: Layer) -> None:
    """The control case: the same node stopped cleanly (its umount flushes), nothing is lost."""
    ext4, ready = layer.tmp / "ext4", layer.tmp / "ready"
    ext4.mkdir()
    device = layer.attach("node1.1")
    node = node_writes(device, ext4, ready)
    os.killpg(node.pid, signal.SIGKILL)  # no cut: the namespace's umount syncs into the view
    node.wait()
    faultdisk.detach_loop(*layer.loops[0])
    assert read_back(layer.attach("node2.1"), ext4) == ["synced=5000", "unsynced=5000"]


@needs_root
@pytest.mark.timeout(60)
def test_a_cut_releases_the_cut_views_io_held_by_a_hang_but_not_the_others(layer: Layer) -> None:
    one, two = layer.attach("node1.1"), layer.attach("node2.1")
    done: dict[str, bytes] = {}

    def read(name: str, device: str) -> None:
        fd = os.open(device, os.O_RDONLY | os.O_DIRECT)
        try:
            with mmap.mmap(-1, PAGE) as buf:  # page-aligned, as O_DIRECT wants
                done[name] = buf[:os.preadv(fd, [buf], 0)]
        finally:
            os.close(fd)

    faultdisk.set_mode(layer.mnt, "hang")
    threads = [threading.Thread(target=read, args=(n, d), daemon=True) for n, d in (("one", one), ("two", two))]
    for t in threads:
        t.start()
    time.sleep(0.4)
    assert not done
    # the control socket answers though I/O is held
    assert diskviews.request(layer.control, "cut node1.1", timeout=5)["state"] == "cut"
    threads[0].join(5)
    assert "one" in done and "two" not in done
    faultdisk.set_mode(layer.mnt, "ok")
    threads[1].join(5)
    assert "two" in done


@needs_root
@pytest.mark.timeout(60)
def test_a_flush_that_fails_on_a_pulled_disk_loses_the_views_cache(layer: Layer) -> None:
    device = layer.attach("node1.1")
    fd = os.open(device, os.O_WRONLY | os.O_DIRECT)
    try:
        with mmap.mmap(-1, PAGE) as buf:
            buf.write(b"p" * PAGE)
            os.pwritev(fd, [buf], 1024 * PAGE)
        assert diskviews.request(layer.control, "status")["views"]["node1.1"]["cached_pages"] == 1
        faultdisk.set_mode(layer.mnt, "eio")
        with pytest.raises(OSError):
            os.fsync(fd)
        faultdisk.set_mode(layer.mnt, "ok")
        os.fsync(fd)
    finally:
        os.close(fd)
    view = diskviews.request(layer.control, "status")["views"]["node1.1"]
    assert (view["cached_pages"], view["dropped_pages"], view["state"]) == (0, 1, "on")
    assert layer.image.read_bytes()[1024 * PAGE:1025 * PAGE] != b"p" * PAGE
