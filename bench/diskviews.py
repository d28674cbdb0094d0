"""Measure the nodes' views of the shared disk (harness/testbed/diskviews.py) against the raw FUSE layer.

Why: every page a node writes for the first time since its last FLUSH is now read first (the
view keeps its old contents, to roll back at a power cut); what that costs the sample
application must be a known figure.

Figures (medians over --rounds, raw and view interleaved so host load hits both alike):
  *_puts_per_s   the sample application's durable PUT on ext4 (temp file, write 100 B, fsync,
                 rename, fsync of the directory), one writer, for --seconds
  *_write_mbps   SIZE MB sequential write + fsync of one file on ext4
  view_put_ratio, view_write_ratio   view / raw (1.0 = no cost)
  cut_ms             the `cut` request (the power cut of a node) with 4 MB written and not flushed
  rolled_back_pages  what that cut undid

Needs root, /dev/fuse and loop devices; cleans up after itself (bench/faultdisk.py's Bench).
The last line printed is machine-readable ``key=value`` pairs.
"""

from __future__ import annotations

import argparse
import ctypes
import importlib.util
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.testbed import diskviews, faultdisk  # noqa: E402

_spec = importlib.util.spec_from_file_location("bench_faultdisk", Path(__file__).with_name("faultdisk.py"))
assert _spec is not None and _spec.loader is not None
bench_faultdisk = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench_faultdisk)
MiB = bench_faultdisk.MiB


def put_rate(ext4: Path, seconds: float) -> float:
    """Durable PUTs per second, the way harness/agents/kvapp.py makes them."""
    kv = ext4 / "kv"
    kv.mkdir(exist_ok=True)
    dir_fd = os.open(kv, os.O_RDONLY | os.O_DIRECTORY)
    n, start = 0, time.monotonic()
    try:
        while time.monotonic() - start < seconds:
            tmp = kv / f".tmp-{n}"
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            os.write(fd, os.urandom(100))
            os.fsync(fd)
            os.close(fd)
            os.rename(tmp, kv / f"key-{n}")
            os.fsync(dir_fd)
            n += 1
    finally:
        os.close(dir_fd)
    elapsed = time.monotonic() - start
    for p in kv.iterdir():
        p.unlink()
    return n / elapsed


def cut_unflushed(b: bench_faultdisk.Bench, control: Path) -> tuple[float, int]:
    """Write 4 MB to a spare view's loop device without a FLUSH, then time the cut (it writes them back)."""
    diskviews.request(control, "add spare.1")
    device = b.attach(b.fuse_mnt / "spare.1")
    fd = os.open(device, os.O_WRONLY)
    try:
        os.write(fd, os.urandom(4 * MiB))
    finally:
        os.close(fd)  # the last close writes the device's dirty pages back, without a FLUSH
    start = time.monotonic()
    answer = diskviews.request(control, "cut spare.1")
    return (time.monotonic() - start) * 1000, int(answer["rolled_back_pages"])


def measure(b: bench_faultdisk.Bench, rounds: int, seconds: float, size_mb: int) -> dict[str, float]:
    image = b.image("disk.img", size_mb * 4)
    bench_faultdisk.mkfs(str(image))
    control = b.work / "ctl"
    b.fuse_mnt.mkdir()
    b.proc = faultdisk.start_daemon(image, b.fuse_mnt, timeout=15, control=control)
    diskviews.request(control, "add node1.1")
    devices = {"raw": b.attach(b.fuse_mnt / image.name), "view": b.attach(b.fuse_mnt / "node1.1")}
    data = os.urandom(size_mb * MiB)
    figures: dict[str, list[float]] = {f"{k}_{f}": [] for f in ("puts_per_s", "write_mbps") for k in devices}
    for _ in range(rounds):
        for kind, device in devices.items():  # the same ext4, mounted through one device at a time
            fs = b.mount(device, f"{kind}-ext4")
            figures[f"{kind}_puts_per_s"].append(put_rate(fs, seconds))
            figures[f"{kind}_write_mbps"].append(bench_faultdisk.throughput(fs / "bench.bin", data))
            b.umount(fs)
    for key, values in figures.items():
        print(f"{key}: {[round(v, 1) for v in values]}")
    result = {k: statistics.median(v) for k, v in figures.items()}
    result["view_put_ratio"] = result["view_puts_per_s"] / result["raw_puts_per_s"]
    result["view_write_ratio"] = result["view_write_mbps"] / result["raw_write_mbps"]
    result["cut_ms"], result["rolled_back_pages"] = cut_unflushed(b, control)
    return result


def private_mounts() -> None:
    """A mount namespace of our own: no `ip netns exec` elsewhere on the machine copies our ext4
    mounts (a copy would keep one device's superblock alive while the other writes the image)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one PUT-rate run")
    parser.add_argument("--size-mb", type=int, default=16)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("bench/diskviews.py needs root (FUSE, loop devices, mount)", file=sys.stderr)
        return 2
    private_mounts()
    signal.signal(signal.SIGTERM, _interrupt)
    b = bench_faultdisk.Bench(Path(tempfile.mkdtemp(prefix="diskviews-bench-")))
    result: dict[str, float] = {}
    try:
        result = measure(b, args.rounds, args.seconds, args.size_mb)
    except KeyboardInterrupt:
        print("interrupted, cleaning up", file=sys.stderr)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
        problems = b.cleanup()
        for problem in problems:
            print(f"cleanup: {problem}", file=sys.stderr)
    if problems or not result:
        return 1 if problems else 130
    print(" ".join(f"{k}={v:.4g}" for k, v in result.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
