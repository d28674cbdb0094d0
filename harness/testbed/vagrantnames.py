"""Every name, path and address of one VM lab, and how a command enters the lab's namespaces.

All of them derive from the topology and the instance (`Layout.prefix`) and nothing else, so that
`down` and `leftovers` find what an `up` killed at any point left behind. The lab's daemons
(`vagrantprocs`) and its namespace plumbing (`vagrantlab.Lab`) build on these names.
"""

from __future__ import annotations

import ipaddress
import subprocess
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.layout import Layout

MNT_ROOT = Path("/run/fallover-mnt")
"""Mount-namespace files (a private bind mount, as `ip netns` keeps /run/netns)."""

ISCSI_PORT = 3260
ISCSI_NOOP_INTERVAL_S = 5
"""The guests' initiators ping the target (NOP-Out) this often while the session is idle (open-iscsi's default)."""
ISCSI_NOOP_TIMEOUT_S = 5
"""An unanswered NOP-Out fails the connection after this long (open-iscsi's default)."""
ISCSI_REPLACEMENT_S = 10
"""`replacement_timeout`: how long I/O waits for a failed session to come back before it fails with EIO
(the default 120 s would leave the cluster's monitors hanging two minutes on a pulled path)."""
EVENTS_PORT = 7700
FENCE_MCAST = "225.0.0.12"


def bridge(network: str) -> str:
    """The Linux bridge of a topology network inside the lab namespace (≤ 15 characters)."""
    return f"br-{network}"[:15]


class LabNames:
    """Names, paths and the command wrapper of one VM lab (the base of `vagrantlab.Lab`)."""

    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.topology = layout.topology
        v = self.topology.vagrant
        from harness.topology import Vagrant

        self.settings = v if v is not None else Vagrant()

    # -- names ------------------------------------------------------------------------------------

    @property
    def prefix(self) -> str:
        return self.layout.prefix

    @property
    def state(self) -> Path:
        return self.layout.state

    @property
    def netns(self) -> str:
        return self.layout.net_ns

    @property
    def client_ns(self) -> str:
        return self.layout.client_ns

    @property
    def mnt_file(self) -> Path:
        return MNT_ROOT / self.prefix

    @property
    def in_host_netns(self) -> bool:
        """A user's real host bridges (`vagrant.bridges`): the lab then shares the host's network namespace."""
        return bool(self.settings.bridges)

    def bridge(self, network: str) -> str:
        return self.settings.bridges.get(network) or bridge(network)

    @property
    def mgmt_network(self) -> str:
        return f"{self.prefix}-mgmt"

    @property
    def mgmt_address(self) -> ipaddress.IPv4Address:
        """The harness's address on the management network (libvirt's, in the lab): SSH, iSCSI, events."""
        return self.settings.mgmt_subnet.network_address + 1

    def node_mgmt_address(self, node: str) -> ipaddress.IPv4Address:
        return self.settings.mgmt_subnet.network_address + 10 + self.topology.node_index(node)

    def fence_address(self) -> ipaddress.IPv4Address:
        """fence_virtd's TCP call-back address on the service bridge (a cut-off node cannot fence)."""
        return self.topology.service_network.subnet.broadcast_address - 1

    def domain(self, node: str) -> str:
        return f"{self.prefix}-{node}"

    def mac(self, node: str, nic: int) -> str:
        """Stable MACs: the management DHCP lease and the guest's interface names follow them."""
        h = sum(self.prefix.encode()) % 256
        return f"52:54:{h:02x}:{len(self.prefix) % 256:02x}:{self.topology.node_index(node):02x}:{nic:02x}"

    def iqn(self, disk: str) -> str:
        return f"iqn.2026-11.net.fallover:{self.prefix}.{disk}"

    def tid(self, disk: str) -> int:
        return [d.name for d in self.topology.disks].index(disk) + 1

    def disk_image(self, disk: str) -> Path:
        return self.state / "disks" / f"{disk}.img"

    def pidfile(self, daemon: str) -> Path:
        return self.state / f"{daemon}.pid"

    @property
    def libvirt_root(self) -> Path:
        return self.state / "libvirt"

    @property
    def pool_dir(self) -> Path:
        """libvirt's `default` pool of every lab (in the box cache): box volumes stay, domain volumes
        are named after their domain (`<prefix>-<node>…`) and go with the lab."""
        from harness.testbed.vagrantbox import BOX_ROOT

        return BOX_ROOT / "pool"

    def own_volumes(self) -> list[Path]:
        return sorted(p for p in self.pool_dir.glob(f"{self.prefix}-*") if p.is_file()) \
            if self.pool_dir.is_dir() else []

    @property
    def vagrant_dot(self) -> Path:
        return self.state / "vagrant"

    @property
    def fence_key(self) -> Path:
        return self.state / "fence_xvm.key"

    @property
    def notifications(self) -> Path:
        return self.layout.notification_log

    @property
    def fences(self) -> Path:
        return self.state / "fence-events.jsonl"

    # -- running commands in the lab --------------------------------------------------------------

    def argv(self, argv: list[str]) -> list[str]:
        ns = [] if self.in_host_netns else [f"--net=/run/netns/{self.netns}"]
        return ["nsenter", f"--mount={self.mnt_file}", *ns, "--", *argv]

    def run(self, argv: list[str], *, timeout: float = 60, check: bool = True, input: str | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(self.argv(argv), check=False, capture_output=True, text=True, timeout=timeout,
                           input=input, env=env)
        if check and r.returncode != 0:
            raise TestbedError(f"{' '.join(argv[:3])} in the lab exited {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[-400:]}")
        return r

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(["virsh", "-q", "-c", "qemu:///system", *args], check=check, timeout=timeout)


def is_mounted(path: Path) -> bool:
    """Whether ``path`` is a mount point here: a lab's mount-namespace file is live only while bound."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in text.splitlines())
