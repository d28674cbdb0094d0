"""Leftover check: anything of one embedded testbed still present on this machine."""

from __future__ import annotations

import os
from pathlib import Path

from harness.testbed import disk, network
from harness.testbed.layout import Layout


def _processes_mentioning(path: str) -> list[str]:
    """Live processes whose command line names our state directory (zombies ignored)."""
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = next((ln for ln in (entry / "status").read_text().splitlines() if ln.startswith("State:")), "")
        except OSError:
            continue
        if path in cmdline and "zombie" not in state:
            found.append(f"process {entry.name}: {cmdline.strip()[:120]}")
    return found


def leftovers(layout: Layout) -> list[str]:
    left = [f"netns {n}" for n in network.our_namespaces(layout)]
    left += [f"loop {d}" for d in disk.find_loops(layout)]
    left += [f"fuse mount {m}" for m in disk.fuse_mounts(layout)]
    with open("/proc/mounts") as f:
        base = str(layout.state) + "/"
        left += [f"mount {line.split()[1]}" for line in f
                 if line.split()[1].startswith(base) and "fuse" not in line.split()[2]]
    if layout.cgroup_root.exists():
        left.append(f"cgroup {layout.cgroup_root}")
    left += _processes_mentioning(str(layout.state) + "/")
    if layout.state.exists():
        left.append(f"state directory {layout.state}")
    return left
