"""The VM testbed's disk pull: the nodes' iSCSI paths dropped inside the lab, or the guests' devices offline.

`vagrant.disk_pull: path` (the default) is a SAN path loss: an nft table in the lab's network namespace
drops every packet between the nodes' management addresses and tgtd's portal, both directions. Nothing
in the guests is touched; their initiators notice by their own timeouts (a NOP-Out unanswered, then
`replacement_timeout`) and only then fail I/O with EIO, so the pull waits for that, bounded by those
timeouts. Heal: the table deleted (idempotent; a lab that is gone took it along), the initiators log in
again by themselves and the devices run again. `device` is the guest-side instant variant:
`/sys/block/sdX/device/state` offline on every running node (the SSH provider's own pull).

The commands are built by pure functions (unit-tested); `VmDisk` is a mixin of `VagrantTestbed`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from harness.errors import FalloverError, TestbedError, WaitTimeout
from harness.testbed.vagrantnames import (
    ISCSI_NOOP_INTERVAL_S,
    ISCSI_NOOP_TIMEOUT_S,
    ISCSI_PORT,
    ISCSI_REPLACEMENT_S,
)
from harness.wait import wait_until

if TYPE_CHECKING:
    from harness.testbed.vagrantlab import Lab
    from harness.topology import Topology

PATH_FAIL_S = ISCSI_NOOP_INTERVAL_S + ISCSI_NOOP_TIMEOUT_S + ISCSI_REPLACEMENT_S
"""The longest a guest's I/O can still wait after its path went (an idle session: a NOP-Out is due at
most one interval later, fails after its timeout, then I/O waits `replacement_timeout`): 20 s."""
PATH_WAIT_S = 2 * PATH_FAIL_S + 30
"""How long a pull (or its heal) waits for every running guest to see it. Twice the initiators' own
bound plus 30 s: on a starved TCG host (load 15-30, a fifth of a core per guest) a guest's timers fire late."""
PATH_POLL_S = 1.0
"""How often the guests' device states are read while waiting (an SSH command per running node)."""
FAILED_STATES = ("blocked", "transport-offline", "offline")
"""SCSI device states of a pulled disk: session lost (I/O held), `replacement_timeout` expired (EIO), device offline."""


def drop_table(lab: Lab, disk: str) -> str:
    """The nft table that holds a disk's path drop (`fo_disk_<tid>`: nft names take no dashes)."""
    return f"fo_disk_{lab.tid(disk)}"


def path_drop_script(lab: Lab, disk: str, nodes: list[str]) -> str:
    """`nft -f -` input that drops ``nodes``' iSCSI traffic to and from the portal, replacing any earlier drop.

    Counters on both rules: how many packets the pull held back is evidence that it was in effect.
    The portal is the lab's own address (tgtd runs in the lab), so the guests' packets meet `input`
    and tgtd's answers `output`; SSH, DHCP and the event collector on the same network pass.
    """
    table = drop_table(lab, disk)
    addrs = ", ".join(str(lab.node_mgmt_address(n)) for n in nodes)
    portal = lab.mgmt_address
    return (f"add table inet {table}\ndelete table inet {table}\n"
            f"table inet {table} {{\n"
            f"  chain in {{\n    type filter hook input priority -10; policy accept;\n"
            f"    ip saddr {{ {addrs} }} ip daddr {portal} tcp dport {ISCSI_PORT} counter drop\n  }}\n"
            f"  chain out {{\n    type filter hook output priority -10; policy accept;\n"
            f"    ip saddr {portal} ip daddr {{ {addrs} }} tcp sport {ISCSI_PORT} counter drop\n  }}\n"
            "}\n")


def path_restore_script(lab: Lab, disk: str) -> str:
    """`nft -f -` input that removes the drop; a no-op when there is none (heal is idempotent)."""
    table = drop_table(lab, disk)
    return f"add table inet {table}\ndelete table inet {table}\n"


def path_drop_packets(nft_list_output: str) -> int:
    """Packets the drop held back, from `nft list table` (the sum of its rules' counters)."""
    total = 0
    for line in nft_list_output.splitlines():
        words = line.split()
        if "counter" in words and "packets" in words:
            total += int(words[words.index("packets") + 1])
    return total


class VmDisk:
    """`disk_mode` / `set_disk_mode` of `VagrantTestbed`: the lab-side path pull, or the SSH provider's
    device pull (`vagrant.disk_pull: device`)."""

    topology: Topology
    labx: Lab

    if TYPE_CHECKING:
        def running(self, node: str) -> bool: ...

        def _sh(self, node: str, script: str, *, timeout: float = 30, check: bool = True) -> str: ...

        def _sysfs_state(self, disk: str, node: str) -> str: ...

    @property
    def _path_pull(self) -> bool:
        return self.labx.settings.disk_pull == "path"

    def _lab_up(self) -> bool:
        from harness.testbed.vagrantnames import is_mounted

        return is_mounted(self.labx.mnt_file)

    def path_dropped(self, disk: str) -> int | None:
        """Packets the lab's drop of ``disk``'s path held back so far; None when no drop is in."""
        if not self._lab_up():
            return None
        r = self.labx.run(["nft", "list", "table", "inet", drop_table(self.labx, disk)], check=False, timeout=15)
        return path_drop_packets(r.stdout) if r.returncode == 0 else None

    def device_states(self, disk: str) -> dict[str, str]:
        """Each running node's SCSI device state for ``disk`` (`running`, `blocked`, …; "" when it has none);
        a node that does not answer over SSH is left out."""
        states = {}
        for n in (n for n in self.topology.node_names if self.running(n)):
            try:
                states[n] = self._sh(n, f"cat {self._sysfs_state(disk, n)} 2>/dev/null", check=False, timeout=15).strip()
            except FalloverError:  # booting, or hung by another fault: it cannot say, and it is not waited for
                continue
        return states

    def disk_mode(self, disk: str) -> str | None:
        if self._path_pull and self.path_dropped(disk) is not None:
            return "eio"
        return super().disk_mode(disk)  # type: ignore[misc]

    def set_disk_mode(self, disk: str, mode: str) -> None:
        if not self._path_pull:
            super().set_disk_mode(disk, mode)  # type: ignore[misc]
            return
        if mode not in ("ok", "eio"):
            raise TestbedError(f"disk {disk}: mode {mode!r}: a pulled iSCSI path is ok or eio only")
        pulled = mode == "eio"
        if pulled:
            self.labx.run(["nft", "-f", "-"], input=path_drop_script(self.labx, disk, self.topology.node_names),
                          timeout=15)
        elif self._lab_up():
            self.labx.run(["nft", "-f", "-"], input=path_restore_script(self.labx, disk), timeout=15)
        else:
            return  # the lab is gone, and its drop with it
        self._await_devices(disk, pulled)

    def _await_devices(self, disk: str, pulled: bool) -> None:
        """Wait until every running guest sees the path gone (its device failed) or back (running)."""
        last: list[dict[str, str]] = [{}]

        def seen() -> bool:
            states = last[0] = self.device_states(disk)
            if pulled:
                return all(s in FAILED_STATES[1:] for s in states.values())
            return not any(s in FAILED_STATES for s in states.values())

        what = (f"every running node's device of disk {disk} failing (its initiator's timeouts: ≤ {PATH_FAIL_S} s)"
                if pulled else f"every running node's device of disk {disk} running again (iSCSI login)")
        try:
            wait_until(seen, timeout=PATH_WAIT_S, interval=PATH_POLL_S, what=what, describe=lambda: f"device states {last[0]}")
        except WaitTimeout as e:
            raise TestbedError(f"disk {disk}: {e}") from None
