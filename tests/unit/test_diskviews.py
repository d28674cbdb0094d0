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


def views_on(fd: int, *names: str) -> tuple[Views, list[View]]:
    views = Views(fd, reserved=("control", "disk.img"))
    return views, [views.add(n) for n in names]


def test_writes_go_through_and_a_cut_rolls_them_back(image_fd: int) -> None:
    views, (one,) = views_on(image_fd, "node1.1")
    before = on_image(image_fd, 3 * PAGE, PAGE)
    assert views.write(one, b"x" * 5000, PAGE + 100) == 5000  # unaligned, over two pages
    expected = bytearray(before)
    expected[100:5100] = b"x" * 5000
    assert on_image(image_fd, 3 * PAGE, PAGE) == bytes(expected)  # everyone reads the newest data
    assert views.cut("node1.1")["rolled_back_pages"] == 2
    assert on_image(image_fd, 3 * PAGE, PAGE) == before


def test_a_cut_rolls_back_to_the_last_flush_and_discards_what_comes_after(image_fd: int) -> None:
    views, (one,) = views_on(image_fd, "node1.1")
    views.write(one, b"a" * PAGE, 0)
    views.flush(one)
    flushed = on_image(image_fd, 3 * PAGE, 0)
    views.write(one, b"b" * PAGE, PAGE)
    views.write(one, b"c" * 10, 0)
    views.opened("node1.1")  # its loop device still holds it: the view stays, cut
    answer = views.cut("node1.1")
    assert on_image(image_fd, 3 * PAGE, 0) == flushed and flushed[:PAGE] == b"a" * PAGE
    assert views.write(one, b"d" * PAGE, 2 * PAGE) == PAGE  # accepted, and never stored: the node is dead
    views.flush(one)
    assert on_image(image_fd, 3 * PAGE, 0) == flushed
    stats = views.status()["node1.1"]
    assert (answer["state"], answer["rolled_back_pages"]) == ("cut", 2)
    assert (stats["discarded_writes"], stats["flushes"], stats["unflushed_pages"]) == (1, 2, 0)


def test_another_views_write_is_never_rolled_back(image_fd: int) -> None:
    """node1 wrote and did not flush; node2 (or the harness, raw) wrote the same pages since:
    cutting node1 must not put back what those pages held before node1's write."""
    views, (one, two) = views_on(image_fd, "node1.1", "node2.1")
    views.write(one, b"1" * (2 * PAGE), 0)
    views.write(two, b"2" * PAGE, 0)
    views.write(None, b"r" * 10, PAGE + 5)
    before_other = on_image(image_fd, PAGE, 3 * PAGE)
    views.write(one, b"1" * PAGE, 3 * PAGE)
    assert views.cut("node1.1")["rolled_back_pages"] == 1
    assert on_image(image_fd, PAGE, 0) == b"2" * PAGE
    assert on_image(image_fd, 10, PAGE + 5) == b"r" * 10
    assert on_image(image_fd, PAGE, 3 * PAGE) == before_other


def test_once_another_view_flushes_nothing_left_unflushed_is_rolled_back(image_fd: int) -> None:
    """node1's ext4 aborted (it never flushes again), node2 took over and committed: a later power
    cut of node1 must not take back what node2's filesystem was built on."""
    views, (one, two) = views_on(image_fd, "node1.1", "node2.1")
    views.write(one, b"1" * PAGE, 0)
    views.write(two, b"2" * PAGE, PAGE)
    views.flush(two)
    assert views.cut("node1.1")["rolled_back_pages"] == 0
    assert on_image(image_fd, PAGE, 0) == b"1" * PAGE


def test_a_failed_flush_keeps_the_point_to_roll_back_to(image_fd: int, monkeypatch: pytest.MonkeyPatch) -> None:
    views, (one,) = views_on(image_fd, "node1.1")
    before = on_image(image_fd, PAGE, 0)
    views.write(one, b"z" * PAGE, 0)

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    with monkeypatch.context() as m:
        m.setattr(os, "fdatasync", eio)
        with pytest.raises(OSError):
            views.flush(one)
    assert views.status()["node1.1"]["unflushed_pages"] == 1
    views.cut("node1.1")
    assert on_image(image_fd, PAGE, 0) == before


def test_a_write_past_the_end_is_refused(image_fd: int) -> None:
    views, (one,) = views_on(image_fd, "node1.1")
    with pytest.raises(OSError, match="beyond the end"):
        views.write(one, b"z" * 10, 64 * PAGE - 5)


def test_random_io_then_a_cut_leaves_the_image_of_the_last_flush(image_fd: int) -> None:
    """Random unaligned writes and flushes (seeded): the image follows every write, and the cut
    restores exactly the image of the last flush."""
    rng = random.Random(14)
    size = 64 * PAGE
    views, (one,) = views_on(image_fd, "node1.1")
    current = bytearray(on_image(image_fd, size, 0))
    flushed = bytes(current)
    for _ in range(600):
        if rng.random() < 0.85:
            offset = rng.randrange(size)
            length = rng.randint(1, min(3 * PAGE, size - offset))
            data = rng.randbytes(length)
            views.write(one, data, offset)
            current[offset:offset + length] = data
        else:
            views.flush(one)
            flushed = bytes(current)
        assert on_image(image_fd, size, 0) == bytes(current)
    views.cut("node1.1")
    assert on_image(image_fd, size, 0) == flushed


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
@pytest.mark.timeout(120)
def test_an_ext4_aborted_on_a_pulled_disk_leaves_nothing_stale_for_its_next_mount(layer: Layer) -> None:
    """The disk_pull story at disk level: node1's ext4 aborts on EIO, node2 takes over and writes, node1
    mounts again through the same view: it sees node2's data, and its filesystem stays writable."""
    ext4, ready = layer.tmp / "ext4", layer.tmp / "ready"
    ext4.mkdir()
    one, two = layer.attach("node1.1"), layer.attach("node2.1")
    node = node_writes(one, ext4, ready)
    try:
        faultdisk.set_mode(layer.mnt, "eio")
        pulled = subprocess.run(["nsenter", "-t", str(node.pid), "-m", "--", "dd", "if=/dev/zero",
                                 f"of={ext4}/pulled", "bs=4k", "count=4", "conv=fsync"], capture_output=True)
        assert pulled.returncode != 0
        faultdisk.set_mode(layer.mnt, "ok")
    finally:
        os.killpg(node.pid, signal.SIGKILL)  # the aborted ext4 goes with the namespace
        node.wait()
    in_ns(two, ext4, "for i in $(seq 20); do echo two > {mnt}/two-$i; done; sync")
    out = in_ns(one, ext4, "cat {mnt}/two-20 && for i in $(seq 40); do echo one > {mnt}/one-$i; done && sync "
                           "&& ls {mnt} | grep -c '^one-'")
    assert out.split() == ["two", "40"], out  # no "Corrupt inode bitmap" (the fs stayed writable)


def in_ns(device: str, ext4: Path, script: str) -> str:
    """Mount `device` in a mount namespace of its own, run `script` ({mnt}: the mount), unmount."""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-ec",
                        f"mount -t ext4 {device} {ext4}; " + script.format(mnt=ext4) + f"; umount {ext4}"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout
