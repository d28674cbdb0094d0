"""The embedded testbed: a real Pacemaker/Corosync cluster in Linux namespaces on this machine."""

from __future__ import annotations

import hashlib
import json
import os
import pwd
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import FalloverError, HealError, TestbedError
from harness.testbed import cgroup, disk, faultdisk, fencedev, hostlogs, impair, network, nodes, wire
from harness.testbed.base import CAPABILITIES, Capabilities, Impairment, LogFile, Progress, Rule, quiet
from harness.testbed.layout import AGENTS, FREEZER_ROOT, Layout, default_instance
from harness.testbed.restore import restore
from harness.topology import Topology
from harness.transport import HostTransport, NamespaceTransport, NetnsTransport
from harness.transport.base import Transport

REQUIRED_TOOLS = ("corosync", "pacemakerd", "crm_mon", "cibadmin", "crm_verify", "crm_resource", "mkfs.ext4",
                  "fsck.ext4", "losetup", "unshare", "nsenter", "fusermount3", "modprobe", "fuser")
SETTLE_S = 90.0  # how long `up` waits for the cluster to settle


class LocalTestbed:
    """Nodes are namespace sets, networks are bridges in a private netns, the disk a loop device."""

    def __init__(self, topology: Topology, instance: str | None = None, state_root: str | None = None) -> None:
        self.topology = topology
        kw = {"state_root": Path(state_root)} if state_root else {}
        self.layout = Layout(topology, instance=default_instance() if instance is None else instance, **kw)
        self.host = HostTransport()
        self._nodes = {n: NamespaceTransport(n, self._pid_getter(n)) for n in topology.node_names}
        self._client = NetnsTransport(topology.client.name, f"/run/netns/{self.layout.client_ns}")

    def __repr__(self) -> str:
        return f"<LocalTestbed {self.layout.prefix} state={self.layout.state}>"

    # -- transports -------------------------------------------------------------------------

    def _pid_getter(self, node: str) -> Callable[[], int | None]:
        return lambda: nodes.init_pid(self.layout, node)

    def node(self, name: str) -> Transport:
        if name not in self._nodes:
            raise KeyError(f"unknown node {name!r}; nodes are {', '.join(self._nodes)}")
        return self._nodes[name]

    def client(self) -> NetnsTransport:
        return self._client

    def running(self, node: str) -> bool:
        return nodes.init_pid(self.layout, node) is not None

    @property
    def is_built(self) -> bool:
        return (self.layout.state / "up.json").exists()

    # -- lifecycle ----------------------------------------------------------------------------

    def check_host(self) -> None:
        """Refuse early, with the fix in the message, instead of failing half-way through `up`."""
        if os.geteuid() != 0:
            raise TestbedError("the embedded testbed needs root (namespaces, loop devices, cgroups)")
        missing = [t for t in REQUIRED_TOOLS if shutil.which(t) is None]
        if missing:
            raise TestbedError(f"missing tools: {' '.join(missing)}; run `make setup` (installs the Debian packages)")
        try:
            pwd.getpwnam("hacluster")
        except KeyError:
            raise TestbedError("user hacluster missing; install pacemaker (`make setup`)") from None
        if not FREEZER_ROOT.parent.exists():
            raise TestbedError(f"{FREEZER_ROOT.parent} not found: the embedded testbed needs the cgroup-v1 freezer")

    def up(self, progress: Progress = quiet, placement: bool = True, settle: bool = True) -> None:
        """Build (or repair) the testbed and wait until the cluster has settled.

        ``placement=False`` accepts groups on any node (a cluster whose policy keeps them away
        from home is for the checkers to judge, not for bring-up to wait out). ``settle=False``
        builds, repairs and powers on, and leaves the waiting to the caller (an SSH lab waits
        over SSH, the way it reaches the cluster).
        """
        self.check_host()
        if self.is_built and self._fabric_alive() and self._built_from() != self._config_digest():
            progress("the topology or the harness changed since this testbed was built: rebuilding it")
            self.down(progress=quiet)
        unhealed: HealError | None = None
        existed = self.is_built and self._fabric_alive()
        if existed:
            try:
                self.heal_journal(progress)
            except HealError as e:  # some heals need the cluster running (disk_full): try again below
                unhealed = e
        else:
            if self.leftovers():
                progress("sweeping what an earlier run left behind")
                self.down(progress=quiet)
            self._build(progress)
            self._apply_extra_config(progress)
        try:
            if existed:  # every node whole, then settled with every node on (harness/testbed/restore.py)
                restore(self, timeout=SETTLE_S, progress=progress, placement=placement, settle=settle)
            elif settle:
                self.wait_settled(progress, placement=placement)
        except FalloverError:
            if unhealed is not None:
                raise unhealed from None  # the cause, rather than its consequence
            raise
        if unhealed is not None and not settle:
            raise unhealed
        if unhealed is not None:
            progress("healing again what could not be healed before the cluster settled")
            self.heal_journal(progress)  # raises if it still cannot

    def _fabric_alive(self) -> bool:
        return (set(network.our_namespaces(self.layout)) == {self.layout.net_ns, self.layout.client_ns}
                and bool(cgroup.procs(self.layout.daemon_cgroup("broker")))
                and all(faultdisk.is_mounted(self.layout.disk_fuse_dir(d.name)) for d in self.topology.disks))

    def _build(self, progress: Progress) -> None:
        L = self.layout
        t0 = time.monotonic()
        L.state.mkdir(parents=True, exist_ok=True)
        L.state.chmod(0o755)  # hacluster runs the alert agent from here
        (L.state / "faults").mkdir(exist_ok=True)
        progress("installing agents")
        nodes.install_agents(L)
        for d in self.topology.disks:
            progress(f"shared disk {d.name}: image and FUSE layer (each node gets its own view and loop device)")
            disk.prepare(L, d.name)
            disk.start_fuse(L, d.name)
        for g in self.topology.groups:
            L.mountpoint(g.name).mkdir(parents=True, exist_ok=True)
        progress("networks: bridges and the client namespace")
        network.create_fabric(L)
        self._start_broker()
        hac = pwd.getpwnam("hacluster")
        L.notification_log.touch()
        os.chown(L.notification_log, hac.pw_uid, hac.pw_gid)
        L.notification_log.chmod(0o664)
        conf, cib, key = nodes.seed_files(L)
        for n in self.topology.node_names:
            nodes.prepare(L, n, conf, cib, key)
        for n in self.topology.node_names:
            progress(f"starting {n}")
            nodes.start(L, n)
        (L.state / "up.json").write_text(json.dumps({
            "topology": str(self.topology.source), "instance": L.instance, "prefix": L.prefix,
            "config_digest": self._config_digest(),
            "namespaces_ready_s": round(time.monotonic() - t0, 3), "started_at": time.time()}))

    def _config_digest(self) -> str:
        """What the cluster is built from: the topology and the harness code that turns it into a cluster."""
        h = hashlib.sha256(self.topology.model_dump_json().encode())
        if self.topology.cluster.extra_config is not None:
            h.update(Path(self.topology.cluster.extra_config).read_bytes())
        for path in sorted(Path(__file__).resolve().parent.rglob("*")) + sorted(AGENTS.rglob("*")):
            if path.is_file() and path.suffix != ".pyc":
                h.update(path.name.encode() + path.read_bytes())
        return h.hexdigest()

    def _built_from(self) -> str | None:
        try:
            return json.loads((self.layout.state / "up.json").read_text()).get("config_digest")
        except (OSError, ValueError):
            return None

    def _start_broker(self) -> None:
        L = self.layout
        group = cgroup.create(L.daemon_cgroup("broker"))
        if cgroup.procs(group):
            return
        proc = cgroup.spawn(group, [sys.executable, "-m", "harness.testbed.fence_broker", "--topology",
                                    str(self.topology.source), "--instance", L.instance, "--state-root",
                                    str(L.state_root)], log=L.state / "fence-broker.log",
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
        L.pidfile("broker").write_text(str(proc.pid))
        deadline = time.monotonic() + 15
        while not all(L.fence_socket_for(d).exists() for d in self.topology.cluster.fencing_topology):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise TestbedError(f"fence broker did not start; see {L.state / 'fence-broker.log'}")
            time.sleep(0.02)

    def wait_settled(self, progress: Progress = quiet, timeout: float = SETTLE_S, placement: bool = True) -> None:
        from harness.drivers import open_driver

        open_driver(self).recover(timeout=timeout, progress=progress, placement=placement)

    def _apply_extra_config(self, progress: Progress) -> None:
        """The user's own crmsh configuration (`cluster.extra_config`), loaded over the generated one."""
        from harness.drivers import open_driver

        extra = self.topology.cluster.extra_config
        if extra is None:
            return
        driver = open_driver(self)
        driver.wait_until(lambda s: s.dc is not None, timeout=90, what="a DC to load the extra configuration")
        progress(f"loading {extra} with crm configure load update")
        copy = self.layout.agents_dir / "extra_config.crm"  # visible in the nodes wherever the topology lives
        shutil.copyfile(extra, copy)
        driver.admin(["crm", "configure", "load", "update", str(copy)], timeout=60)

    def down(self, progress: Progress = quiet) -> list[str]:
        """Remove everything, in the order that keeps each step possible; safe after any crash."""
        L = self.layout
        gone: list[str] = []
        for n in self.topology.node_names:
            if cgroup.procs(L.node_cgroup(n)):
                progress(f"powering off {n}")
                cgroup.kill_all(L.node_cgroup(n))
                gone.append(f"node {n}")
        if cgroup.procs(L.daemon_cgroup("broker")):
            cgroup.kill_all(L.daemon_cgroup("broker"))
            gone.append("fence broker")
        progress("detaching the shared disk")
        gone += disk.detach_all(L)
        gone += disk.stop_fuse(L)
        if L.cgroup_root.exists():
            cgroup.remove_tree(L.cgroup_root)
        gone += network.remove_fabric(L)
        for mnt in disk.fuse_mounts(L):  # a FUSE daemon killed before it could unmount
            subprocess.run(["umount", "-l", mnt], capture_output=True, timeout=30)
        if L.state.exists():
            shutil.rmtree(L.state)
            gone.append(f"state {L.state}")
        try:
            L.state_root.rmdir()
        except OSError:
            pass
        gone += nodes.uninstall_shared_agents()
        return gone

    # -- power and services ---------------------------------------------------------------------

    def power_off(self, node: str) -> None:
        nodes.power_off(self.layout, node)

    def power_on(self, node: str) -> None:
        nodes.start(self.layout, node)

    def start_services(self, node: str) -> None:
        """Start the node's services again (`nodes.services_script`) inside it, in the node's cgroup."""
        self._in_node_cgroup(node, f"/bin/sh {shlex.quote(str(self.layout.node_dir(node) / 'services.sh'))}")

    def freeze(self, node: str) -> None:
        cgroup.set_state(self.layout.node_cgroup(node), "FROZEN")

    def thaw(self, node: str) -> None:
        if cgroup.state(self.layout.node_cgroup(node)) not in ("THAWED", "ABSENT"):
            cgroup.set_state(self.layout.node_cgroup(node), "THAWED")

    def frozen(self, node: str) -> bool:
        return cgroup.state(self.layout.node_cgroup(node)) in ("FROZEN", "FREEZING")

    def spawn(self, node: str, argv: list[str], *, pidfile: str) -> None:
        """Start a detached process inside a node, in the node's cgroup (so it freezes and dies with it).

        ``pidfile`` (a path inside the node) receives its PID, which also leads its process group.
        """
        self._in_node_cgroup(node, f"setsid -f sh -c 'echo $$ > {pidfile}; exec \"$@\"' _ "
                                   + " ".join(shlex.quote(a) for a in argv) + " >/dev/null 2>&1 </dev/null")

    def _in_node_cgroup(self, node: str, script: str) -> None:
        pid = nodes.init_pid(self.layout, node)
        if pid is None:
            raise TestbedError(f"{node} is powered off")
        group = self.layout.node_cgroup(node)
        r = subprocess.run(["nsenter", "-t", str(pid), "-a", "--", "/bin/sh", "-c", script], timeout=30,
                           capture_output=True, text=True, preexec_fn=lambda: cgroup.join_self(group))
        if r.returncode != 0:
            raise TestbedError(f"{node}: `{script}` exited {r.returncode}: {r.stderr.strip()}")

    def adapter_states(self) -> dict[tuple[str, str], str]:
        """(node, network) → operational state of its cable (the bridge-side port), one netlink dump."""
        ports = network.links(self.layout.net_ns)
        return {(n, net.name): ports.get(self.layout.veth(n, net.name), "absent")
                for n in self.topology.node_names for net in self.topology.networks}

    def capabilities(self) -> Capabilities:
        """The embedded testbed has every capability: it owns the switch, the disk layer and the freezer."""
        return {name: None for name in CAPABILITIES}

    @property
    def journal_path(self) -> Path:
        return self.layout.journal

    def carrier(self, node: str, network: str) -> bool | None:
        return wire.carrier(self.layout, node, network)

    def set_adapter(self, node: str, network: str, up: bool) -> bool:
        return wire.set_adapter(self.layout, node, network, up)

    def network_up(self, network: str) -> bool | None:
        return wire.bridge_up(self.layout, network)

    def set_network(self, network: str, up: bool) -> bool:
        return wire.set_network(self.layout, network, up)

    def add_rule(self, rule_id: str, rule: Rule) -> int:
        """nft bridge-family rules on the switch, in a table named after the journal entry."""
        rules = wire.rule_lines(self.layout, rule)
        wire.add_filter(self.layout, wire.rule_table(rule_id), rules)
        return len(rules)

    def rule_in_effect_since(self, rule_id: str) -> float | None:
        return None  # one nft table on the switch, atomic: in effect when add_rule returns

    def rule_count(self, rule_id: str) -> int | None:
        found = wire.filter_rules(self.layout, wire.rule_table(rule_id))
        return None if found is None else len(found)

    def remove_rule(self, rule_id: str) -> None:
        table = wire.rule_table(rule_id)
        wire.remove_filter(self.layout, table)  # False: gone already (idempotent)
        if wire.filter_rules(self.layout, table) is not None:
            raise FalloverError(f"table bridge {table} is still in the switch's ruleset after its delete")

    def impair(self, impairment_id: str, impairment: Impairment) -> dict[str, Any]:
        return impair.start(self.layout, impairment_id, impairment)

    def impairment_missing(self, undo: dict[str, Any]) -> str | None:
        return impair.missing(self.layout, undo)

    def unimpair(self, undo: dict[str, Any]) -> None:
        impair.stop(self.layout, undo)

    def mountpoint(self, group: str) -> str:
        """Where the group's data lives in the nodes: its shared filesystem, or each node's own directory."""
        from harness.testbed.clusterconf import local_data_dir

        if self.topology.group(group).disk is None:
            return local_data_dir(group)
        return str(self.layout.mountpoint(group))

    def freezer_state(self, node: str) -> str:
        """FROZEN, FREEZING, THAWED, or ABSENT (no cgroup: the node was never started here)."""
        return cgroup.state(self.layout.node_cgroup(node))

    def disk_mode(self, disk_name: str) -> str | None:
        return disk.mode(self.layout, disk_name)

    def set_disk_mode(self, disk_name: str, mode: str) -> None:
        disk.set_mode(self.layout, disk_name, mode)

    def disk_read_error(self, disk_name: str, timeout: float = 10.0) -> str | None:
        return disk.read_error(self.layout, disk_name, timeout)

    def disk_write_error(self, disk_name: str, timeout: float = 10.0) -> str | None:
        return disk.write_error(self.layout, disk_name, timeout)

    def fence_device_mode(self, device: str) -> str | None:
        return fencedev.mode(self.layout, device)

    def set_fence_device(self, device: str, mode: str) -> None:
        fencedev.set_mode(self.layout, device, mode)

    def fence_check(self, device: str, node: str, timeout: float = 3.0) -> str | None:
        return fencedev.check(self.layout, device, node, timeout)

    # -- evidence -------------------------------------------------------------------------------

    def log_files(self) -> list[LogFile]:
        return hostlogs.log_files(self.topology, self.layout.state / "nodes")

    def log_size(self, log: LogFile) -> tuple[int, int]:
        return hostlogs.log_size(self.layout.state / "nodes", log)

    def read_log(self, log: LogFile, start: int) -> tuple[int, bytes]:
        return hostlogs.read_log(self.layout.state / "nodes", log, start)

    def event_logs(self) -> dict[str, Path]:
        return {"notifications": self.layout.notification_log, "fences": self.layout.state / "fence-events.jsonl"}

    def mounts(self) -> dict[str, list[str]] | None:
        from harness.testbed.mounts import shared_mounts

        return shared_mounts(self)

    def heal_journal(self, progress: Progress = quiet) -> list[str]:
        """Undo what a crashed run left in the fault journal (the `fallover heal` of every start)."""
        from harness.faults import Nemesis

        if not self.layout.journal.exists():
            return []
        undone = Nemesis(self).replay()
        for u in undone:
            progress(f"healed {u}")
        return undone

    def leftovers(self) -> list[str]:
        from harness.testbed.sweep import leftovers

        return leftovers(self.layout)
