"""The VM testbed's lab: one network namespace and one mount namespace holding everything of it.

Inside the lab (`Lab.argv` wraps a command into both namespaces) run libvirtd and virtlogd (started
and stopped by PID: no systemd), libvirt's dnsmasq, qemu, tgtd (the shared iSCSI disk), fence_virtd
(stonith), the notification collector and `vagrant` itself. The mount namespace gives the lab its own
`/etc/libvirt`, `/var/lib/libvirt`, `/var/log/libvirt`, `/var/cache/libvirt` (directories under the
state directory) and a private `/run`: nothing of libvirt's host configuration is used or changed
(its packaged `default` NAT network is never even seen), and `down` removes domains and volumes by
removing those directories. The network namespace holds the bridges: no lab address or route ever
appears in the host's namespace, and the lab has no way out (no `<forward>`, no uplink).

Every name derives from the topology and the instance (`Layout.prefix`), so `down` and `leftovers`
work after an `up` that was killed at any point.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.layout import Layout

MNT_ROOT = Path("/run/fallover-mnt")
"""Mount-namespace files (a private bind mount, as `ip netns` keeps /run/netns)."""

LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
                "cache": "/var/cache/libvirt"}
DAEMONS = ("virtlogd", "libvirtd", "tgtd", "fence_virtd", "events")
"""Started in this order, stopped in the reverse one, each by the PID in its pid file."""

QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
"""

ISCSI_PORT = 3260
EVENTS_PORT = 7700
FENCE_MCAST = "225.0.0.12"


def bridge(network: str) -> str:
    """The Linux bridge of a topology network inside the lab namespace (≤ 15 characters)."""
    return f"br-{network}"[:15]


MGMT_BRIDGE = "br-mgmt"
CLIENT_VETH = "client0"


class Lab:
    """Names, paths and the namespace plumbing of one VM lab."""

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
        r = subprocess.run(self.argv(argv), capture_output=True, text=True, timeout=timeout, input=input,
                           env=env)
        if check and r.returncode != 0:
            raise TestbedError(f"{' '.join(argv[:3])} in the lab exited {r.returncode}: "
                               f"{(r.stderr or r.stdout).strip()[-400:]}")
        return r

    def virsh(self, *args: str, check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return self.run(["virsh", "-q", "-c", "qemu:///system", *args], check=check, timeout=timeout)

    # -- namespaces -------------------------------------------------------------------------------

    def create_namespaces(self) -> None:
        """The network namespace, then a mount namespace entered from it (its /sys is the lab's)."""
        if not self.in_host_netns and not Path(f"/run/netns/{self.netns}").exists():
            subprocess.run(["ip", "netns", "add", self.netns], check=True, capture_output=True, timeout=30)
            _ip(self.netns, "link", "set", "lo", "up")
        for sub in LIBVIRT_DIRS:
            (self.libvirt_root / sub).mkdir(parents=True, exist_ok=True)
        etc = self.libvirt_root / "etc"
        if not (etc / "qemu.conf").exists():
            shutil.copytree("/etc/libvirt", etc, dirs_exist_ok=True, symlinks=True)
            nets = etc / "qemu" / "networks"
            shutil.rmtree(nets, ignore_errors=True)  # never libvirt's packaged `default` (NAT) network
            (nets / "autostart").mkdir(parents=True)
            for x in (etc / "qemu").glob("*.xml"):
                x.unlink()
            with open(etc / "qemu.conf", "a") as f:
                f.write(QEMU_CONF)
        if _is_mounted(self.mnt_file):
            return
        MNT_ROOT.mkdir(parents=True, exist_ok=True)
        if not _is_mounted(MNT_ROOT):
            subprocess.run(["mount", "--bind", str(MNT_ROOT), str(MNT_ROOT)], check=True, timeout=30)
        subprocess.run(["mount", "--make-private", str(MNT_ROOT)], check=True, timeout=30)
        self.mnt_file.touch()
        binds = "\n".join(f"mount --bind {self.libvirt_root / k} {v}" for k, v in LIBVIRT_DIRS.items())
        # the storage pool is the box cache's: the box's volume is uploaded once, not at every `up`
        (self.libvirt_root / "lib" / "images").mkdir(exist_ok=True)
        self.pool_dir.mkdir(parents=True, exist_ok=True)
        binds += f"\nmount --bind {self.pool_dir} /var/lib/libvirt/images"
        script = ("set -e\n"
                  + ("" if self.in_host_netns else "umount -l /sys\nmount -t sysfs -o nosuid,nodev,noexec sysfs /sys\n")
                  + "mount -t tmpfs -o mode=755 tmpfs /run\nmkdir -p /run/libvirt /run/tgtd /run/lock\n"
                  + binds + "\n")
        inner = ["sh", "-c", script] if self.in_host_netns else \
            ["nsenter", f"--net=/run/netns/{self.netns}", "--", "sh", "-c", script]
        r = subprocess.run(["unshare", f"--mount={self.mnt_file}", "--propagation", "private", *inner],
                           capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            raise TestbedError(f"lab mount namespace: {r.stderr.strip()[-300:]}")

    def create_bridges(self) -> None:
        """The service/standby bridges (the management bridge is libvirt's), the client, fence_virtd's address."""
        if self.in_host_netns:
            return  # the user's own bridges; no client namespace on a real host (README)
        t = self.topology
        for net in t.networks:
            br = self.bridge(net.name)
            if not Path(f"/run/netns/{self.netns}").exists():
                raise TestbedError(f"lab namespace {self.netns} vanished")
            if _ip(self.netns, "link", "show", br, check=False).returncode != 0:
                _ip(self.netns, "link", "add", br, "type", "bridge", "stp_state", "0", "forward_delay", "0")
            _ip(self.netns, "link", "set", br, "up")
        svc = t.service_network
        _ip(self.netns, "addr", "replace", f"{self.fence_address()}/{svc.subnet.prefixlen}", "dev", self.bridge(svc.name))
        if not Path(f"/run/netns/{self.client_ns}").exists():
            subprocess.run(["ip", "netns", "add", self.client_ns], check=True, capture_output=True, timeout=30)
            _ip(self.client_ns, "link", "set", "lo", "up")
        cnet = t.client.network
        if _ip(self.netns, "link", "show", CLIENT_VETH, check=False).returncode != 0:
            _ip(self.netns, "link", "add", CLIENT_VETH, "type", "veth", "peer", "name", cnet,
                "netns", self.client_ns)
        _ip(self.netns, "link", "set", CLIENT_VETH, "master", self.bridge(cnet), "up")
        prefix = t.network(cnet).subnet.prefixlen
        _ip(self.client_ns, "addr", "replace", f"{t.address(t.client.name, cnet)}/{prefix}", "dev", cnet)
        _ip(self.client_ns, "link", "set", cnet, "up")

    def mgmt_network_xml(self) -> str:
        """Isolated: DHCP with a fixed lease per node (by MAC), no <forward>, so no way out of the lab."""
        s = self.settings.mgmt_subnet
        hosts = "".join(f"<host mac='{self.mac(n, 0)}' name='{n}' ip='{self.node_mgmt_address(n)}'/>"
                        for n in self.topology.node_names)
        return (f"<network><name>{self.mgmt_network}</name>"
                f"<bridge name='{MGMT_BRIDGE}' stp='off' delay='0'/>"
                f"<ip address='{self.mgmt_address}' netmask='{s.netmask}'><dhcp>"
                f"<range start='{s.network_address + 100}' end='{s.network_address + 200}'/>{hosts}"
                "</dhcp></ip></network>")

    def define_mgmt_network(self) -> None:
        """(Re)define and start it: `vagrant destroy` undefines it, so this runs before every `vagrant up`."""
        r = self.virsh("net-info", self.mgmt_network, check=False)
        if r.returncode != 0:
            xml = self.state / "mgmt-network.xml"
            xml.write_text(self.mgmt_network_xml())
            self.virsh("net-define", str(xml))
        if "Active:         yes" not in self.virsh("net-info", self.mgmt_network).stdout:
            self.virsh("net-start", self.mgmt_network)

    # -- daemons (by PID) -------------------------------------------------------------------------

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
        log = open(self.state / f"{daemon}.log", "ab")
        if foreground:  # no daemon mode of its own: we record its PID
            proc = subprocess.Popen(self.argv(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
            self.pidfile(daemon).write_text(str(proc.pid))  # nsenter execs: the PID is the daemon's
        else:
            subprocess.run(self.argv(argv), stdout=log, stderr=log, stdin=subprocess.DEVNULL, timeout=timeout,
                           check=True)
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
        _terminate([pid], timeout)
        self.pidfile(daemon).unlink(missing_ok=True)
        return True

    def processes(self) -> dict[int, str]:
        """Every process of the lab (PID → command line): those in its mount namespace (or, on a host
        network, its qemu), all started by the lab's daemons or by fallover."""
        try:
            ino = os.stat(self.mnt_file).st_ino if _is_mounted(self.mnt_file) else None
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

    # -- teardown ---------------------------------------------------------------------------------

    def remove_namespaces(self) -> list[str]:
        gone = []
        left = self.processes()
        if left:
            _terminate(list(left), 10)
            gone.append(f"{len(left)} lab processes")
        if _is_mounted(self.mnt_file):
            subprocess.run(["umount", "-l", str(self.mnt_file)], capture_output=True, timeout=30)
            gone.append(f"mount namespace {self.mnt_file}")
        self.mnt_file.unlink(missing_ok=True)
        for ns in (self.client_ns, self.netns):
            if not self.in_host_netns and Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
                gone.append(f"namespace {ns}")
        return gone

    def namespace_leftovers(self) -> list[str]:
        out = [f"namespace {ns}" for ns in (self.netns, self.client_ns) if Path(f"/run/netns/{ns}").exists()]
        if self.mnt_file.exists():
            out.append(f"mount namespace {self.mnt_file}")
        out += [f"process {pid} ({cmd[:80]})" for pid, cmd in sorted(self.processes().items())]
        return out


def _ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", "-n", ns, *args], capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise TestbedError(f"ip -n {ns} {' '.join(args)}: {r.stderr.strip()}")
    return r


def _is_mounted(path: Path) -> bool:
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return False
    return any(line.split()[4] == str(path) for line in text.splitlines())


def _lab_path_exists(lab: Lab, path: Path) -> bool:
    return lab.run(["test", "-e", str(path)], check=False, timeout=10).returncode == 0


def _terminate(pids: list[int], timeout: float) -> None:
    """SIGTERM, then SIGKILL what is still there after ``timeout``: only these PIDs, never by name."""
    for p in pids:
        try:
            os.kill(p, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = [p for p in pids if Path(f"/proc/{p}").exists() and not _zombie(p)]
        if not alive:
            return
        time.sleep(0.1)
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
