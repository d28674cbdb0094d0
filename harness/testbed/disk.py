"""The shared disk: an ext4 image behind a FUSE layer (so it can be "pulled"), on a loop device.

The cluster's Filesystem resource mounts it on one node at a time, in that node's mount
namespace only. Loop numbers are shared with the rest of the machine, so we never assume
one: the device we get is recorded as a symlink, and found again by its backing file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed import cgroup
from harness.testbed.layout import Layout


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")
    return r


def backing_file(layout: Layout, disk: str) -> Path:
    """What the loop device reads: the file exposed by the FUSE layer."""
    return layout.disk_fuse_dir(disk) / layout.disk_image(disk).name


def prepare(layout: Layout, disk: str) -> None:
    """Create and format the image (once per testbed: a repairing `up` keeps the data)."""
    spec = next(d for d in layout.topology.disks if d.name == disk)
    image = layout.disk_image(disk)
    image.parent.mkdir(parents=True, exist_ok=True)
    if not image.exists():
        tmp = image.with_suffix(".new")
        _run(["mkfs.ext4", "-q", "-F", "-L", disk[:16], "-E", "lazy_itable_init=0,lazy_journal_init=0",
              str(tmp), f"{spec.size_mb}M"])
        tmp.rename(image)


def start_fuse(layout: Layout, disk: str) -> int:
    """The pass-through FUSE daemon that can switch the disk to I/O errors (the disk-pull fault)."""
    from harness.testbed import faultdisk

    mnt = layout.disk_fuse_dir(disk)
    mnt.mkdir(parents=True, exist_ok=True)
    if faultdisk.is_mounted(mnt):
        return int(layout.pidfile(f"fuse-{disk}").read_text())
    proc = cgroup.spawn(layout.daemon_cgroup(f"fuse-{disk}"),
                        [sys.executable, "-m", "harness.testbed.faultdisk", "--image", str(layout.disk_image(disk)),
                         "--mountpoint", str(mnt)], log=layout.state / f"fuse-{disk}.log")
    layout.pidfile(f"fuse-{disk}").write_text(str(proc.pid))
    faultdisk.wait_mounted(mnt, timeout=15)
    return proc.pid


def attach(layout: Layout, disk: str) -> str:
    """Loop device on the FUSE-exposed image; the stable symlink points at it."""
    backing = backing_file(layout, disk)
    dev = find_loops(layout, disk)
    if not dev:
        dev = [_run(["losetup", "--find", "--show", "--direct-io=off", str(backing)]).stdout.strip()]
    link = layout.disk_link(disk)
    tmp = link.with_suffix(".tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(dev[0])
    os.replace(tmp, link)
    return dev[0]


def find_loops(layout: Layout, disk: str | None = None) -> list[str]:
    """Loop devices whose backing file is inside this testbed's state directory."""
    out = subprocess.run(["losetup", "--json", "--list"], capture_output=True, text=True, timeout=30).stdout
    devices = json.loads(out)["loopdevices"] if out.strip() else []
    base = str(layout.state) + "/"
    want = str(backing_file(layout, disk)) if disk else None
    found = []
    for d in devices:
        f = (d.get("back-file") or "").removesuffix(" (deleted)")
        if (want and f == want) or (not want and f.startswith(base)):
            found.append(d["name"])
    return found


def detach_all(layout: Layout, timeout: float = 10.0) -> list[str]:
    """Detach our loop devices; a node's ext4 mount vanishes asynchronously, so retry while busy."""
    gone = []
    for dev in find_loops(layout):
        deadline = time.monotonic() + timeout
        while True:
            r = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True, timeout=30)
            if r.returncode == 0 or "No such device" in r.stderr:
                gone.append(f"loop {dev}")
                break
            if time.monotonic() > deadline:
                raise TestbedError(f"loop device {dev} still busy after {timeout:g}s: {r.stderr.strip()}")
            time.sleep(0.1)
    # `losetup -d` only marks a busy device for auto-clear; wait until it is really gone
    deadline = time.monotonic() + timeout
    while find_loops(layout) and time.monotonic() < deadline:
        time.sleep(0.05)
    return gone


def stop_fuse(layout: Layout) -> list[str]:
    """Unmount every FUSE disk layer of this testbed (the daemon exits when unmounted)."""
    from harness.testbed import faultdisk

    gone = []
    disks_dir = layout.state / "disks"
    for mnt in sorted(disks_dir.glob("*.fuse")) if disks_dir.exists() else []:
        if faultdisk.is_mounted(mnt):
            faultdisk.unmount(mnt)
            gone.append(f"fuse {mnt}")
    for mnt in fuse_mounts(layout):
        faultdisk.unmount(Path(mnt))
        gone.append(f"fuse {mnt}")
    return gone


def fuse_mounts(layout: Layout) -> list[str]:
    base = str(layout.state) + "/"
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f if line.split()[1].startswith(base) and "fuse" in line.split()[2]]


def mode(layout: Layout, disk_name: str) -> str | None:
    """What the FUSE layer under a shared disk does now (`ok`, `eio`, …); None when it is not mounted."""
    from harness.testbed import faultdisk

    mnt = layout.disk_fuse_dir(disk_name)
    return faultdisk.get_mode(mnt) if faultdisk.is_mounted(mnt) else None


def set_mode(layout: Layout, disk_name: str, mode: str) -> None:
    """Switch the FUSE layer under a shared disk (`ok`, `eio`, `hang`, …): the disk-pull fault.

    Breaking a disk that is not there raises (a pull that did nothing must not pass for one);
    mending it (`ok`) is a no-op then: the testbed is gone, and nothing is left to heal.
    """
    from harness.testbed import faultdisk

    mnt = layout.disk_fuse_dir(disk_name)
    if not faultdisk.is_mounted(mnt):
        if mode == "ok":
            return
        raise TestbedError(f"disk {disk_name}: its FUSE layer {mnt} is not mounted (is the testbed up?)")
    if mode == "ok":
        # a signal works even when every FUSE thread is held by a `hang`
        faultdisk.force_ok(int(layout.pidfile(f"fuse-{disk_name}").read_text()), mnt)
    else:
        faultdisk.set_mode(mnt, mode)


def read_error(layout: Layout, disk_name: str, timeout: float = 10.0) -> str | None:
    """Read one block of the disk's loop device with O_DIRECT (no cache answers it): None when it
    reads, else what the read got (`dd: error reading '/dev/loop3': Input/output error`).

    This is the path the cluster's ext4 uses: loop device → FUSE layer → image.
    """
    dev = layout.disk_link(disk_name)
    if not dev.exists():
        return f"no loop device behind {dev}"
    return _dd(["dd", f"if={dev}", "of=/dev/null", "bs=4096", "count=1", "iflag=direct", "status=none"],
               f"a read of {dev}", timeout)


def _dd(argv: list[str], what: str, timeout: float) -> str | None:
    """Run one dd; None when it succeeds, else its error, or "no answer" when the disk holds it (`hang`).

    A dd held by a hung disk sleeps uninterruptibly: SIGKILL takes effect only when its I/O returns
    (at the heal), so it is left to a reaper thread instead of being waited for (subprocess.run would).
    """
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True)
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        threading.Thread(target=proc.communicate, name="dd-reaper", daemon=True).start()
        return f"{what} got no answer within {timeout:g}s"
    return None if proc.returncode == 0 else (err.strip() or f"dd exited {proc.returncode}")


def write_error(layout: Layout, disk_name: str, timeout: float = 10.0) -> str | None:
    """Write the disk's first sector through its loop device with O_DIRECT: None when it writes, else the error.

    The first 1024 bytes of an ext4 volume are never used by the filesystem (boot sector space), and
    what is written is what the image already holds there (read from the image itself, not through
    the layer under test), so the check changes nothing, whatever the filesystem does meanwhile.
    """
    dev = layout.disk_link(disk_name)
    if not dev.exists():
        return f"no loop device behind {dev}"
    return _dd(["dd", f"if={layout.disk_image(disk_name)}", f"of={dev}", "bs=512", "count=1", "oflag=direct",
                "conv=notrunc", "status=none"], f"a write to {dev}", timeout)
