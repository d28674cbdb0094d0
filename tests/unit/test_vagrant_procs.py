"""The VM lab stops its processes by PID: SIGTERM, then SIGKILL for what is still there at the timeout.

Only this test's own children are signalled (never anything found by name).
"""

from __future__ import annotations

import signal
import subprocess
import sys

from harness.testbed.vagrantprocs import terminate

IGNORES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")


def test_terminate_ends_a_process_that_takes_sigterm() -> None:
    proc = subprocess.Popen(["sleep", "60"])
    try:
        terminate([proc.pid], 30)
        assert proc.wait(timeout=30) == -signal.SIGTERM  # a zombie counts as gone: no SIGKILL after it
    finally:
        proc.kill()
        proc.wait()


def test_terminate_kills_a_process_that_ignores_sigterm_at_the_timeout() -> None:
    proc = subprocess.Popen([sys.executable, "-c", IGNORES_TERM], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        terminate([proc.pid], 0.3)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        proc.kill()
        proc.wait()
