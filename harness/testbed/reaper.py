"""Run one of the lab's daemons under a reaper: the subreaper of everything the daemon starts, reaping each
orphan the moment it exits.

Why: libvirtd daemonizes every qemu it starts, so a qemu's parent is the nearest subreaper, else the host's
PID 1, and on this machine that is a sandbox agent (`process_api`) that reaps orphans every 2 s or so. A
`virsh destroy` (fence_virtd's "off", the node_power_off fault) sends the qemu SIGTERM and then polls it with
kill(pid, 0), which a zombie still answers: measured on a TCG guest, qemu exited 76 ms after the signal and
libvirt logged the domain shut off 2.0 s later, every time. Those 2 s were in every fence of the VM testbed
(pacemaker_kill-node1's notification, 15.91 s against 15) and in every power-off, and they are this machine's,
not the cluster's: under systemd (PID 1 reaps at once) they do not exist.

    python -m harness.testbed.reaper libvirtd [args...]

The daemon runs in the foreground as this process's child, dies with it (PR_SET_PDEATHSIG), and gets the
SIGTERM, SIGINT or SIGHUP this process gets; this process exits with the daemon's status once it is gone.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)


def _prctl(option: int, value: int) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), f"prctl({option}, {value})")


def _die_with_parent() -> None:
    _prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run(argv: list[str]) -> int:
    """Start argv, reap everything until it exits, and return its exit status (128 + signal if killed)."""
    _prctl(PR_SET_CHILD_SUBREAPER, 1)
    daemon = subprocess.Popen(argv, preexec_fn=_die_with_parent)
    alive = True

    def forward(signum: int, frame: object) -> None:
        if alive:  # os.kill, not Popen.send_signal: that one may reap the daemon behind this loop's back
            os.kill(daemon.pid, signum)

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            pid, status = os.wait()  # any child: the daemon, or an orphan of its (a qemu) handed to us
        except ChildProcessError:
            return 1
        if pid == daemon.pid:
            alive = False
            daemon.returncode = code = os.waitstatus_to_exitcode(status)  # Popen must not wait for it again
            return code if code >= 0 else 128 - code


def main() -> int:
    if len(sys.argv) < 2:
        print("usage: python -m harness.testbed.reaper COMMAND [ARGS...]", file=sys.stderr)
        return 2
    return run(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
