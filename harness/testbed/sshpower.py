"""Power of the SSH provider's nodes: switched and read out of band (IPMI, virsh, the lab's own), or by sysrq.

A mixin of `SshTestbed` (kept apart so each module stays readable). "Off" here is what the power
reading says, never "does not answer SSH" where the inventory can read power: a booting node does not
answer either, and only the reading tells a fence that landed after a power-on from a slow boot.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import TestbedError, TransportError
from harness.testbed.restore import ROUNDS

if TYPE_CHECKING:
    from harness.inventory import SshInventory
    from harness.testbed.local import LocalTestbed
    from harness.topology import Topology
    from harness.transport.ssh import SshTransport

POWER_TTL_S = 2.0
"""How long a power status read out of band is trusted (the poller asks every node many times a second)."""


BOOT_WAIT_S = 120.0
"""How long `up` waits for SSH on a node that was powered on again (a lab node: seconds; a server: minutes)."""
SYSRQ_WAIT_S = 15.0
"""How long a node has, after its sysrq power cut, to stop answering on its SSH port."""


class SshPower:
    """Power of `SshTestbed`; uses its `_nodes`, `_sh` and inventory."""

    topology: Topology
    inventory: SshInventory
    instance: str
    lab: LocalTestbed | None
    _nodes: dict[str, SshTransport]
    _power: dict[str, tuple[float, bool]]

    if TYPE_CHECKING:
        def _sh(self, node: str, script: str, *, timeout: float = 30, check: bool = True) -> str: ...

    def _oob(self, key: str, **subst: str) -> str:
        """Run the inventory's out-of-band command ``key`` (e.g. `power_off`) here. Errors name the key,
        never the command line: it may carry a password (`ipmitool -P …`)."""
        template = getattr(self.inventory.oob, key)
        if template is None:
            raise TestbedError(f"the inventory declares no ssh.oob.{key}")
        values = {"python": sys.executable, "topology": str(self.topology.source), **subst}
        line = template.format(**{k: shlex.quote(v) for k, v in values.items()})
        what = f"ssh.oob.{key} for {' '.join(subst.values())}"
        try:
            # FALLOVER_INSTANCE: a lab's own commands must act on this testbed's instance, however it was chosen
            r = subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True,
                               timeout=self.inventory.oob.timeout_s, cwd=Path(self.topology.source or ".").parent,
                               env={**os.environ, "FALLOVER_INSTANCE": self.instance})
        except subprocess.TimeoutExpired:
            raise TestbedError(f"{what} did not finish within {self.inventory.oob.timeout_s:g}s") from None
        if r.returncode != 0:
            said = (r.stderr or r.stdout).strip().splitlines()  # a traceback's last line says what went wrong
            raise TestbedError(f"{what} exited {r.returncode}: {said[-1][-300:] if said else 'no output'}")
        return r.stdout.strip()

    def running(self, node: str) -> bool:
        if node not in self._nodes:
            raise KeyError(node)
        seen = self._power.get(node)
        if seen is not None and time.monotonic() - seen[0] < POWER_TTL_S:
            return seen[1]
        oob = self.inventory.oob
        if oob.power_status:
            on = re.search(oob.power_on_pattern, self._oob("power_status", node=node)) is not None
        else:
            on = self._nodes[node].alive()
        self._power[node] = (time.monotonic(), on)
        return on

    def power_off(self, node: str) -> None:
        if self.inventory.oob.sysrq is not None:
            self._sysrq(node, "b" if self.inventory.oob.sysrq == "reboot" else "o")
        else:
            self._oob("power_off", node=node)
        self._nodes[node].close()  # a powered-off peer sends no FIN: do not wait for keepalive to notice
        self._power[node] = (time.monotonic(), False)

    def _sysrq(self, node: str, letter: str) -> None:
        """The kernel cuts the power from inside the node: detached and a moment late, so that the command
        that asks for it returns over SSH first; then the node must stop answering on its SSH port."""
        self._sh(node, f"setsid -f sh -c 'sleep 0.3; echo {letter} > /proc/sysrq-trigger' >/dev/null 2>&1 "
                       "</dev/null", timeout=10)
        host = self.inventory.hosts[node]
        deadline = time.monotonic() + SYSRQ_WAIT_S
        while _answers(host.host, host.port):
            if time.monotonic() > deadline:
                raise TestbedError(f"{node} still answers on {host.host}:{host.port} {SYSRQ_WAIT_S:g}s after "
                                   f"sysrq {letter!r} (is /proc/sysrq-trigger writable by {host.user}?)")
            time.sleep(0.2)

    def power_on(self, node: str) -> None:
        """Power on out of band (or, after sysrq `reboot`, let it boot); returns once the node answers SSH
        (at most `BOOT_WAIT_S`): what comes next (start its services, heal) goes over SSH."""
        for _ in range(ROUNDS):
            self._nodes[node].close()
            if self.inventory.oob.sysrq != "reboot":
                self._oob("power_on", node=node)
            self._power.pop(node, None)
            if self._reach(node, first=False):
                return
        raise TestbedError(f"{node} was powered off again each of the {ROUNDS} times it was powered on "
                           "(fenced each time?): see its pacemaker.log")

    def _reach(self, node: str, first: bool) -> bool:
        """Connect. A node checked before (fenced and rebooting since) or of the lab (ours, starting up)
        gets `BOOT_WAIT_S` to answer; a first look at a user's host does not wait: it is refused now.

        False if the power reading says the node went off while we waited: a fence the cluster scheduled
        when the node vanished can land after it was powered on again (stonith-action off keeps it off),
        and waiting for its SSH would only run out (CI, 2026-12-02: 120 s, then "No route to host")."""
        deadline = time.monotonic() + (0 if first and self.lab is None else BOOT_WAIT_S)
        while True:
            try:
                self._nodes[node].connect()
                return True
            except TransportError:
                if time.monotonic() > deadline:
                    raise
                if self.power_readable and not self.running(node):
                    return False
                time.sleep(1)

    @property
    def power_readable(self) -> bool:
        """Whether power is both read and switched out of band: only then is "off" told apart from "booting"."""
        oob = self.inventory.oob
        return oob.power_status is not None and oob.power_on is not None

    def _power_on_if_off(self, _: object, node: str) -> None:
        if not self.running(node):
            self.power_on(node)


def _answers(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether something accepts a TCP connection at host:port now (a node whose power was cut does not)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
        return True
    except OSError:
        return False
