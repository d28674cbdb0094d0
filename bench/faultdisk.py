"""Measure the pullable shared disk (harness/testbed/faultdisk.py) on this machine.

Why: acceptance timings of a disk-pull scenario (how soon the application sees EIO, how
soon ext4 goes read-only, how long a heal takes) and the cost of routing every block
through a Python FUSE daemon must be known figures, not guesses.

Figures (medians over --rounds):
  eio_detect_s      mode switch to `eio` -> first write+fsync on ext4 failing with EIO
  remount_ro_s      mode switch to `eio` -> /proc/mounts shows the ext4 read-only
                    ("ro" or kernel 6.18's "emergency_ro"), with light write activity
  heal_s            `ok` + umount + fsck.ext4 -fy + mount (fsck_s: the fsck part)
  unhang_s          `hang` -> `ok`: switch -> the held write+fsync completes
  *_write_mbps      SIZE MB sequential write + fsync of a file on ext4, loop on the
                    FUSE-exposed image vs loop directly on a raw image; fuse_slowdown is
                    their ratio. blk_*: the same written straight to the loop devices.

Needs root, /dev/fuse and loop devices. Cleans up after itself, also on Ctrl-C/SIGTERM.
The last line printed is machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.testbed import faultdisk  # noqa: E402

MiB = 1024 * 1024


def run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=True, capture_output=True, text=True, timeout=120)


def mount_options(path: Path) -> list[str] | None:
    """Options of the mount at `path`, or None if nothing is mounted there."""
    entry = faultdisk.mount_entry(path)
    return entry[1] if entry else None


def is_readonly(options: list[str] | None) -> bool:
    """Kernel 6.18 ext4 keeps "rw" after errors=remount-ro and adds "emergency_ro"."""
    return options is None or "ro" in options or "emergency_ro" in options


def write_fsync(path: Path, data: bytes, chunk: int = MiB) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        for off in range(0, len(data), chunk):
            os.write(fd, data[off:off + chunk])
        os.fsync(fd)
    finally:
        os.close(fd)


class Bench:
    """Owns everything it creates, so that cleanup() can undo any partial state."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.proc: subprocess.Popen[bytes] | None = None
        self.fuse_mnt = work / "fuse"
        self.loops: list[tuple[str, Path]] = []
        self.mounts: list[Path] = []

    def image(self, name: str, size_mb: int) -> Path:
        path = self.work / name
        with open(path, "wb") as f:
            f.truncate(size_mb * MiB)
        return path

    def attach(self, backing: Path) -> str:
        device = faultdisk.attach_loop(backing)
        self.loops.append((device, backing))
        return device

    def mount(self, device: str, name: str) -> Path:
        path = self.work / name
        path.mkdir(exist_ok=True)
        run("mount", "-t", "ext4", "-o", "errors=remount-ro", device, str(path))
        self.mounts.append(path)
        return path

    def umount(self, path: Path) -> None:
        for _ in range(20):
            if mount_options(path) is None:
                break
            res = subprocess.run(["umount", str(path)], capture_output=True, text=True)
            if res.returncode != 0:
                print(f"umount {path}: {res.stderr.strip()}", file=sys.stderr)
                time.sleep(0.1)
        else:
            subprocess.run(["umount", "-l", str(path)], capture_output=True)

    def cleanup(self) -> list[str]:
        """Undo everything, step by step: one failing step must not skip the others."""
        problems: list[str] = []

        def step(what: str, fn: Callable[..., object], *args: object) -> None:
            try:
                fn(*args)
            except Exception as exc:  # noqa: BLE001 - reported, and cleanup goes on
                problems.append(f"{what}: {exc}")

        if self.proc is not None and self.proc.poll() is None:  # held I/O blocks umount
            step("force_ok", faultdisk.force_ok, self.proc.pid, self.fuse_mnt)
        for path in reversed(self.mounts):
            step(f"umount {path}", self.umount, path)
        for device, backing in reversed(self.loops):
            step(f"losetup -d {device}", faultdisk.detach_loop, device, backing)
        if self.proc is not None:
            step("stop daemon", faultdisk.stop_daemon, self.proc, self.fuse_mnt)
        step("unmount fuse", faultdisk.unmount, self.fuse_mnt)
        shutil.rmtree(self.work, ignore_errors=True)
        return problems


def mkfs(device: str) -> None:
    # no lazy init: a background ext4lazyinit thread would skew the throughput figures
    run("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", device)


def throughput(target: Path, data: bytes) -> float:
    """MB/s of one sequential write + fsync of `data` to a new file or a block device."""
    start = time.monotonic()
    if target.is_block_device():
        fd = os.open(target, os.O_WRONLY)
        try:
            for off in range(0, len(data), MiB):
                os.write(fd, data[off:off + MiB])
            os.fsync(fd)
        finally:
            os.close(fd)
    else:
        write_fsync(target, data)
    elapsed = time.monotonic() - start
    if not target.is_block_device():
        target.unlink()
        os.sync()
    return len(data) / MiB / elapsed


def rewrite_fsync(path: Path, data: bytes) -> None:
    """Overwrite an existing file in place + fsync: needs no new metadata blocks.

    Creating a file on a pulled disk may need a metadata read (an inode bitmap not in
    cache); that read error makes ext4 go read-only at once, and the caller then sees
    EROFS rather than EIO. An in-place rewrite of a cached file deterministically gets EIO.
    """
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    finally:
        os.close(fd)


def pull_and_heal(b: Bench, device: str, ext4: Path) -> dict[str, float]:
    payload = os.urandom(MiB)
    write_fsync(ext4 / "before.bin", payload)
    probe = ext4 / "probe.bin"
    write_fsync(probe, b"p" * 4096)  # also brings its inode into cache
    start = time.monotonic()
    faultdisk.set_mode(b.fuse_mnt, "eio")
    while True:
        try:
            rewrite_fsync(probe, b"x" * 4096)
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise RuntimeError(f"first error on the pulled disk was {exc!r}, not EIO") from exc
            break
        if time.monotonic() - start > 30:
            raise RuntimeError("no EIO within 30 s of the pull")
    detect = time.monotonic() - start
    # ext4 turns read-only only when it next starts a journal handle after jbd2 aborted
    # the journal (first failed commit, ~5 s): keep touching it, as an application or a
    # cluster monitor would. Without any activity it stays rw indefinitely.
    while not is_readonly(mount_options(ext4)):
        if time.monotonic() - start > 120:
            raise RuntimeError("ext4 not read-only within 120 s of the pull")
        try:
            rewrite_fsync(probe, b"y" * 4096)
        except OSError:
            pass
        time.sleep(0.05)
    remount_ro = time.monotonic() - start

    start = time.monotonic()
    faultdisk.set_mode(b.fuse_mnt, "ok")
    b.umount(ext4)
    fsck_start = time.monotonic()
    while True:
        fsck = subprocess.run(["fsck.ext4", "-fy", device], capture_output=True, text=True)
        if fsck.returncode in (0, 1, 2):  # 1 and 2: errors were corrected
            break
        # "in use": a mount namespace unshared while ext4 was mounted (any `ip netns exec`
        # on the machine) keeps a private copy of the mount, and the superblock, a while
        if "in use" not in fsck.stdout + fsck.stderr or time.monotonic() - fsck_start > 30:
            raise RuntimeError(f"fsck.ext4 failed ({fsck.returncode}): {fsck.stdout}{fsck.stderr}")
        time.sleep(0.1)
    fsck_s = time.monotonic() - fsck_start
    run("mount", "-t", "ext4", "-o", "errors=remount-ro", device, str(ext4))
    heal = time.monotonic() - start
    intact = (ext4 / "before.bin").read_bytes() == payload
    return {"eio_detect_s": detect, "remount_ro_s": remount_ro, "heal_s": heal,
            "fsck_s": fsck_s, "fsck_rc": fsck.returncode, "data_ok": float(intact)}


def hang_release(b: Bench, ext4: Path) -> float:
    done = threading.Event()
    finished = [0.0]

    def writer() -> None:
        write_fsync(ext4 / "held.bin", b"h" * 65536)
        finished[0] = time.monotonic()
        done.set()

    faultdisk.set_mode(b.fuse_mnt, "hang")
    threading.Thread(target=writer, daemon=True).start()
    if done.wait(0.3):
        raise RuntimeError("write+fsync completed although the disk hangs")
    start = time.monotonic()
    faultdisk.set_mode(b.fuse_mnt, "ok")
    if not done.wait(15):
        raise RuntimeError("`ok` did not release the held write")
    return finished[0] - start


def measure(b: Bench, rounds: int, write_rounds: int, size_mb: int) -> dict[str, float]:
    raw_dev = b.attach(b.image("raw.img", size_mb * 4))
    fuse_image = b.image("disk.img", size_mb * 4)
    b.fuse_mnt.mkdir()
    b.proc = faultdisk.start_daemon(fuse_image, b.fuse_mnt, timeout=15)
    fuse_dev = b.attach(b.fuse_mnt / fuse_image.name)

    data = os.urandom(size_mb * MiB)
    speeds: dict[str, list[float]] = {"blk_direct": [], "blk_fuse": [], "direct": [], "fuse": []}
    for _ in range(write_rounds):  # interleaved, so drift in host load hits both alike
        speeds["blk_direct"].append(throughput(Path(raw_dev), data))
        speeds["blk_fuse"].append(throughput(Path(fuse_dev), data))
    mkfs(raw_dev)
    mkfs(fuse_dev)  # through the loop device and FUSE, like the testbed's own
    raw_fs = b.mount(raw_dev, "raw-ext4")
    fuse_fs = b.mount(fuse_dev, "fuse-ext4")
    for _ in range(write_rounds):
        speeds["direct"].append(throughput(raw_fs / "bench.bin", data))
        speeds["fuse"].append(throughput(fuse_fs / "bench.bin", data))
    for key, values in speeds.items():
        print(f"write+fsync {size_mb} MB, {key}: {[round(x) for x in values]} MB/s")

    pulls = []
    for i in range(rounds):
        pulls.append(pull_and_heal(b, fuse_dev, fuse_fs))
        print(f"pull {i}: " + " ".join(f"{k}={v:.3f}" for k, v in pulls[-1].items()))
    unhang = [hang_release(b, fuse_fs) for _ in range(rounds)]
    print(f"hang -> ok release: {[round(x, 4) for x in unhang]} s")

    result = {k: statistics.median(p[k] for p in pulls) for k in pulls[0]}
    result["fsck_rc"] = max(p["fsck_rc"] for p in pulls)
    result["data_ok"] = min(p["data_ok"] for p in pulls)
    result["unhang_s"] = statistics.median(unhang)
    for prefix in ("", "blk_"):
        direct = statistics.median(speeds[f"{prefix}direct"])
        fuse = statistics.median(speeds[f"{prefix}fuse"])
        result.update({f"{prefix}direct_write_mbps": direct, f"{prefix}fuse_write_mbps": fuse,
                       f"{prefix}fuse_slowdown": direct / fuse})
    return result


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="pull/heal and hang rounds")
    parser.add_argument("--write-rounds", type=int, default=7, help="throughput rounds")
    parser.add_argument("--size-mb", type=int, default=16)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/faultdisk.py needs root (FUSE, loop devices, mount)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
    b = Bench(Path(tempfile.mkdtemp(prefix="faultdisk-bench-")))
    result: dict[str, float] = {}
    try:
        result = measure(b, args.rounds, args.write_rounds, args.size_mb)
    except KeyboardInterrupt:
        print("interrupted, cleaning up", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not stop cleanup
            signal.signal(sig, signal.SIG_IGN)
        problems = b.cleanup()
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
    if problems or not result:
        return 1 if problems else 130
    ints = ("fsck_rc", "data_ok")
    print(" ".join(f"{k}={int(v) if k in ints else f'{v:.4g}'}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
