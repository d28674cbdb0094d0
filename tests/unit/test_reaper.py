"""The lab's reaper (harness/testbed/reaper.py): an orphan of its daemon is reaped the moment it exits (a
destroyed qemu must not stay a zombie that libvirt's kill(pid, 0) still finds), and the daemon's end and
signals pass through."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REAPER = [sys.executable, "-m", "harness.testbed.reaper"]


def test_an_orphan_of_the_daemon_is_reaped_at_once(tmp_path: Path) -> None:
    pidfile = tmp_path / "orphan.pid"
    # the subshell starts sleep and exits: sleep's parent is now the reaper (the nearest subreaper), as a
    # qemu's is once libvirtd has daemonized it; 0.7 s after it ended it must be gone, not a zombie
    script = (f"(sleep 0.3 & echo $! > {pidfile}); sleep 1; "
              f"test -e /proc/$(cat {pidfile}) && {{ cat /proc/$(cat {pidfile})/status | grep State; exit 1; }}; exit 7")
    r = subprocess.run([*REAPER, "sh", "-c", script], capture_output=True, text=True, timeout=30)
    assert r.returncode == 7, r.stdout + r.stderr  # 7: the orphan was gone, and the exit status passed through


def test_sigterm_reaches_the_daemon_and_its_end_ends_the_reaper() -> None:
    p = subprocess.Popen([*REAPER, "sleep", "60"])
    time.sleep(0.5)
    t0 = time.monotonic()
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=10) == 128 + signal.SIGTERM
    assert time.monotonic() - t0 < 5  # it did not wait for the 60 s


def test_no_command_is_a_usage_error() -> None:
    r = subprocess.run(REAPER, capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stderr.startswith("usage:")
