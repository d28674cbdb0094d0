"""What the VM testbed writes: the Vagrantfile's spec, the guests' cluster files, fence_virtd's and tgt's
configuration. Pure text from the topology (unit-tested); `vagrant.py` and `vagrantlab.py` use it.

The guests run the same generated configuration as the embedded testbed (`clusterconf`): corosync with
one knet link per heartbeat network and the seed CIB (group = IPaddr2 + Filesystem monitored at
OCF_CHECK_LEVEL=20 + the application through `ocf:fallover:fallover-app`), with these changes for VMs:
stonith is one `fence_xvm` device per node (fence_virtd in the lab powers the domain off through
libvirt), the adapters are the guests' `ethN` (the management NIC is eth0), and a CPU budget for
emulated guests: rarer monitors, longer timeouts, and (TCG only) the link and client monitors as
`ocf:fallover:netwatch` watchers.
"""

from __future__ import annotations

import json
import os
import shlex
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.testbed import clusterconf
from harness.testbed.layout import Layout
from harness.testbed.vagrantlab import Lab
from harness.testbed.vagrantnames import (EVENTS_PORT, FENCE_MCAST, ISCSI_NOOP_INTERVAL_S, ISCSI_NOOP_TIMEOUT_S,
                                          ISCSI_PORT, ISCSI_REPLACEMENT_S)

GUEST_STATE_ROOT = Path("/var/lib/fallover")
FENCE_KEY_GUEST = "/etc/cluster/fence_xvm.key"
PAYLOAD_GUEST = "/tmp/fallover"
LOAD_THRESHOLD = "5000%"
"""pacemaker's `load-threshold` in the guests (default 80 %): see guest_cib. On one core the controller calls a
load average above 0.6 × 1.2 × this "noticeable" and halves its job limit, above 0.6 × 1.6 × this "moderate" and
quarters it. At 1000 % the active guest under load read 9.64 ("Moderate CPU load detected", node_stop-node1,
2026-12-01) and ran one action at a time; 5000 % puts the first step at a load of 36."""
NODE_ACTION_LIMIT = 4
"""pacemaker's `node-action-limit` in the guests (default: 2 × cores, i.e. 2). Throttling divides it (by 2 at a
"noticeable" CIB or CPU load, by 4 at a "moderate" one), so at the default any load left one action at a time: a
graceful handover (node_stop-node1, 2026-12-01) stopped the link monitor (4.9 s) and the reachability ping
(1.6 s) on the loaded node *between* the group's own stops, each one's attribute deletion aborting the
transition, and the service came back after 63.7 s against a 60 s SLA. With 4, a noticeable load still
leaves 2. (The clones' stops now wait for the group's: clusterconf._stop_before.)"""
APP_HEALTH_TIMEOUT_S = 4
"""The sample app's /health wait in its monitor on the guests. The agent's default 2 s failed the app under
load on a TCG guest whose CPU the monitors took (then 15 s); with the monitor budget (netwatch) the client's
probe saw at most 0.29 s under load (p99 0.23 s, 2026-11-30), and a hung app (app_hang) is noticed after
the interval plus this wait: 17.5 s with 15 s against a 10 s detection SLA."""
APP_MONITOR_S = 3
"""The application's monitor interval in the guests (a python agent: 9 % of a TCG guest's CPU at 5 s, measured,
so about 15 % at 3 s): a dead or hung app is noticed within this plus APP_HEALTH_TIMEOUT_S."""
GUEST_QUORUM: dict[str, int | str] = {"wait_for_all": 1}
"""No quorum before every guest has been seen once. The guests are provisioned in parallel but not at one
pace: two that started corosync first had quorum, and their DC fenced the third ("node is unclean": startup
fencing of a node never seen) while it was still starting corosync, so `vagrant up` never ended (seen
2026-11-30, 15 s between the first and the last guest). A rebooted guest joins a quorate cluster at once."""
MONITOR_MIN_S = 5
"""The shortest monitor interval in the guests (the embedded testbed's 1-2 s cost too much CPU under TCG)."""
IP_MONITOR_S = 30
"""The service address's monitor in the guests. A shell agent's run costs a TCG guest about a second of its
one CPU (IPaddr2: 1.26 s, 25 forks, measured 2026-11-30), and the active node's recurring monitors kept it
82 % busy while idle, so every takeover operation waited for the CPU (a Filesystem start took 9 s). No fault
of the catalogue is noticed by this monitor (a dead adapter is ethmonitor's, a dead network ping's): every
30 s it still notices an address removed by hand. The active node: 82 → 71 % busy."""
"""Where vagrant's file provisioner puts the node's files before provision.sh runs."""


@dataclass(frozen=True)
class GuestLayout(Layout):
    """The embedded testbed's names, as paths inside a guest: the disk is the iSCSI LUN's by-path link."""

    portal: str = ""
    iqns: tuple[tuple[str, str], ...] = ()

    def disk_link(self, disk: str) -> Path:
        iqn = dict(self.iqns)[disk]
        return Path(f"/dev/disk/by-path/ip-{self.portal}:{ISCSI_PORT}-iscsi-{iqn}-lun-1")

    @property
    def notification_log(self) -> Path:
        return Path("/var/log/cluster") / Path(self.topology.notification.log).name


def guest_layout(lab: Lab) -> GuestLayout:
    t = lab.topology
    return GuestLayout(t, instance=lab.layout.instance, state_root=GUEST_STATE_ROOT, portal=str(lab.mgmt_address),
                       iqns=tuple((d.name, lab.iqn(d.name)) for d in t.disks))


def interfaces(lab: Lab) -> dict[str, str]:
    """network → the guest's interface (eth0 is the management NIC; then the topology's order)."""
    return {n.name: f"eth{i + 1}" for i, n in enumerate(lab.topology.networks)}


# -- accelerator ------------------------------------------------------------------------------------


def kvm_usable(cpuinfo: str | None = None, dev_kvm: bool | None = None) -> bool:
    """Real hardware virtualisation: vmx/svm in the CPU flags and /dev/kvm. (A /dev/kvm alone proves
    nothing: a PVM-only host kernel has one, and a stock guest kernel hangs on it.)"""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    if dev_kvm is None:
        dev_kvm = os.path.exists("/dev/kvm")
    flags = {w for line in cpuinfo.splitlines() if line.startswith("flags") for w in line.split(":", 1)[1].split()}
    return dev_kvm and bool(flags & {"vmx", "svm"})


def accel(lab: Lab, forced: str | None = None) -> str:
    """`kvm` or `tcg`: FALLOVER_ACCEL or the topology's `vagrant.accel`, `auto` probing the host."""
    choice = forced or os.environ.get("FALLOVER_ACCEL") or lab.settings.accel
    if choice == "auto":
        return "kvm" if kvm_usable() else "tcg"
    if choice not in ("kvm", "tcg"):
        raise ValueError(f"accelerator {choice!r}: kvm, tcg or auto")
    return choice


SETTLE_MIN_S = 600.0
SETTLE_PER_PROVISION = 2.0


def settle_timeout(accelerator: str, provision_s: float) -> float:
    """How long `up` waits for the cluster to settle after `vagrant up` took ``provision_s`` (0: no VM booted).

    Under TCG the wait scales with how starved the guests are, which the provisioning time of the same
    run measures. Measured on the 2-core host: at a load of 15-30 three guests provisioned in 435-472 s
    and the cluster settled ≈ 670-700 s after that (the client reached the VIP at ≈ 1140 s), ≈ 1.5 × the
    provisioning time, so the old fixed 600 s timed out; on a quiet host two guests provisioned in 72 s
    and settled ≈ 70 s later (≈ 1 ×). So 2 × the provisioning time, and never less than 600 s (the
    fixed wait that KVM guests, and a re-run `up` that boots nothing, always met).
    """
    if accelerator == "kvm":
        return SETTLE_MIN_S
    return max(SETTLE_MIN_S, SETTLE_PER_PROVISION * provision_s)


def qemu_wrapper(tb_cache_mb: int, qemu: str = "/usr/bin/qemu-system-x86_64") -> str:
    """The emulator libvirt runs under TCG: qemu with a small translation cache (libvirt's 1 GiB default
    becomes resident; vagrant-libvirt has no knob for <tcg><tb-cache>, and a second -accel is ignored), and
    the balloon's free page reporting on: a guest hands back the pages it freed (an idle guest had 577 of
    960 MB free while its qemu held 1021-1066 MB, measured), and vagrant-libvirt has no knob for that either."""
    return (f"#!/bin/bash\n# fallover: qemu with TCG's translation cache at {tb_cache_mb} MiB, free page reporting\n"
            "args=(); prev=\n"
            "for a in \"$@\"; do\n"
            f"  if [ \"$prev\" = -accel ] && [ \"$a\" = tcg ]; then a=tcg,tb-size={tb_cache_mb}; fi\n"
            "  case $a in '{\"driver\":\"virtio-balloon-pci\"'*) a=\"{\\\"free-page-reporting\\\":true,${a#\\{}\";; esac\n"
            "  args+=(\"$a\"); prev=$a\n"
            "done\n"
            f"exec {qemu} \"${{args[@]}}\"\n")


# -- the Vagrantfile's input ------------------------------------------------------------------------


def spec(lab: Lab, *, box: str, kernel: str | None, initrd: str | None, ssh_key: str, payload: Path,
         accelerator: str, emulator: str | None) -> dict[str, object]:
    """Everything vagrant/Vagrantfile reads (FALLOVER_VAGRANT_SPEC): it holds no logic of its own."""
    t, s = lab.topology, lab.settings
    nodes = []
    for n in t.node_names:
        nics = [{"network": net.name, "bridge": lab.bridge(net.name), "mac": lab.mac(n, i + 1),
                 "ip": str(t.address(n, net.name))} for i, net in enumerate(t.networks)]
        nodes.append({"name": n, "domain": lab.domain(n), "mgmt_mac": lab.mac(n, 0),
                      "mgmt_ip": str(lab.node_mgmt_address(n)), "nics": nics,
                      "payload": str(payload / f"{n}.tar")})
    return {
        "prefix": f"{lab.prefix}-", "box": box, "kernel": kernel, "initrd": initrd,
        "cmd_line": "root=/dev/vda rw console=ttyS0 net.ifnames=0 biosdevname=0 systemd.firstboot=off quiet",
        "driver": "kvm" if accelerator == "kvm" else "qemu", "accel": accelerator, "emulator": emulator,
        "memory_mb": s.memory_mb, "cpus": s.cpus, "ssh_key": ssh_key,
        "mgmt_network": lab.mgmt_network, "mgmt_subnet": str(s.mgmt_subnet),
        "payload_guest": f"{PAYLOAD_GUEST}.tar", "nodes": nodes,
        "provision": f"rm -rf {PAYLOAD_GUEST} && mkdir -p {PAYLOAD_GUEST}"
                     f" && tar -C {PAYLOAD_GUEST} -xf {PAYLOAD_GUEST}.tar && sh {PAYLOAD_GUEST}/provision.sh",
        # vagrant's guest detection runs a command per known guest type over SSH (seconds each under TCG)
        "guest": "debian" if kernel else None,
    }


# -- the guests' cluster files ----------------------------------------------------------------------


def guest_corosync(lab: Lab) -> str:
    """The embedded testbed's corosync.conf, with GUEST_QUORUM under the topology's own quorum options."""
    return clusterconf.corosync_conf(lab.topology, GUEST_QUORUM)


def guest_cib(lab: Lab, empty_cib: str, emulated: bool = False) -> str:
    """The embedded testbed's seed CIB, with fence_xvm per node and the guests' interface names; on
    `emulated` (TCG) guests the link and reachability monitors are `ocf:fallover:netwatch` watchers."""
    t = lab.topology
    gl = guest_layout(lab)
    root = ET.fromstring(clusterconf.cib_xml(gl, empty_cib))
    resources = root.find("configuration/resources")
    constraints = root.find("configuration/constraints")
    assert resources is not None and constraints is not None
    ifaces = interfaces(lab)
    for nv in root.iter("nvpair"):
        rid = nv.get("id", "")
        if (rid.endswith("-params-nic") or rid.endswith("-params-interface")) and nv.get("value") in ifaces:
            nv.set("value", ifaces[nv.get("value", "")])
    old = resources.find("primitive[@id='fence']")
    if old is not None:
        at = list(resources).index(old)
        resources.remove(old)
        for i, n in enumerate(t.node_names):
            prim = ET.Element("primitive", {"id": f"fence-{n}", "class": "stonith", "type": "fence_xvm"})
            clusterconf._nvset(prim, "instance_attributes", f"fence-{n}-params", {
                "port": lab.domain(n), "pcmk_host_list": n, "pcmk_host_check": "static-list",
                "key_file": FENCE_KEY_GUEST, "multicast_address": FENCE_MCAST, "pcmk_off_action": "off",
                "pcmk_reboot_action": "off", "timeout": "20"})
            ops = ET.SubElement(prim, "operations")
            ET.SubElement(ops, "op", id=f"fence-{n}-monitor-60s", name="monitor", interval="60s", timeout="30s")
            resources.insert(at + i, prim)
            ET.SubElement(constraints, "rsc_location", id=f"fence-{n}-not-on-{n}", rsc=f"fence-{n}", node=n,
                          score="-INFINITY")
    if emulated:
        _netwatch(resources, gl)
    props = root.find("configuration/crm_config/cluster_property_set[@id='cib-bootstrap-options']")
    assert props is not None
    # An emulated guest's load average always reads "high" (3-4 on 1 vCPU, measured), and the controller then
    # throttles itself to one action at a time: a takeover ran start, monitor, start, monitor, start in
    # series (fs 5 s, its monitor 5 s, then the IP...). The load says nothing about a TCG guest's headroom.
    ET.SubElement(props, "nvpair", id="cib-bootstrap-options-load-threshold", name="load-threshold",
                  value=LOAD_THRESHOLD)
    ET.SubElement(props, "nvpair", id="cib-bootstrap-options-node-action-limit", name="node-action-limit",
                  value=str(NODE_ACTION_LIMIT))
    for g in t.groups:  # the sample app under locust load on an emulated guest: /health took over 2 s (measured)
        params = root.find(f"configuration/resources/group/primitive[@id='{g.name}-app']/instance_attributes")
        if params is not None and params.find("nvpair[@name='start_cmd']") is None:
            ET.SubElement(params, "nvpair", id=f"{g.name}-app-params-health_timeout", name="health_timeout",
                          value=str(APP_HEALTH_TIMEOUT_S))
    for nv in root.iter("nvpair"):  # the alert agent (python) took over 10 s on a starved TCG guest
        if nv.get("id") == "fallover-notify-meta-timeout":
            nv.set("value", "30s")
    # under emulation the resource agents are slow (fork-heavy shell): generous operation timeouts, and
    # monitors no more often than MONITOR_MIN_S (every 1-2 s on 3 TCG guests kept a whole core busy)
    for op in root.iter("op"):
        if op.get("name") in ("start", "stop"):
            op.set("timeout", "120s")
        elif op.get("name") == "monitor":
            op.set("timeout", "60s")
            secs = int(op.get("interval", "0s").rstrip("s") or 0)
            oid = op.get("id", "")
            floor = IP_MONITOR_S if oid.startswith(tuple(f"{g.name}-ip-" for g in t.groups)) else \
                APP_MONITOR_S if oid.startswith(tuple(f"{g.name}-app-" for g in t.groups)) else MONITOR_MIN_S
            if 0 < secs < floor:
                op.set("interval", f"{floor}s")
    return ET.tostring(root, encoding="unicode")


def _netwatch(resources: ET.Element, gl: GuestLayout) -> None:
    """linkmon-* (ethmonitor) and reach-* (ping) become netwatch watchers keeping the same attributes.

    Those two agents are shell scripts run every monitor interval; on three idle TCG guests their runs
    took 81 % of this 2-core host (each guest 25-30 % of a core; measured 2026-11-30 by disabling the two
    monitors: 138 → 57 %), and every takeover operation waited for the CPU. The ids, attribute names
    and values stay, so constraints, alerts, checkers and audits see no difference."""
    for prim in resources.iter("primitive"):
        rid = prim.get("id", "")
        if not rid.startswith(("linkmon-", "reach-")):
            continue
        params = prim.find("instance_attributes")
        assert params is not None
        old = {nv.get("name"): nv.get("value", "") for nv in params.iter("nvpair")}
        values = {"name": old["name"], "daemon": str(gl.agents_dir / "netwatch.py")}
        if rid.startswith("linkmon-"):
            values.update(interface=old["interface"], interval="1")  # link events wake it; a re-read each second
        else:  # ping's three echoes 0.2 s apart with 1 s for the last answer: no reply for 1.6 s
            values.update(host=old["host_list"], interval="0.2", window="1.6", dampen=old.get("dampen", "1s"))
        prim.set("provider", "fallover")
        prim.set("type", "netwatch")
        params.clear()
        params.set("id", f"{rid}-params")
        for k, v in values.items():
            ET.SubElement(params, "nvpair", id=f"{rid}-params-{k}", name=k, value=v)


def fence_virtd_conf(lab: Lab, key: Path) -> str:
    """Multicast listener on the service bridge (an isolated node cannot fence), libvirt backend."""
    return f"""fence_virtd {{
    listener = "multicast";
    backend = "libvirt";
    module_path = "/usr/lib/x86_64-linux-gnu/fence-virt";
}}
listeners {{
    multicast {{
        key_file = "{key}";
        address = "{FENCE_MCAST}";
        interface = "{lab.bridge(lab.topology.service_network.name)}";
        family = "ipv4";
        port = "1229";
    }}
}}
backends {{
    libvirt {{
        uri = "qemu:///system";
    }}
}}
"""


def tgt_commands(lab: Lab) -> list[list[str]]:
    """tgtadm calls that export every disk as LUN 1 of its own target, to every initiator."""
    out = []
    for d in lab.topology.disks:
        tid = str(lab.tid(d.name))
        out += [["tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "target", "--tid", tid, "-T", lab.iqn(d.name)],
                ["tgtadm", "--lld", "iscsi", "--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1",
                 "-b", str(lab.disk_image(d.name)), "--bstype", "rdwr"],
                ["tgtadm", "--lld", "iscsi", "--op", "bind", "--mode", "target", "--tid", tid, "-I", "ALL"]]
    return out


def tgt_teardown(lab: Lab) -> list[list[str]]:
    """tgtd ignores SIGTERM while targets exist: offline, delete every target, then the system."""
    out = [["tgtadm", "--op", "update", "--mode", "sys", "--name", "State", "-v", "offline"]]
    out += [["tgtadm", "--lld", "iscsi", "--op", "delete", "--mode", "target", "--tid", str(lab.tid(d.name)),
             "--force"] for d in lab.topology.disks]
    return out + [["tgtadm", "--op", "delete", "--mode", "system"]]


def node_env(lab: Lab, node: str) -> dict[str, str]:
    """The variables provision.sh reads (written as `env` in the node's payload)."""
    t = lab.topology
    gl = guest_layout(lab)
    ifaces = interfaces(lab)
    nics = " ".join(f"{lab.mac(node, i + 1)}={ifaces[n.name]}={t.address(node, n.name)}/{n.subnet.prefixlen}"
                    for i, n in enumerate(t.networks))
    hosts = " ".join(f"{t.address(n, t.service_network.name)}={n}" for n in t.node_names)
    return {
        "NODE": node, "NICS": nics, "HOSTS": hosts, "FENCE_IFACE": ifaces[t.service_network.name],
        "INITIATOR": f"iqn.2026-11.net.fallover:{lab.prefix}.{node}", "PORTAL": str(lab.mgmt_address),
        "IQNS": " ".join(lab.iqn(d.name) for d in t.disks),
        "DISK_LINKS": " ".join(f"{gl.disk_link(d.name)}={gl.state / 'disks' / (d.name + '.dev')}" for d in t.disks),
        "STATE": str(gl.state), "AGENTS": str(gl.agents_dir),
        "MOUNTS": " ".join(str(gl.mountpoint(g.name)) for g in t.groups),
        "COLLECTOR": f"{lab.mgmt_address}:{EVENTS_PORT}", "NOTIFY_LOG": str(gl.notification_log),
        "ISCSI_REPLACEMENT": str(ISCSI_REPLACEMENT_S), "ISCSI_NOOP_INTERVAL": str(ISCSI_NOOP_INTERVAL_S),
        "ISCSI_NOOP_TIMEOUT": str(ISCSI_NOOP_TIMEOUT_S),
    }


def env_file(values: dict[str, str]) -> str:
    return "".join(f"{k}={shlex.quote(v)}\n" for k, v in values.items())


def dump_spec(data: dict[str, object]) -> str:
    return json.dumps(data, indent=1, sort_keys=True)
