"""The `ssh:` block of a topology: how fallover reaches each node of a cluster it did not build.

An inventory names every node's SSH endpoint and the out-of-band commands that power a node
off and on (IPMI, `virsh destroy`, a PDU) or pull a SAN disk. fallover never sends a command to
a host that is not listed here, and checks host keys against `known_hosts` unless told not to.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

MGMT = "mgmt"
"""The lab's management network (interface and bridge name): SSH only, never touched by a fault."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SshHost(_Model):
    """One node's SSH endpoint, and the names its adapters and disks have on it."""

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str = Field(default="root", min_length=1)
    key_file: Path | None = None
    """Private key; None: the SSH agent (SSH_AUTH_SOCK) and ~/.ssh/id_* as ssh would."""
    sudo: bool = False
    """Run every command through `sudo -n` (a user other than root); sudo must not ask a password."""
    interfaces: dict[str, str] = {}
    """network name → interface name on this node (default: the network's name)."""
    disks: dict[str, str] = {}
    """disk name → its block device on this node (for /sys/block/X/device/state)."""


class Oob(_Model):
    """Out-of-band commands, run on the harness host; `{node}`, `{disk}`, `{topology}` and `{python}` are
    substituted (each shell-quoted). A command that exits non-zero fails the fault with its output."""

    sysrq: Literal["reboot", "off"] | None = None
    """Cut power from inside the node through the kernel's `/proc/sysrq-trigger` (no clean shutdown, no
    sync): `reboot` (`b`) and the node boots again by itself; `off` (`o`) and `power_on`/`power_status`
    bring it back. For hosts with no BMC the harness can reach; never with `lab: embedded`."""
    power_off: str | None = None
    power_on: str | None = None
    power_status: str | None = None
    """Prints the power state; the node counts as powered on when the output matches `power_on_pattern`."""
    power_on_pattern: str = r"(?i)\b(on|running)\b"
    disk_pull: str | None = None
    disk_restore: str | None = None
    disk_status: str | None = None
    """Prints `ok` while the disk serves I/O, another word (`eio`, `offline`) when pulled, nothing when absent."""
    timeout_s: float = Field(default=60.0, gt=0)

    @model_validator(mode="after")
    def _complete(self) -> Oob:
        power: tuple[str, ...] = ("power_off", "power_on", "power_status")
        if self.sysrq is not None:  # sysrq cuts the power; what brings it back depends on the letter
            if self.power_off:
                raise ValueError("sysrq: not with power_off (one way to cut the power)")
            back = ("power_on", "power_status") if self.sysrq == "off" else ()
            for k in power[1:]:
                if k in back and not getattr(self, k):
                    raise ValueError(f"{k}: required with sysrq: off (a node powered off by sysrq cannot power "
                                     "itself on)")
                if k not in back and getattr(self, k):
                    raise ValueError(f"{k}: not with sysrq: reboot (the node boots again by itself)")
            power = ()
        for kind, keys in (("power", power), ("disk", ("disk_pull", "disk_restore", "disk_status"))):
            given = [k for k in keys if getattr(self, k)]
            if given and len(given) != len(keys):
                missing = next(k for k in keys if not getattr(self, k))
                raise ValueError(f"{missing}: required with {given[0]} ({kind} commands come as a set)")
        return self


class SshInventory(_Model):
    """Every node's endpoint, host-key policy, timeouts and out-of-band commands."""

    hosts: dict[str, SshHost]
    strict_host_key_checking: bool = True
    known_hosts: Path | None = None
    """Default ~/.ssh/known_hosts; with `lab: embedded` the lab writes its own."""
    connect_timeout_s: float = Field(default=10.0, gt=0, le=300)
    oob: Oob = Oob()
    alerts_log: str | None = None
    """Where the cluster's `fallover-alert` agent appends its JSON lines on each node (README: "Your own
    cluster"); fallover mirrors it to read notifications and fences. Unset: notification is not judged."""
    lab: Literal["embedded"] | None = None
    """`embedded`: fallover builds these hosts itself (the namespace cluster with sshd in each node)."""
    lab_subnet: ipaddress.IPv4Network | None = None
    """The lab's management network: the harness gets .1 in the switch namespace, hosts their `host`."""

    def check_against(self, nodes: list[str], networks: list[str], disks: list[str],
                      subnets: list[ipaddress.IPv4Network]) -> None:
        """Cross-checks with the rest of the topology; raises ValueError starting with the field path."""
        for name in nodes:
            if name not in self.hosts:
                raise ValueError(f"ssh.hosts: node {name!r} has no host in the inventory")
        for name, h in self.hosts.items():
            where = f"ssh.hosts.{name}"
            if name not in nodes:
                raise ValueError(f"{where}: {name!r} is not a node of this topology (nodes are {', '.join(nodes)})")
            for net in h.interfaces:
                if net not in networks:
                    raise ValueError(f"{where}.interfaces: unknown network {net!r}")
            for d in h.disks:
                if d not in disks:
                    raise ValueError(f"{where}.disks: unknown disk {d!r}")
        if self.alerts_log is not None and not self.alerts_log.startswith("/"):
            raise ValueError(f"ssh.alerts_log: {self.alerts_log!r} must be an absolute path on the nodes")
        if self.lab is not None and self.oob.sysrq is not None:
            raise ValueError("ssh.oob.sysrq: not with lab: embedded (the lab's nodes share this machine's kernel: "
                             "sysrq would cut the power of the harness host itself)")
        if self.lab is None:
            if self.lab_subnet is not None:
                raise ValueError("ssh.lab_subnet: only for lab: embedded")
            return
        if self.lab_subnet is None:
            raise ValueError("ssh.lab_subnet: required with lab: embedded (the management network)")
        if self.alerts_log is not None:
            raise ValueError("ssh.alerts_log: not with lab: embedded (the lab's agent writes on the harness's side)")
        if not self.lab_subnet.is_private or self.lab_subnet.prefixlen > 28:
            raise ValueError("ssh.lab_subnet: must be a private IPv4 subnet of /28 or larger")
        if MGMT in networks:
            raise ValueError(f"networks: {MGMT!r} is the lab's management network; rename yours")
        for s in subnets:
            if s.overlaps(self.lab_subnet):
                raise ValueError(f"ssh.lab_subnet: overlaps network {s}")
        for name, h in self.hosts.items():
            try:
                addr = ipaddress.IPv4Address(h.host)
            except ValueError:
                raise ValueError(f"ssh.hosts.{name}.host: a lab host is an address in {self.lab_subnet}") from None
            if addr not in self.lab_subnet or addr == self.harness_address:
                raise ValueError(f"ssh.hosts.{name}.host: {addr} must be in {self.lab_subnet}, not .1 (the harness)")
            if h.user != "root" or h.key_file is not None or h.interfaces or h.disks:
                raise ValueError(f"ssh.hosts.{name}: a lab host takes only host and port (the lab makes its keys)")

    @property
    def harness_address(self) -> ipaddress.IPv4Address | None:
        """The harness's own address on the lab's management network."""
        return None if self.lab_subnet is None else self.lab_subnet.network_address + 1
