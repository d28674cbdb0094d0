"""A client process (load, probe, ARP watch) dies with the harness, even when the harness is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

HARNESS = """
import sys, time
from pathlib import Path
from types import SimpleNamespace
from harness.load import ClientProcess

out = Path(sys.argv[1])
client = SimpleNamespace(wrap=lambda argv: list(argv))
tb = SimpleNamespace(client=lambda: client)
p = ClientProcess(tb, ["sh", "-c", f"echo started >> {out}; exec sleep 300"], out=out, what="a load stand-in")
p.start()
print(p.pid, flush=True)
time.sleep(300)
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def test_a_client_process_dies_when_the_harness_is_sigkilled(tmp_path: Path) -> None:
    harness = subprocess.Popen([sys.executable, "-c", HARNESS, str(tmp_path / "out.jsonl")], stdout=subprocess.PIPE,
                               text=True, cwd=Path(__file__).resolve().parents[2])
    try:
        child = int(harness.stdout.readline())  # type: ignore[union-attr]
        assert _alive(child)
        os.kill(harness.pid, signal.SIGKILL)  # no finally, no atexit: only the kernel can clean up now
        harness.wait(10)
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(child), f"pid {child} outlived the harness"
    finally:
        if harness.poll() is None:
            harness.kill()
