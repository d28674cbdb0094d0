"""The VM provider (`provider: vagrant`): libvirt VMs booted by vagrant, inside a lab fallover builds.

The lab (`vagrantlab.Lab`): one network namespace and one mount namespace holding libvirtd, virtlogd,
tgtd (the shared iSCSI disk), fence_virtd (stonith), the notification collector, vagrant and the VMs;
the service and standby networks are Linux bridges there, every VM has a bridged NIC on each, and the
client namespace sits on the service bridge as on the embedded testbed. The guests are provisioned by
vagrant/Vagrantfile (+ provision.sh) with the configuration `vagrantconf` generates.

Commands into the guests go over SSH exactly as on a real inventory: this class *is* an `SshTestbed`
over an inventory it makes itself (each guest's management address, the box's key, interfaces eth1…,
the disk's by-path link), with its TCP connections opened inside the lab namespace. So spawn, rules,
netem, disk state, logs and mounts are the SSH provider's. What a VM adds is done to the VM:
power = `virsh destroy`/`start`, hang = `virsh suspend`/`resume`, a cable = `virsh domif-setlink`
(the guest sees its carrier go), a network = its bridge down in the lab.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import FalloverError, TestbedError
from harness.inventory import SshHost, SshInventory
from harness.testbed import alertagent, vagrantbox, vagrantconf
from harness.testbed.base import CAPABILITIES, Capabilities, LogFile, Pace, Progress, quiet
from harness.testbed.layout import AGENTS, ASSETS, Layout, default_instance
from harness.testbed.restore import restore
from harness.testbed.ssh import SshTestbed
from harness.testbed.vagrantdisk import VmDisk
from harness.testbed.vagrantlab import Lab
from harness.testbed.vagrantnames import EVENTS_PORT, ISCSI_PORT
from harness.testbed.vagrantrun import run_vagrant
from harness.testbed.vagrantvm import VmControl
from harness.topology import Topology
from harness.transport import NetnsTransport
from harness.transport.base import Transport
from harness.transport.ssh import SshTransport

VAGRANT_DIR = Path(__file__).resolve().parents[2] / "vagrant"
REQUIRED = ("vagrant", "virsh", "libvirtd", "virtlogd", "qemu-system-x86_64", "tgtd", "tgtadm", "fence_virtd",
            "nsenter", "unshare", "mkfs.ext4")
TCG_PACE = Pace(poll_s=2.0, query_timeout_s=45.0, admin_timeout_s=120.0, probe_hz=10.0, probe_timeout_s=2.0,
                verify_concurrency=4, verify_timeout_s=10.0, load_users=2)
"""How the harness asks emulated guests (measured 2026-11-30 on the 2-core host at a load of 12-17, 3 TCG guests
of a settled cluster: one crm_mon cost the guest 1.5 s of its CPU and took 8.6 s over SSH, as did `true`; a
`crm_resource --cleanup` ran out at the embedded testbed's 30 s). Polled every 0.25 s, the guest the harness
asked did little but answer it; a look every 2 s stays well inside the 10 s detection SLA.
The client's probe: at the embedded 100 Hz with 0.5 s to answer, the sample app on a TCG guest (1 vCPU)
answered 17 % of a healthy cluster's probes late (2 load users, quiet host), its queue of unanswered requests
grew, and the app's own /health monitor then waited over its 15 s: the cluster failed a healthy app and moved
the group, twice in one case (2026-11-30). 10 Hz with 2 s still times an outage to a tenth of a second. The
read-back: 16 readers at once with 2 s each left one key unanswered after its retries. The load: 2 users (at
the embedded 10 the app fell behind; in the suite at 10, the guest's load average reached 13 and Pacemaker
throttled its controller to one operation at a time: a graceful stop's handover took 88 s)."""
VAGRANT_UP_S = 1800.0
"""`vagrant up` of the VMs, provisioning included: measured 435-472 s for 3 TCG guests at a host load of 15-30
(72 s for 2 on a quiet host); about four times the worst seen before it counts as stuck."""


def fenced_since(events: Path) -> Callable[[], str | None]:
    """Whether a guest was fenced after now (fence-events.jsonl grew): a guest fenced while `vagrant up`
    provisions it never finishes, and vagrant would wait for it until its deadline."""
    start = events.stat().st_size if events.exists() else 0

    def look() -> str | None:
        try:
            with open(events, "rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace").splitlines()
        except OSError:
            return None
        nodes: set[str] = set()
        for ln in new:
            try:
                nodes.add(str(json.loads(ln).get("node")))
            except (ValueError, AttributeError):  # a line being written, or not an event
                continue
        return f"the cluster fenced {', '.join(sorted(nodes))} while the guests were starting" if nodes else None

    return look


class VagrantTestbed(VmControl, VmDisk, SshTestbed):
    """VMs in a lab; see the module docstring."""

    def __init__(self, topology: Topology, instance: str | None = None, accel: str | None = None) -> None:
        self.layout = Layout(topology, instance=default_instance() if instance is None else instance)
        self.labx = Lab(self.layout)
        gl = vagrantconf.guest_layout(self.labx)
        ifaces = vagrantconf.interfaces(self.labx)
        key = vagrantbox.ssh_key()
        hosts = {n: SshHost(host=str(self.labx.node_mgmt_address(n)), user="root", key_file=key,
                            interfaces=ifaces, disks={d.name: str(gl.disk_link(d.name)) for d in topology.disks})
                 for n in topology.node_names}
        inventory = SshInventory(hosts=hosts, strict_host_key_checking=False, connect_timeout_s=30)
        super().__init__(topology.model_copy(update={"ssh": inventory}), instance=self.layout.instance)
        self.state = self.layout.state
        self.accel = accel
        self.pace = TCG_PACE if vagrantconf.accel(self.labx, accel) == "tcg" else Pace()
        self._dom: dict[str, tuple[float, str]] = {}
        sock = self._socket_factory()
        self._nodes = {n: SshTransport(n, hosts[n], known_hosts=None, strict=False, connect_timeout=30,
                                       sock_factory=sock) for n in topology.node_names}
        self._client = NetnsTransport(topology.client.name, f"/run/netns/{self.labx.client_ns}")

    def __repr__(self) -> str:
        return f"<VagrantTestbed {self.labx.prefix} state={self.state}>"

    def _socket_factory(self):  # type: ignore[no-untyped-def]
        """TCP from inside the lab namespace, to the management network only (never anywhere else)."""
        import ipaddress
        import socket

        from harness.testbed.nfqueue import in_netns

        subnet, lab = self.labx.settings.mgmt_subnet, self.labx

        def connect(host: str, port: int, timeout: float) -> socket.socket:
            if ipaddress.IPv4Address(host) not in subnet:
                raise OSError(f"{host} is not on the lab's management network")
            if lab.in_host_netns:
                return socket.create_connection((host, port), timeout=timeout)
            return in_netns(lab.netns, lambda: socket.create_connection((host, port), timeout=timeout))

        return connect

    @property
    def is_built(self) -> bool:
        return (self.state / "up.json").exists()

    def client(self) -> Transport:
        return self._client

    # -- lifecycle ------------------------------------------------------------------------------

    def check_host(self) -> None:
        if os.geteuid() != 0:
            raise TestbedError("the VM testbed needs root (namespaces, libvirtd, tgtd)")
        missing = [t for t in REQUIRED if shutil.which(t) is None]
        if missing:
            raise TestbedError(f"missing tools: {' '.join(missing)}; run `make vm-setup` (installs the Debian packages)")

    def up(self, progress: Progress = quiet, placement: bool = True) -> None:
        self.check_host()
        t0 = time.monotonic()
        box = None if self.labx.settings.box else vagrantbox.build(progress)
        if not self._lab_alive():
            if self.leftovers():
                progress("sweeping what an earlier run left behind")
                self.down(quiet)
            self._build_lab(progress)
        lab_s = time.monotonic() - t0
        defined = self._defined()
        provision_s = 0.0
        if set(defined) != set(self.topology.node_names):
            t1 = time.monotonic()
            self._vagrant_up(box, progress)
            provision_s = time.monotonic() - t1
        for n in self.topology.node_names:
            st = self._domstate(n, fresh=True)
            if st == "paused":
                progress(f"resuming {n} (it was suspended)")
                self.thaw(n)
            elif st != "running":
                progress(f"starting {n} (it was powered off)")
                self.power_on(n)
        booted_s = time.monotonic() - t0
        self.check_hosts(progress)
        if self.journal_path.exists():
            from harness.faults import Nemesis

            for u in Nemesis(self).replay():
                progress(f"healed {u}")
        accel = vagrantconf.accel(self.labx, self.accel)
        settle_s = vagrantconf.settle_timeout(accel, provision_s)
        progress(f"waiting for the cluster to settle (nodes joining, group starting; at most {settle_s:.0f} s)")
        restore(self, timeout=settle_s, progress=progress, placement=placement)  # whole, with every node on
        info = {"topology": str(self.topology.source), "instance": self.layout.instance, "prefix": self.labx.prefix,
                "accel": accel, "lab_s": round(lab_s, 1), "provision_s": round(provision_s, 1),
                "booted_s": round(booted_s, 1), "settled_s": round(time.monotonic() - t0, 1)}
        old = self._up_info()
        (self.state / "up.json").write_text(json.dumps({**info, "first": old.get("first", info)}))

    def _up_info(self) -> dict[str, Any]:
        try:
            data: dict[str, Any] = json.loads((self.state / "up.json").read_text())
            return data
        except (OSError, ValueError):
            return {}

    def _lab_alive(self) -> bool:
        lab = self.labx
        return all(lab.pid(d) is not None for d in ("virtlogd", "libvirtd", "tgtd", "fence_virtd", "events"))

    def _build_lab(self, progress: Progress) -> None:
        lab, t = self.labx, self.topology
        self.state.mkdir(parents=True, exist_ok=True)
        (self.state / "disks").mkdir(exist_ok=True)
        progress("lab: network and mount namespaces, bridges, client")
        lab.create_namespaces()
        lab.create_bridges()
        for d in t.disks:
            img = lab.disk_image(d.name)
            if not img.exists():
                progress(f"shared disk {d.name}: {d.size_mb} MB ext4 image")
                with open(img, "wb") as f:
                    f.truncate(d.size_mb << 20)
                subprocess.run(["mkfs.ext4", "-q", "-F", "-L", d.name, str(img)], check=True, capture_output=True,
                               timeout=120)
        lab.notifications.touch()
        lab.fences.touch()
        progress("lab: virtlogd and libvirtd")
        lab.start_daemon("virtlogd", ["virtlogd", "-d", "-p", str(lab.pidfile("virtlogd"))])
        # in the foreground under a reaper: the qemus it daemonizes are reaped the moment they exit, so a
        # destroy (a fence, a power-off) does not wait on this machine's slow PID 1 (harness/testbed/reaper.py)
        lab.start_daemon("libvirtd", [sys.executable, "-m", "harness.testbed.reaper", "libvirtd"],
                         ready=Path("/run/libvirt/libvirt-sock"), foreground=True)
        if lab.virsh("pool-info", "default", check=False).returncode != 0:
            lab.virsh("pool-define-as", "default", "dir", "--target", "/var/lib/libvirt/images")
            lab.virsh("pool-build", "default")
            lab.virsh("pool-start", "default")
        lab.define_mgmt_network()
        progress("lab: tgtd (iSCSI target) and the shared LUN")
        lab.start_daemon("tgtd", ["tgtd", "-f", "--iscsi", f"portal={lab.mgmt_address}:{ISCSI_PORT}"],
                         foreground=True, ready=lambda: lab.listening(ISCSI_PORT))
        for argv in vagrantconf.tgt_commands(lab):
            r = lab.run(argv, check=False)
            if r.returncode != 0 and "exist" not in (r.stderr + r.stdout):
                raise TestbedError(f"{' '.join(argv[:6])}: {(r.stderr or r.stdout).strip()}")
        progress("lab: fence_virtd (listening on the service bridge) and the notification collector")
        if not lab.fence_key.exists():
            lab.fence_key.write_bytes(os.urandom(512))
            lab.fence_key.chmod(0o600)
        conf = self.state / "fence_virtd.conf"
        conf.write_text(vagrantconf.fence_virtd_conf(lab, lab.fence_key))
        lab.start_daemon("fence_virtd", ["fence_virtd", "-F", "-f", str(conf)], foreground=True)
        lab.start_daemon("events", [sys.executable, "-m", "harness.testbed.vagrantevents",
                                    "--listen", f"{lab.mgmt_address}:{EVENTS_PORT}",
                                    "--notifications", str(lab.notifications), "--fences", str(lab.fences)],
                         foreground=True, ready=lambda: lab.listening(EVENTS_PORT))

    def _payload(self) -> Path:
        """Each node's provisioning files, one archive per node for vagrant's file provisioner: it copies a
        directory file by file, with two SSH commands per file (18 s of a TCG guest's provisioning, measured)."""
        lab = self.labx
        root = self.state / "payload"
        key = self.state / "authkey"
        if not key.exists():
            key.write_bytes(os.urandom(256))
            key.chmod(0o400)
        from harness.testbed import clusterconf

        emulated = vagrantconf.accel(lab, self.accel) == "tcg"
        cib = vagrantconf.guest_cib(lab, clusterconf.empty_cib(), emulated=emulated)
        coro = vagrantconf.guest_corosync(lab)
        forward = alertagent.forwarder(self.state / "build")  # compiled C; the Python one without a compiler
        for n in self.topology.node_names:
            d = root / n
            d.mkdir(parents=True, exist_ok=True)
            (d / "env").write_text(vagrantconf.env_file(vagrantconf.node_env(lab, n)))
            (d / "cib.xml").write_text(cib)
            (d / "corosync.conf").write_text(coro)
            shutil.copyfile(key, d / "authkey")
            shutil.copyfile(lab.fence_key, d / "fence_xvm.key")
            for src in (VAGRANT_DIR / "provision.sh", AGENTS / "fallover-app", AGENTS / "kvapp.py",
                        AGENTS / "netwatch", AGENTS / "netwatch.py", ASSETS / "fallover-alert"):
                shutil.copyfile(src, d / src.name)
            shutil.copyfile(forward, d / "fallover-alert-forward")
            with tarfile.open(root / f"{n}.tar", "w") as tar:
                for f in sorted(d.iterdir()):
                    tar.add(f, arcname=f.name)
        return root

    def _vagrant_env(self) -> dict[str, str]:
        return {**vagrantbox.vagrant_env(), "VAGRANT_CWD": str(VAGRANT_DIR),
                "VAGRANT_DOTFILE_PATH": str(self.labx.vagrant_dot),
                "FALLOVER_VAGRANT_SPEC": str(self.state / "spec.json")}

    def _vagrant_up(self, box: vagrantbox.Box | None, progress: Progress) -> None:
        lab = self.labx
        accel = vagrantconf.accel(lab, self.accel)
        emulator = None
        if accel == "tcg":
            emulator = self.state / "qemu-tcg"
            emulator.write_text(vagrantconf.qemu_wrapper(lab.settings.tb_cache_mb))
            emulator.chmod(0o755)
        spec = vagrantconf.spec(lab, box=box.name if box else str(lab.settings.box),
                                kernel=str(box.kernel) if box else None, initrd=str(box.initrd) if box else None,
                                ssh_key=str(vagrantbox.ssh_key()), payload=self._payload(), accelerator=accel,
                                emulator=str(emulator) if emulator else None)
        (self.state / "spec.json").write_text(vagrantconf.dump_spec(spec))
        lab.define_mgmt_network()  # `vagrant destroy` undefines it
        progress(f"vagrant up: {len(self.topology.nodes)} VMs under {accel.upper()} (boot, iSCSI, cluster join)")
        run_vagrant(lab.argv(["vagrant", "up", "--parallel"]), env=self._vagrant_env(),
                    log=self.state / "vagrant-up.log", progress=progress, timeout=VAGRANT_UP_S,
                    doomed=fenced_since(lab.fences))

    def down(self, progress: Progress = quiet) -> list[str]:
        lab, gone = self.labx, []
        self.close_mount_watches()
        for t in self._nodes.values():
            t.close()
        if lab.pid("libvirtd") is not None:
            for n in self._defined():
                lab.virsh("destroy", lab.domain(n), check=False)
                lab.virsh("undefine", lab.domain(n), "--remove-all-storage", check=False)
                gone.append(f"domain {lab.domain(n)}")
            lab.virsh("pool-refresh", "default", check=False)
            for vol in lab.own_volumes():  # the box's volume is the cache's: it stays
                lab.virsh("vol-delete", vol.name, "--pool", "default", check=False)
                gone.append(f"volume {vol.name}")
            lab.virsh("net-destroy", lab.mgmt_network, check=False)
            lab.virsh("net-undefine", lab.mgmt_network, check=False)
        if lab.pid("tgtd") is not None:
            for argv in vagrantconf.tgt_teardown(lab):
                lab.run(argv, check=False)
            gone.append("tgt targets")
        for d in ("events", "fence_virtd", "tgtd", "libvirtd", "virtlogd"):
            if lab.stop_daemon(d):
                gone.append(f"daemon {d}")
        gone += lab.remove_namespaces()
        for vol in lab.own_volumes():
            vol.unlink()
            gone.append(f"volume {vol.name}")
        if self.state.exists():
            shutil.rmtree(self.state)
            gone.append(f"state {self.state}")
        self._dom.clear()
        return gone

    def leftovers(self) -> list[str]:
        lab = self.labx
        left = lab.namespace_leftovers()
        left += [f"volume {p}" for p in lab.own_volumes()]
        left += [f"domain {p.stem}" for p in sorted((lab.libvirt_root / "etc" / "qemu").glob("*.xml"))]
        if self.state.exists():
            left.append(f"state directory {self.state}")
        return left

    def capabilities(self) -> Capabilities:
        caps: dict[str, str | None] = {k: None for k in CAPABILITIES}
        caps["disk_modes"] = ("the LUN is pulled whole (its iSCSI path dropped, or its SCSI device offline): no "
                              "read-only, write-only or hanging I/O")
        caps["fence_device"] = "fence_virtd serves every fence_xvm device at once: one cannot be broken alone yet"
        if not self.topology.disks:
            caps["disk"] = "the topology declares no shared disk"
        return caps

    # -- evidence -------------------------------------------------------------------------------

    def mountpoint(self, group: str) -> str:
        return str(vagrantconf.guest_layout(self.labx).mountpoint(group))

    def log_files(self) -> list[LogFile]:
        out = []
        for n in self.topology.node_names:
            out += [LogFile(n, "/var/log/pacemaker/pacemaker.log"), LogFile(n, "/var/log/cluster/corosync.log"),
                    *(LogFile(n, f"/var/log/cluster/{g.name}-app.log", required=False) for g in self.topology.groups)]
        return out

    def event_logs(self) -> dict[str, Path]:
        return {"notifications": self.labx.notifications, "fences": self.labx.fences}


def lab_of(topology: Topology) -> Lab:
    """The lab of a topology (names only; nothing is touched)."""
    return Lab(Layout(topology))


__all__ = ["VagrantTestbed", "lab_of", "FalloverError"]
