"""The SSH provider: fault injection on a cluster fallover reaches only over SSH (`provider: ssh`).

Every command goes to a host of the inventory (`ssh.hosts`), over one reused connection per node;
power and disk pulls go through the out-of-band commands the inventory declares (IPMI, virsh, a
SAN CLI), run on the harness host. Faults inside a node are made to heal themselves (a pulled
cable comes back after `sshnet.SELF_HEAL_S`), and every fault is journaled on the harness's side,
so a crashed harness never strands a node. `ssh.lab: embedded` makes fallover build the hosts
itself (the embedded cluster with sshd in each node, `sshlab`); nothing else differs.
"""

from __future__ import annotations

import logging
import shlex
import shutil
from pathlib import Path

from harness.errors import FalloverError, TestbedError, TransportError, UsageError
from harness.testbed import sshnet
from harness.testbed.base import CAPABILITIES, Capabilities, LogFile, Progress, quiet
from harness.testbed.sshevents import EventMirror
from harness.testbed.layout import STATE_ROOT, default_instance
from harness.testbed.restore import restore
from harness.testbed.sshnetwork import SshNetwork
from harness.testbed.sshpower import SshPower
from harness.testbed.sshstorage import SshStorage
from harness.topology import Topology
from harness.transport import HostTransport
from harness.transport.base import Transport
from harness.transport.ssh import SshTransport

log = logging.getLogger("fallover.ssh")


class InventoryError(UsageError):
    """A host of the inventory cannot be used (unreachable, bad key, no sudo): exit 2, nothing touched."""


class SshTestbed(SshPower, SshNetwork, SshStorage):
    """A cluster reached over SSH; see the module docstring."""

    def __init__(self, topology: Topology, instance: str | None = None) -> None:
        if topology.ssh is None:
            raise UsageError(f"{topology.source}: ssh: the ssh provider needs an ssh inventory")
        self.topology = topology
        self.inventory = topology.ssh
        self.instance = default_instance() if instance is None else instance
        self.state = STATE_ROOT / (f"ssh-{topology.name}" + (f"-{self.instance}" if self.instance else ""))
        self._power: dict[str, tuple[float, bool]] = {}
        self._installed: dict[str, dict[str, int]] = {}
        self._in_effect: dict[str, float | None] = {}
        self._checked = False
        self._probe: dict[str, str] | None = None
        self._events: EventMirror | None = None
        self.lab = None
        known, key, sock = self.inventory.known_hosts, None, None
        if self.inventory.lab == "embedded":
            from harness.testbed import sshlab
            from harness.testbed.local import LocalTestbed

            self.lab = LocalTestbed(topology, instance=self.instance)
            known, key, sock = (sshlab.known_hosts(self.lab.layout), sshlab.client_key(self.lab.layout),
                                sshlab.socket_factory(self.lab.layout))
        self._nodes = {}
        for n in topology.node_names:
            ep = self.inventory.hosts[n]
            if key is not None:
                ep = ep.model_copy(update={"key_file": key})
            self._nodes[n] = SshTransport(n, ep, known_hosts=known, strict=self.inventory.strict_host_key_checking,
                                          connect_timeout=self.inventory.connect_timeout_s, sock_factory=sock)

    def __repr__(self) -> str:
        return f"<SshTestbed {self.topology.name} state={self.state}>"

    @property
    def connections_opened(self) -> int:
        """SSH connections this process opened (every node): about one per node plus one per restart."""
        return SshTransport.connections_opened

    @property
    def journal_path(self) -> Path:
        return self.state / "faults.journal"

    @property
    def is_built(self) -> bool:
        return self.lab.is_built if self.lab is not None else True

    # -- commands -------------------------------------------------------------------------------

    def node(self, name: str) -> Transport:
        if name not in self._nodes:  # the only way to a host: no command ever leaves the inventory
            raise UsageError(f"{self.topology.source}: {name!r} is not a host of the inventory "
                             f"({', '.join(self._nodes)})")
        return self._nodes[name]

    def client(self) -> Transport:
        """The lab's client namespace; on a real inventory the harness host itself (it must reach the VIP)."""
        return self.lab.client() if self.lab is not None else LocalClient()

    def _sh(self, node: str, script: str, *, timeout: float = 30, check: bool = True) -> str:
        """A script through stdin: a `pgrep -f PATTERN` in it must not find the script's own shell."""
        return self.node(node).run(["sh", "-s"], input=script, timeout=timeout, check=check).stdout

    def spawn(self, node: str, argv: list[str], *, pidfile: str) -> None:
        self._sh(node, f"setsid -f sh -c 'echo $$ > {shlex.quote(pidfile)}; exec \"$@\"' _ "
                       + shlex.join(argv) + " >/dev/null 2>&1 </dev/null")

    # -- lifecycle ------------------------------------------------------------------------------

    def up(self, progress: Progress = quiet, placement: bool = True) -> None:
        """Lab: build (or repair) its hosts first. Then every host: connect, check root or sudo; heal the
        journal; settle, asking the cluster over SSH like any other command."""
        if self.lab is not None:
            self.lab.up(progress, placement=placement, settle=False)
        self.check_hosts(progress)  # before anything of ours exists, even a state directory
        self.state.mkdir(parents=True, exist_ok=True)
        if self.journal_path.exists():
            from harness.faults import Nemesis

            for u in Nemesis(self).replay():
                progress(f"healed {u}")
        if self.power_readable:  # a node the cluster fences while it settles is powered on again, a few rounds
            restore(self, timeout=120, progress=progress, placement=placement, repair=self._power_on_if_off)
        else:
            for n in self.topology.node_names:
                if self.inventory.oob.power_on and not self.running(n):
                    progress(f"powering on {n} (out of band)")
                    self.power_on(n)
            from harness.drivers import open_driver

            open_driver(self).recover(timeout=120, progress=progress, placement=placement)
        self._mirror_events()
        log.info("%s: up; %d SSH connections opened so far", self.topology.name, self.connections_opened)

    def _mirror_events(self) -> None:
        """A real inventory with an alert log: copy the nodes' alert lines to our notification log."""
        if self.lab is not None or not self.inventory.alerts_log or self._events is not None:
            return
        logs = self.event_logs()
        self._events = EventMirror(self.log_size, self.read_log,
                                   [LogFile(n, self.inventory.alerts_log, required=False) for n in self.topology.node_names],
                                   logs["notifications"], logs["fences"])
        self._events.start()

    def check_hosts(self, progress: Progress = quiet) -> None:
        """One line naming the first host that cannot be used: before anything is done to any of them.
        Later (a node fenced and rebooting), a host that does not come back is a TransportError."""
        first = not self._checked
        for n, t in self._nodes.items():
            progress(f"connecting to {n}")
            ep, where = t.endpoint, f"{self.topology.source}: ssh.hosts.{n}"
            if self.lab is not None and not self.running(n):
                continue  # a lab node that is off (the lab brings it back below)
            try:
                if not self._reach(n, first=first):
                    progress(f"{n} was powered off meanwhile (fenced?): it is powered on below")
                    continue
                if ep.user != "root" and not ep.sudo:
                    raise InventoryError(f"{where}: user {ep.user} is not root and sudo is false; "
                                         "fallover needs root on the nodes")
                r = t.run(["true"], timeout=15, check=False)  # through sudo -n when configured
            except TransportError as e:
                if not first:
                    raise
                raise InventoryError(f"{where}: {e.cause}") from None
            if r.failed:
                raise InventoryError(f"{where}: sudo -n true failed on {ep.host} ({r.tail() or r.exit_status}): "
                                     "fallover needs passwordless sudo there")
        self._checked = True

    def down(self, progress: Progress = quiet) -> list[str]:
        """Lab: tear it all down. Real inventory: heal what the journal holds, close; nothing of yours goes."""
        gone: list[str] = []
        if self.lab is None and self.journal_path.exists():
            from harness.faults import Nemesis

            gone += [f"healed {u}" for u in Nemesis(self).replay()]
        if self._events is not None:
            self._events.stop()
            self._events = None
        self.close_mount_watches()
        for t in self._nodes.values():
            t.close()
        log.info("%s: %d SSH connections opened in this process", self.topology.name, self.connections_opened)
        if self.state.exists():
            shutil.rmtree(self.state)
            gone.append(f"state {self.state}")
        if self.lab is not None:
            gone += self.lab.down(progress)
        return gone

    def leftovers(self) -> list[str]:
        left = [f"state directory {self.state}"] if self.state.exists() else []
        return left + (self.lab.leftovers() if self.lab is not None else [])

    def capabilities(self) -> Capabilities:
        oob = self.inventory.oob
        caps: dict[str, str | None] = {k: None for k in CAPABILITIES}
        if self.lab is None and not self.inventory.alerts_log:
            caps["notifications"] = "the inventory declares no alert log (ssh.alerts_log: where fallover-alert writes)"
        caps["disk_modes"] = "a disk is pulled whole here (its device offline, or your oob command): no read-only, " \
                             "write-only or hanging I/O"
        caps["fence_device"] = "fallover does not drive your fence devices (it would have to break your IPMI)"
        if not oob.power_off and not oob.sysrq:
            caps["power"] = "the inventory declares no out-of-band power commands (ssh.oob.power_off/on/status) " \
                            "nor ssh.oob.sysrq"
        if not oob.disk_pull and not all(d.name in h.disks for d in self.topology.disks
                                         for h in self.inventory.hosts.values()):
            caps["disk"] = ("the inventory declares neither ssh.oob.disk_pull/restore/status nor each disk's "
                            "device on every host (ssh.hosts.NODE.disks)")
        probe, first = self.probe(), self.topology.node_names[0]
        if "error" in probe:
            caps["rules"] = caps["impair"] = f"could not probe {first}: {probe['error']}"
            return caps
        if probe.get("rules") != "nft":
            other = "only iptables, which fallover does not drive" if probe.get("rules") == "iptables" else "nor iptables"
            caps["rules"] = f"{first} has no nft ({other})"
        if probe.get("netem") != "yes":
            caps["impair"] = f"the kernel of {first} has no sch_netem (tc qdisc add … netem: {probe.get('netem')})"
        return caps

    # -- what this provider leaves out: the plan never asks (`capabilities` says why) -------------

    def _lacks(self, capability: str) -> TestbedError:
        return TestbedError(f"{self.topology.name}: no {capability}: {self.capabilities().get(capability)}")

    def disk_write_error(self, disk: str) -> str | None:
        raise self._lacks("disk_modes")

    def fence_device_mode(self, device: str) -> str | None:
        raise self._lacks("fence_device")

    def set_fence_device(self, device: str, mode: str) -> None:
        raise self._lacks("fence_device")

    def fence_check(self, device: str, node: str, timeout: float = 3.0) -> str | None:
        raise self._lacks("fence_device")

    def probe(self) -> dict[str, str]:
        """What the first node can do (nft, netem), asked once; a lab asks this host, whose kernel it shares."""
        if self._probe is None:
            try:
                if self.lab is not None:
                    out = HostTransport().run(["sh", "-c", sshnet.PROBE], timeout=20).stdout
                else:
                    out = self._sh(self.topology.node_names[0], sshnet.PROBE, timeout=20)
                self._probe = dict(ln.split("=", 1) for ln in out.splitlines() if "=" in ln)
            except FalloverError as e:
                return {"error": str(e)}
        return self._probe

    # -- hang -----------------------------------------------------------------------------------

    def start_services(self, node: str) -> None:
        """Lab: the node's own services script; a real node: its systemd units."""
        if self.lab is not None:
            script = f"/bin/sh {shlex.quote(str(self.lab.layout.node_dir(node) / 'services.sh'))}"
        elif self.topology.cluster.stack == "keepalived":
            script = "systemctl start keepalived"
        else:
            script = "systemctl start corosync pacemaker"
        self._sh(node, script, timeout=120)

    def _app(self) -> tuple[str | None, str | None]:
        apps = [g.application for g in self.topology.groups]
        pattern = "|".join(a.process for a in apps if a.process) or \
            ("kvapp.py" if any(a.start is None for a in apps) else None)
        return pattern, next((a.pid_file for a in apps if a.pid_file), None)

    def freeze(self, node: str) -> None:
        try:
            self._sh(node, sshnet.signal_script(*self._app(), "STOP"))
        except TransportError:  # fenced before the answer came back: the hang had its effect already
            self._power.pop(node, None)
            if self.running(node):
                raise

    def thaw(self, node: str) -> None:
        if self.running(node):
            self._sh(node, sshnet.signal_script(*self._app(), "CONT"))

    def freezer_state(self, node: str) -> str:
        if not self.running(node):
            return "ABSENT"
        out = self._sh(node, f"pids=$({sshnet.stack_pids_script(*self._app()).strip()})\n" + sshnet.STATES)
        return sshnet.freezer_state(out.split())

class LocalClient(HostTransport):
    """The client of a real inventory: the harness host (load and probe reach the service IP from here)."""

    def __init__(self) -> None:
        super().__init__(name="client")

    def wrap(self, argv: list[str]) -> list[str]:
        return list(argv)

