"""Loop devices on files the FUSE disk layer exposes (faultdisk.py): attach, read back, detach.

Loop numbers are shared with everything else on the machine: a caller keeps the device it was
given and checks the backing file before it touches a number again.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path


def attach_loop(exposed: Path) -> str:
    """Loop device on the FUSE-exposed image (--direct-io=off: the FUSE file is direct_io
    already). Loop numbers are shared on the machine: use only the one returned."""
    res = subprocess.run(["losetup", "--find", "--show", "--direct-io=off", str(exposed)],
                         check=True, capture_output=True, text=True)
    return res.stdout.strip()


def loop_backing_file(device: str) -> str | None:
    """Backing file of `device` from sysfs (losetup's 64-byte loop name may be truncated)."""
    try:
        return Path(f"/sys/block/{Path(device).name}/loop/backing_file").read_text().strip()
    except OSError:
        return None


def detach_loop(device: str, backing: Path, timeout: float = 10.0) -> None:
    """`losetup -d` our device and wait until it is really gone.

    A busy device (its ext4 still held, e.g. by a mount copied into a namespace that
    `ip netns exec` unshared meanwhile) is only marked auto-clear. The backing file is
    checked first: a detached number may be reused by someone else, never touch theirs.
    """
    expected, detached, err = os.path.realpath(backing), False, ""
    deadline = time.monotonic() + timeout
    while loop_backing_file(device) == expected:
        if time.monotonic() >= deadline:
            raise RuntimeError(f"loop device {device} still bound after {timeout} s: {err}")
        if not detached:
            res = subprocess.run(["losetup", "-d", device], capture_output=True, text=True)
            detached, err = res.returncode == 0, res.stderr.strip()
        time.sleep(0.05)
