"""The shared disk: an ext4 image behind a FUSE layer (so it can be "pulled"), one loop device per node.

Each powered-on node has its own view of the image (diskviews.py) on its own loop device, so
its own ext4 superblock and page cache: a power cut (nodes.power_off) drops what that node had
not flushed, and the next node to mount sees only flushed data. The cluster's Filesystem
resource mounts it on one node at a time, in that node's mount namespace only. Loop numbers are
shared with the rest of the machine, so we never assume one: each node's device is recorded as
a symlink in the node's directory, and our devices are found again by their backing files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from harness.errors import TestbedError
from harness.testbed import cgroup, diskviews
from harness.testbed.layout import Layout


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise TestbedError(f"`{' '.join(argv)}` exited {r.returncode}: {r.stderr.strip()}")
    return r


def backing_file(layout: Layout, disk: str) -> Path:
    """The image as the FUSE layer exposes it, without a cache: what the harness itself reads."""
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
                         "--mountpoint", str(mnt), "--control", str(layout.disk_control(disk))],
                        log=layout.state / f"fuse-{disk}.log")
    layout.pidfile(f"fuse-{disk}").write_text(str(proc.pid))
    faultdisk.wait_mounted(mnt, timeout=15)
    return proc.pid


def _views(layout: Layout, disk: str, line: str) -> dict[str, Any]:
    try:
        return diskviews.request(layout.disk_control(disk), line)
    except OSError as e:
        raise TestbedError(f"disk {disk}: its FUSE layer did not do `{line}`: {e}") from None


def node_views(layout: Layout, disk: str, node: str) -> dict[str, dict[str, Any]]:
    """The views of `node` (one per incarnation not yet gone) and what each did; {} without a FUSE layer."""
    if not layout.disk_control(disk).exists():
        return {}
    views: dict[str, dict[str, Any]] = _views(layout, disk, "status")["views"]
    return {name: v for name, v in views.items() if name.rpartition(".")[0] == node}


def attach_node(layout: Layout, disk: str, node: str) -> str:
    """A fresh view and loop device for this incarnation of `node`; the node's link points at it."""
    # counted across power cycles (the node's directory stays), so each incarnation's evidence has its own name
    counter = layout.node_dir(node) / "disks" / f"{disk}.generation"
    try:
        last = int(counter.read_text())
    except (OSError, ValueError):
        last = 0
    generation = 1 + max([last, *(int(n.rpartition(".")[2]) for n in node_views(layout, disk, node))])
    counter.parent.mkdir(parents=True, exist_ok=True)
    counter.write_text(f"{generation}\n")
    name = f"{node}.{generation}"
    _views(layout, disk, f"add {name}")
    try:
        dev = _run(["losetup", "--find", "--show", "--direct-io=off",
                    str(layout.disk_fuse_dir(disk) / name)]).stdout.strip()
    except BaseException:
        _views(layout, disk, f"cut {name}")  # unopened: the layer forgets it
        raise
    link = layout.node_disk_link(node, disk)
    link.parent.mkdir(parents=True, exist_ok=True)
    tmp = link.with_suffix(".tmp")
    if tmp.is_symlink():
        tmp.unlink()
    tmp.symlink_to(dev)
    os.replace(tmp, link)
    return dev


def cut_node(layout: Layout, disk: str, node: str) -> dict[str, dict[str, Any]]:
    """The power cut, as `node`'s disk sees it: roll its unflushed writes back, discard all it writes from now.

    Returns each view's account (``rolled_back_pages``: what the cut undid). Nothing to cut without a
    FUSE layer (the testbed is gone).
    """
    return {name: _views(layout, disk, f"cut {name}")
            for name, v in node_views(layout, disk, node).items() if v["state"] == "on"}


def detach_node(layout: Layout, disk: str, node: str) -> None:
    """Let go of a powered-off node's loop devices: each goes when the dead node's ext4 lets go of it.

    `losetup -d` of a busy device only marks it auto-clear: the mount of a dying mount namespace
    is torn down a moment later (its writes land in the cut view and are discarded).
    """
    for dev in node_loops(layout, disk, node):
        subprocess.run(["losetup", "-d", dev], capture_output=True, text=True, timeout=30)
    layout.node_disk_link(node, disk).unlink(missing_ok=True)


def node_loops(layout: Layout, disk: str, node: str) -> list[str]:
    """The loop devices on `node`'s views of `disk` (one per incarnation still bound)."""
    prefix = str(layout.disk_fuse_dir(disk) / f"{node}.")
    return [dev for dev, backing in _loops(layout) if backing.startswith(prefix)]


def _loops(layout: Layout) -> list[tuple[str, str]]:
    """(device, backing file) of every loop device whose backing file is in this testbed's state directory."""
    out = subprocess.run(["losetup", "--json", "--list"], capture_output=True, text=True, timeout=30).stdout
    devices = json.loads(out)["loopdevices"] if out.strip() else []
    base = str(layout.state) + "/"
    found = []
    for d in devices:
        f = (d.get("back-file") or "").removesuffix(" (deleted)")
        if f.startswith(base):
            found.append((d["name"], f))
    return found


def find_loops(layout: Layout, disk: str | None = None) -> list[str]:
    """Loop devices of this testbed (of one disk's views, given `disk`)."""
    base = str(layout.disk_fuse_dir(disk)) + "/" if disk else str(layout.state) + "/"
    return [dev for dev, backing in _loops(layout) if backing.startswith(base)]


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
    for line in fuse_mounts(layout):
        faultdisk.unmount(Path(line))
        gone.append(f"fuse {line}")
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
    """Read one block of the disk with O_DIRECT (no cache answers it): None when it reads, else what
    the read got (`dd: error reading '/dev/loop3': Input/output error`).

    Through a running node's loop device (its view): the path the cluster's ext4 uses
    (loop device → FUSE layer → image).
    """
    dev = _node_device(layout, disk_name)
    if not isinstance(dev, Path):
        return dev
    return _dd(["dd", f"if={dev}", "of=/dev/null", "bs=4096", "count=1", "iflag=direct", "status=none"],
               f"a read of {dev}", timeout)


def _node_device(layout: Layout, disk_name: str) -> Path | str:
    """A running node's link to its loop device (its view of the disk), or why there is none."""
    links = [layout.node_disk_link(n, disk_name) for n in layout.topology.node_names]
    dev = next((link for link in links if link.exists()), None)
    return dev if dev is not None else f"no loop device behind {', '.join(map(str, links))}"


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
    """Write the disk's first sector through a node's loop device with O_DIRECT: None when it writes, else the error.

    The first 1024 bytes of an ext4 volume are never used by the filesystem (boot sector space), and
    what is written is what the image already holds there (read from the image itself, not through
    the layer under test), so the check changes nothing, whatever the filesystem does meanwhile.
    """
    dev = _node_device(layout, disk_name)
    if not isinstance(dev, Path):
        return dev
    return _dd(["dd", f"if={layout.disk_image(disk_name)}", f"of={dev}", "bs=512", "count=1", "oflag=direct",
                "conv=notrunc", "status=none"], f"a write to {dev}", timeout)
