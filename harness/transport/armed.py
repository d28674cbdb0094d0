"""A signal sent the moment the fault starts, not one SSH session later.

A fault's clock starts at its mark, just before the harness sends the blow. Over SSH the blow was a
command of its own: a session opened, sshd forked, a shell started, then `kill` ran. On a 1-vCPU TCG guest
taking load that took 0.9-3.4 s (pacemaker_kill-node1, 2026-12-03: the controller left the cluster 3.4 s
after the mark in one run, 0.9 s in another), and every verdict measured from the mark (detection,
notification) was charged the harness's session start. Here the shell is started first and waits on its
stdin; the mark is taken when it says it is ready, and one line on its stdin makes it run the shell's
builtin `kill` (no fork, no exec). Where the transport has no such channel (the embedded testbed's
nsenter: a local fork of a few ms), the command is simply run.
"""

from __future__ import annotations

import select
import shlex
import time
from collections.abc import Callable, Sequence
from typing import Any

from harness.errors import TransportError
from harness.transport.base import Transport

READY = b"armed\n"


class Armed:
    """A shell on the node, ready to send ``signal`` to ``pids`` when fired."""

    def __init__(self, chan: Any, node: str) -> None:
        self.chan = chan
        self.node = node

    def fire(self, timeout: float = 10.0) -> None:
        """Send the go; wait (bounded) for the shell to finish, so that the kill has been done on return."""
        try:
            self.chan.sendall(b"go\n")
            deadline = time.monotonic() + timeout
            while not self.chan.exit_status_ready() and time.monotonic() < deadline:
                select.select([self.chan], [], [], 0.1)
                while self.chan.recv_ready():
                    self.chan.recv(65536)
        except OSError as e:
            raise TransportError(self.node, f"the armed kill's channel failed: {e}") from None
        finally:
            self.chan.close()


def arm_kill(transport: Transport, signal: str, pids: Sequence[int], *, timeout: float = 60.0) -> Armed | None:
    """A shell waiting to `kill -<signal> pids`, once it has said it is ready; None where the transport cannot
    hold one open (then run the kill as a command)."""
    stream: Callable[..., Any] | None = getattr(transport, "stream", None)
    if stream is None:
        return None
    script = f"echo armed; read go && kill -{signal} {' '.join(str(int(p)) for p in pids)}"
    chan = stream(["sh", "-c", script], timeout=timeout)
    name = str(getattr(transport, "name", "node"))
    got = b""
    deadline = time.monotonic() + timeout
    while READY not in got:
        if time.monotonic() > deadline or chan.exit_status_ready():
            chan.close()
            raise TransportError(name, f"`sh -c {shlex.quote(script)}` did not get ready within {timeout:g}s")
        select.select([chan], [], [], 0.1)
        while chan.recv_ready():
            got += chan.recv(65536)
    return Armed(chan, name)
