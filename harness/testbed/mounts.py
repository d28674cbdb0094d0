"""Where the embedded testbed's shared disks are mounted, read from the host without entering a node."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from harness.testbed import nodes


def shared_mounts(testbed: Any, proc: Path = Path("/proc")) -> dict[str, list[str]] | None:
    """Where each shared disk's filesystem is mounted: {disk: [nodes]}; None when the testbed cannot tell.

    The embedded testbed mounts a shared disk in one node's mount namespace only, so the host sees
    it in ``/proc/<node init pid>/mountinfo`` of that node: a mount whose device (major:minor) is
    one of the disk's loop devices (each node has its own), wherever it is mounted. Plain file
    reads on the host, no subprocess.
    """
    layout = getattr(testbed, "layout", None)
    topology = getattr(testbed, "topology", None)
    if layout is None or topology is None or not hasattr(layout, "node_disk_link"):
        return None
    devices: dict[int, str] = {}
    for d in topology.disks:
        for node in topology.node_names:
            try:
                devices[os.stat(layout.node_disk_link(node, d.name)).st_rdev] = d.name
            except OSError:  # powered off (or not attached yet): nothing can be mounted from it
                continue
    out: dict[str, list[str]] = {d.name: [] for d in topology.disks}
    for node in topology.node_names:
        pid = nodes.init_pid(layout, node)
        if pid is None:
            continue
        for disk in _mounted(proc / str(pid) / "mountinfo", devices):
            out[disk].append(node)
    return out


def _mounted(mountinfo: Path, devices: dict[int, str]) -> set[str]:
    """Disks (by device number) mounted in the mount namespace that ``mountinfo`` describes."""
    found: set[str] = set()
    try:
        text = mountinfo.read_text()
    except OSError:  # the node went down between the pid and the read
        return found
    for line in text.splitlines():
        fields = line.split()
        if len(fields) < 3:
            continue
        major, _, minor = fields[2].partition(":")
        try:
            dev = os.makedev(int(major), int(minor))
        except ValueError:
            continue
        if dev in devices:
            found.add(devices[dev])
    return found


