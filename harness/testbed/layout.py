"""Every name and path of one embedded testbed, derived from the topology and an instance id.

Deriving (instead of recording) names is what lets `fallover down` clean up after an `up`
that was SIGKILLed before it could write anything down.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from harness.topology import Topology

STATE_ROOT = Path(os.environ.get("FALLOVER_STATE_ROOT", "/var/lib/fallover"))
FREEZER_ROOT = Path("/sys/fs/cgroup/freezer/fallover")
ASSETS = Path(__file__).resolve().parent / "assets"
AGENTS = Path(__file__).resolve().parent.parent / "agents"
NODE_DISKS = Path("/run/fallover-disks")
"""Where a node sees its own disk links (its private /run; node-init.sh binds them there)."""


def default_instance() -> str:
    """pytest-xdist workers (gw0, gw1, …) each get their own testbed; FALLOVER_INSTANCE picks one by hand."""
    return os.environ.get("FALLOVER_INSTANCE") or os.environ.get("PYTEST_XDIST_WORKER", "")


@dataclass(frozen=True)
class Layout:
    topology: Topology
    instance: str = field(default_factory=default_instance)
    state_root: Path = STATE_ROOT

    @property
    def prefix(self) -> str:
        return f"fo-{self.topology.name}" + (f"-{self.instance}" if self.instance else "")

    @property
    def state(self) -> Path:
        return self.state_root / self.prefix

    # -- namespaces and cgroups -------------------------------------------------------------

    @property
    def net_ns(self) -> str:
        """Named netns holding the bridges: the root namespace never gets a testbed address."""
        return f"{self.prefix}-net"

    @property
    def client_ns(self) -> str:
        return f"{self.prefix}-{self.topology.client.name}"

    @property
    def cgroup_root(self) -> Path:
        return FREEZER_ROOT / self.prefix

    def node_cgroup(self, node: str) -> Path:
        return self.cgroup_root / node

    def daemon_cgroup(self, name: str) -> Path:
        """Helper daemons (fence broker, FUSE disk) live in cgroups too, so a sweep finds them."""
        return self.cgroup_root / f"_{name}"

    # -- per-node files ---------------------------------------------------------------------

    def node_dir(self, node: str) -> Path:
        return self.state / "nodes" / node

    def node_pidfile(self, node: str) -> Path:
        return self.node_dir(node) / "init.pid"

    def node_log(self, node: str, name: str) -> Path:
        sub = "cluster" if name.startswith("corosync") else "pacemaker"
        return self.node_dir(node) / "var" / "log" / sub / name

    def veth(self, node: str, network: str) -> str:
        """Bridge-side end of a node's adapter, inside the net namespace (≤ 15 chars)."""
        t = self.topology
        return f"v{t.node_index(node)}-{network}"[:15]

    # -- disks, mounts, sockets, logs --------------------------------------------------------

    def disk_image(self, disk: str) -> Path:
        return self.state / "disks" / f"{disk}.img"

    def disk_fuse_dir(self, disk: str) -> Path:
        return self.state / "disks" / f"{disk}.fuse"

    def disk_control(self, disk: str) -> Path:
        """Unix socket of the disk's FUSE layer: adds and cuts the nodes' views (diskviews.py)."""
        return self.state / "disks" / f"{disk}.ctl"

    def disk_link(self, disk: str) -> Path:
        """The device the Filesystem resource mounts, as a path *inside a node*: each node sees its own
        link there (node-init.sh binds the node's ``disks`` directory), pointing at its own loop device."""
        return NODE_DISKS / f"{disk}.dev"

    def node_disk_link(self, node: str, disk: str) -> Path:
        """The host's path of that link for `node`, re-pointed at each power-on (nodes.start)."""
        return self.node_dir(node) / "disks" / f"{disk}.dev"

    def mountpoint(self, group: str) -> Path:
        g = self.topology.group(group)
        return Path(g.mount) if g.mount else self.state / "mnt" / group

    @property
    def fence_socket(self) -> Path:
        return self.fence_socket_for(self.topology.cluster.fencing_topology[0])

    def fence_socket_for(self, device: str) -> Path:
        """The broker's socket for one fence device: the broker knows the device by the socket it was asked on."""
        return self.state / ("fence.sock" if device == "fence" else f"fence.{device}.sock")

    def fence_fault(self, device: str) -> Path:
        """What the fence faults switch: holds `fail` or `hang` while the device is broken (absent: it works)."""
        return self.state / "faults" / f"fence.{device}"

    @property
    def notification_log(self) -> Path:
        return self.state / self.topology.notification.log

    @property
    def journal(self) -> Path:
        return self.state / "faults.journal"

    @property
    def agents_dir(self) -> Path:
        return self.state / "agents"

    def pidfile(self, daemon: str) -> Path:
        return self.state / f"{daemon}.pid"
