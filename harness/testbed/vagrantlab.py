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
work after an `up` that was killed at any point. This module builds and removes the namespaces, the
bridges and the management network; the names live in `vagrantnames`, the daemons in `vagrantprocs`.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from harness.errors import TestbedError
from harness.testbed.vagrantnames import MNT_ROOT, is_mounted
from harness.testbed.vagrantprocs import LabProcesses, terminate

LIBVIRT_DIRS = {"etc": "/etc/libvirt", "lib": "/var/lib/libvirt", "log": "/var/log/libvirt",
                "cache": "/var/cache/libvirt"}

QEMU_CONF = """
user = "root"
group = "root"
dynamic_ownership = 0
security_driver = "none"
namespaces = [ ]
cgroup_controllers = [ ]
"""

MGMT_BRIDGE = "br-mgmt"
CLIENT_VETH = "client0"


class Lab(LabProcesses):
    """Names, paths and the namespace plumbing of one VM lab (names in `vagrantnames`, daemons in
    `vagrantprocs`)."""

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
        if is_mounted(self.mnt_file):
            return
        MNT_ROOT.mkdir(parents=True, exist_ok=True)
        if not is_mounted(MNT_ROOT):
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
                           check=False, capture_output=True, text=True, timeout=30)
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

    # -- teardown ---------------------------------------------------------------------------------

    def remove_namespaces(self) -> list[str]:
        gone = []
        left = self.processes()
        if left:
            terminate(list(left), 10)
            gone.append(f"{len(left)} lab processes")
        if is_mounted(self.mnt_file):
            subprocess.run(["umount", "-l", str(self.mnt_file)], check=False, capture_output=True, timeout=30)
            gone.append(f"mount namespace {self.mnt_file}")
        self.mnt_file.unlink(missing_ok=True)
        for ns in (self.client_ns, self.netns):
            if not self.in_host_netns and Path(f"/run/netns/{ns}").exists():
                subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True, timeout=30)
                gone.append(f"namespace {ns}")
        return gone

    def namespace_leftovers(self) -> list[str]:
        out = [f"namespace {ns}" for ns in (self.netns, self.client_ns) if Path(f"/run/netns/{ns}").exists()]
        if self.mnt_file.exists():
            out.append(f"mount namespace {self.mnt_file}")
        out += [f"process {pid} ({cmd[:80]})" for pid, cmd in sorted(self.processes().items())]
        return out


def _ip(ns: str, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run(["ip", "-n", ns, *args], check=False, capture_output=True, text=True, timeout=30)
    if check and r.returncode != 0:
        raise TestbedError(f"ip -n {ns} {' '.join(args)}: {r.stderr.strip()}")
    return r
