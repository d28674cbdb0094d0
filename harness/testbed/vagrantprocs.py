"""The lab's processes: its daemons started and stopped by PID, and every process found by namespace.

No systemd runs in the lab, and nothing is ever killed by name: a daemon's PID comes from its pid
file and counts only while that process is inside the lab's namespaces, so a stale pid file can
never make fallover signal a host process.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.vagrantnames import LabNames, is_mounted
from harness.wait import poll

DAEMONS = ("virtlogd", "libvirtd", "tgtd", "fence_virtd", "events")
"""Started in this order, stopped in the reverse one, each by the PID in its pid file."""


class LabProcesses(LabNames):
    """Daemons (by PID) and processes of one VM lab (the middle layer of `vagrantlab.Lab`)."""

    def pid(self, daemon: str) -> int | None:
        """The daemon's PID if it runs (and is in the lab); None otherwise."""
        try:
            pid = int(self.pidfile(daemon).read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if pid in self.processes() else None

    def start_daemon(self, daemon: str, argv: list[str], *, ready: Path | Callable[[], bool] | None = None,
                     timeout: float = 30, foreground: bool = False) -> int:
        """Start ``argv`` in the lab unless its pid file names a live lab process; wait for ``ready``
        (a path in the lab, or a test)."""
        pid = self.pid(daemon)
        if pid is not None:
            return pid
        with open(self.state / f"{daemon}.log", "ab") as log:  # the daemon keeps its own copy of the fd
            if foreground:  # no daemon mode of its own: we record its PID
                proc = subprocess.Popen(self.argv(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                        start_new_session=True)
                self.pidfile(daemon).write_text(str(proc.pid))  # nsenter execs: the PID is the daemon's
            else:
                subprocess.run(self.argv(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                               timeout=timeout, check=True)
        deadline = time.monotonic() + timeout
        while True:
            pid = self.pid(daemon)
            if pid is not None and (ready is None or (ready() if callable(ready) else _lab_path_exists(self, ready))):
                return pid
            if time.monotonic() > deadline:
                tail = (self.state / f"{daemon}.log").read_text(errors="replace")[-400:]
                raise TestbedError(f"{daemon} did not start in the lab within {timeout:g}s: {tail.strip()}")
            time.sleep(0.1)

    def listening(self, port: int) -> bool:
        """Something in the lab accepts TCP connections on the harness's management address and ``port``."""
        from harness.testbed.nfqueue import in_netns

        def probe() -> bool:
            try:
                socket.create_connection((str(self.mgmt_address), port), timeout=1).close()
                return True
            except OSError:
                return False

        return probe() if self.in_host_netns else in_netns(self.netns, probe)

    def stop_daemon(self, daemon: str, timeout: float = 15) -> bool:
        pid = self.pid(daemon)
        if pid is None:
            self.pidfile(daemon).unlink(missing_ok=True)
            return False
        terminate([pid], timeout)
        self.pidfile(daemon).unlink(missing_ok=True)
        return True

    def processes(self) -> dict[int, str]:
        """Every process of the lab (PID → command line): those in its mount namespace (or, on a host
        network, its qemu), all started by the lab's daemons or by fallover."""
        try:
            ino = os.stat(self.mnt_file).st_ino if is_mounted(self.mnt_file) else None
        except OSError:
            ino = None
        nino = None
        if not self.in_host_netns:
            try:
                nino = os.stat(f"/run/netns/{self.netns}").st_ino
            except OSError:
                pass
        found: dict[int, str] = {}
        for d in Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                mine = (ino is not None and os.stat(d / "ns" / "mnt").st_ino == ino) or \
                    (nino is not None and os.stat(d / "ns" / "net").st_ino == nino)
                if mine:
                    found[int(d.name)] = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
        found.pop(os.getpid(), None)
        return found


def _lab_path_exists(lab: LabNames, path: Path) -> bool:
    return lab.run(["test", "-e", str(path)], check=False, timeout=10).returncode == 0


def terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL what is still there after ``timeout``: only these PIDs, never by name."""
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    _, gone = poll(lambda: [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)],
                   lambda alive: not alive, timeout=timeout, interval=0.1)
    if gone:
        return
    for p in pids:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (OSError, IndexError):
        return True
