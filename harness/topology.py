"""The declared cluster (nodes, networks, disks, groups, SLAs) as one validated YAML file."""

from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from harness.errors import TopologyError
from harness.corosync_options import Corosync
from harness.inventory import SshInventory

NAME = r"^[a-z][a-z0-9]{0,11}$"


def _private_subnet(v: ipaddress.IPv4Network, largest_prefix: int) -> ipaddress.IPv4Network:
    # Workplace rule: test traffic stays inside namespaces we create, on private addresses.
    if not v.is_private or v.prefixlen > largest_prefix:
        raise ValueError(f"must be a private IPv4 subnet of /{largest_prefix} or larger")
    return v
"""Node, network, disk and group names: short, because they become Linux interface names."""


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Node(Model):
    name: str = Field(pattern=NAME)


class Network(Model):
    """A cluster network; every node has one adapter on each (the service or the standby one)."""

    name: str = Field(pattern=NAME)
    role: Literal["service", "standby"]
    subnet: ipaddress.IPv4Network
    heartbeat: bool = True

    @field_validator("subnet")
    @classmethod
    def _private(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        return _private_subnet(v, 28)


class Disk(Model):
    name: str = Field(pattern=NAME)
    size_mb: int = Field(default=64, ge=16, le=4096)
    fstype: Literal["ext4"] = "ext4"


class Application(Model):
    """What the group runs: the sample key-value app, or the user's own commands (OCF exit codes).

    The application faults strike what `start` left running (the agent keeps it in a cgroup of
    its own); `pid_file` or `process` say instead where the application is, and `detached`
    declares that `start` hands it to something outside the node's process tree (systemd, a
    container runtime): then there is nothing to kill or stop, unless `pid_file`/`process` say.
    """

    port: int = Field(default=8080, ge=1, le=65535)
    start: str | None = None
    stop: str | None = None
    monitor: str | None = None
    pid_file: str | None = None
    process: str | None = None
    detached: bool = False

    @model_validator(mode="after")
    def _all_or_none(self) -> Application:
        given = [k for k in ("start", "stop", "monitor") if getattr(self, k)]
        if given and len(given) != 3:
            raise ValueError("start, stop and monitor must be given together")
        located = [k for k in ("pid_file", "process", "detached") if getattr(self, k)]
        if located and not given:
            raise ValueError(f"{located[0]} needs your own start, stop and monitor commands "
                             "(fallover knows where its sample application is)")
        if self.pid_file and self.process:
            raise ValueError("pid_file and process are two ways to say the same thing: give one")
        if self.pid_file is not None and not self.pid_file.startswith("/"):
            raise ValueError(f"pid_file must be an absolute path inside the node, got {self.pid_file!r}")
        if self.process is not None:
            try:
                re.compile(self.process)
            except re.error as e:
                raise ValueError(f"process is not a regular expression: {e}") from None
        return self


class Group(Model):
    """A resource group: service IP + filesystem on a shared disk + application.

    ``disk`` None: no shared disk; the application keeps its data on the node it runs on
    (a keepalived group), so what it acknowledged before a failover stays behind.
    """

    name: str = Field(pattern=NAME)
    service_ip: ipaddress.IPv4Address
    network: str
    disk: str | None = None
    mount: str | None = None
    application: Application = Application()
    nodes: list[str] = Field(min_length=1)
    policy: Literal["cascading", "rotating"] = "cascading"
    migration_threshold: int = Field(default=1, ge=1, le=1000000)
    """Failures of a member on a node before the group leaves it; above 1 an application failure is first
    restarted in place (Pacemaker's migration-threshold)."""
    failure_timeout_s: int | None = Field(default=None, ge=1, le=86400)
    """Seconds after which a failure is forgotten (Pacemaker's failure-timeout); None: kept until cleaned up."""


class Cluster(Model):
    stack: Literal["pacemaker", "keepalived"] = "pacemaker"
    token_ms: int = Field(default=1000, ge=200, le=60000)
    token_coefficient_ms: int = Field(default=0, ge=0, le=5000)
    dc_deadtime_s: int = Field(default=2, ge=1, le=120)
    stonith: bool = True
    no_quorum_policy: Literal["stop", "ignore", "freeze", "suicide"] = "stop"
    extra_config: Path | None = None
    fencing_topology: list[str] = Field(default=["fence"], min_length=1, max_length=2)
    """The fence devices in level order (Pacemaker's fencing-topology, one device per level): when
    level 1 fails to fence a node, level 2 is tried. The embedded testbed makes each a device of its
    own through the fence broker, so that one level can be broken (`fence_fail --device`) alone."""
    pacemaker_env: dict[str, str] = Field(default_factory=dict)
    """pacemakerd's environment on the embedded testbed's nodes, as /etc/sysconfig/pacemaker sets it on a
    packaged node (e.g. ``PCMK_fail_fast: "yes"``: a subdaemon's death panics the node). Names PCMK_*."""
    corosync: Corosync = Corosync()
    """corosync.conf options beyond the token (the embedded and VM testbeds, whose corosync.conf fallover writes)."""
    recheck_s: int = Field(default=5, ge=1, le=900)
    """cluster-recheck-interval (a cluster fallover builds): Pacemaker's failsafe for an event its scheduler
    missed, and one is missed. When a node's controller dies, the DC's scheduler may read a CIB that has not
    yet recorded it offline (the write goes round the cluster, the query is answered at once;
    harness/audits/pcmk_races.py), plans nothing, and the ``crmd=offline`` that lands after triggers no new
    run: the node stays unclean and unfenced until the recheck (pacemaker_kill-node1, 2026-11-30: 25 s and
    no fence with the 1 min default). An empty run costs a few ms natively, 0.1-0.3 s on a TCG guest."""
    fence_timeout_s: int = Field(default=15, ge=2, le=300)
    """stonith-timeout: how long a fence action may take before the cluster counts it failed (a hung
    fence device is given up after this; Pacemaker's default of 60 s would make every such case a minute)."""

    @field_validator("pacemaker_env")
    @classmethod
    def _env(cls, v: dict[str, str]) -> dict[str, str]:
        for name, value in v.items():
            if not re.match(r"^PCMK_[A-Za-z_]{1,40}$", name):
                raise ValueError(f"{name!r}: a Pacemaker environment variable is PCMK_ and letters or '_'")
            if not re.match(r"^[A-Za-z0-9_.,:/+-]{0,200}$", value):
                raise ValueError(f"{name}: {value!r} holds characters a shell would read (letters, digits, _.,:/+-)")
        return v

    @field_validator("fencing_topology")
    @classmethod
    def _devices(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.match(r"^[a-z][a-z0-9-]{0,15}$", name):
                raise ValueError(f"device {name!r}: lower case letters, digits and '-', at most 16 characters")
        if len(set(v)) != len(v):
            raise ValueError("a device may be one level only")
        return v


class Notification(Model):
    """Where the cluster's alert hook writes events; relative to the testbed state directory."""

    log: str = "notifications.log"


class Sla(Model):
    max_detection_s: float = Field(default=5.0, gt=0)
    max_notification_s: float = Field(default=10.0, gt=0)
    max_fallover_s: float = Field(default=15.0, gt=0)
    max_outage_s: float = Field(default=15.0, gt=0)
    max_recovery_s: float = Field(default=30.0, gt=0)
    max_backup_s: float = Field(default=60.0, gt=0)
    """`fallover backup`: start → the data copied (under a filesystem freeze) and the configuration saved."""
    max_restore_s: float = Field(default=120.0, gt=0)
    """RTO: `fallover restore` start → the configuration back, the data back and the service answering."""
    max_rpo_s: float = Field(default=10.0, gt=0)
    """RPO: the data-loss window, from the oldest acknowledged write a restore did not bring back to the
    moment the data was lost (suites/backup loses it ~3 s after the backup: more means the backup missed data)."""


class Client(Model):
    name: str = Field(default="client", pattern=NAME)
    network: str = "service"


class Vagrant(Model):
    """The VM testbed (`provider: vagrant`): libvirt VMs booted by vagrant inside a lab network namespace."""

    memory_mb: int = Field(default=1024, ge=512, le=65536)
    cpus: int = Field(default=1, ge=1, le=64)
    accel: Literal["auto", "kvm", "tcg"] = "auto"
    """`auto`: KVM where real hardware virtualisation works (vmx/svm and /dev/kvm), else qemu's TCG."""
    tb_cache_mb: int = Field(default=256, ge=32, le=4096)
    """TCG's translation cache per VM (libvirt's default 1 GiB becomes resident)."""
    mgmt_subnet: ipaddress.IPv4Network = ipaddress.IPv4Network("192.168.123.0/24")
    """The management network (libvirt, DHCP, no forwarding): vagrant's and fallover's SSH, never faulted."""
    bridges: dict[str, str] = {}
    """network → an existing bridge of the host (a real KVM host); the lab then runs in the host's
    network namespace. Default: fallover makes each network's bridge inside the lab namespace."""
    box: str | None = None
    """A box vagrant already knows (e.g. a published one) instead of the box `fallover box build` makes."""
    disk_pull: Literal["path", "device"] = "path"
    """`path`: `disk_pull` drops the nodes' iSCSI traffic to the portal in the lab (a SAN path loss; EIO after
    the initiators' timeouts, ~20 s); `device`: the guests' SCSI devices set offline (instant EIO)."""

    @field_validator("mgmt_subnet")
    @classmethod
    def _private_mgmt(cls, v: ipaddress.IPv4Network) -> ipaddress.IPv4Network:
        return _private_subnet(v, 24)


class Topology(Model):
    """A whole declared cluster. Load it with :func:`load_topology`."""

    name: str = Field(pattern=r"^[a-z][a-z0-9-]{0,15}$")
    provider: Literal["local", "ssh", "vagrant"] = "local"
    cluster: Cluster = Cluster()
    nodes: list[Node] = Field(min_length=2)
    networks: list[Network] = Field(min_length=1)
    disks: list[Disk] = []
    groups: list[Group] = []
    notification: Notification = Notification()
    sla: Sla = Sla()
    client: Client = Client()
    expectations: dict[str, Literal["fallover", "stay", "outage"]] = {}
    """Declared outcome of faults whose correct result depends on configuration: keys are a fault
    name (`network_down_global`) or a fault and target (`partition:node1`)."""
    ssh: SshInventory | None = None
    """How to reach each node over SSH and power it off out of band (`provider: ssh`)."""
    vagrant: Vagrant | None = None
    """The VMs' size, accelerator and management network (`provider: vagrant`; defaults when omitted)."""
    source: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="after")
    def _references(self) -> Topology:
        nodes = [n.name for n in self.nodes]
        if (self.provider == "ssh") != (self.ssh is not None):
            raise ValueError("ssh: required with provider ssh (and only there)" if self.ssh is None
                             else "provider: an ssh inventory needs provider: ssh")
        if not self.built_by_fallover and self.cluster.corosync != Corosync():
            raise ValueError("cluster.corosync: fallover does not write the corosync.conf of a cluster it did not "
                             "build")
        if not self.built_by_fallover and "recheck_s" in self.cluster.model_fields_set:
            raise ValueError("cluster.recheck_s: fallover does not write the CIB of a cluster it did not build")
        if self.ssh is not None:
            self.ssh.check_against(nodes, [n.name for n in self.networks], [d.name for d in self.disks],
                                   [n.subnet for n in self.networks])
        nets = {n.name: n for n in self.networks}
        if self.vagrant is not None:
            if self.provider != "vagrant":
                raise ValueError("vagrant: only with provider: vagrant")
            for net in self.vagrant.bridges:
                if net not in nets:
                    raise ValueError(f"vagrant.bridges: unknown network {net!r}")
            if self.vagrant.disk_pull == "path" and len(self.disks) > 1:
                raise ValueError("vagrant.disk_pull: 'path' drops a node's whole iSCSI path, every disk behind the "
                                 "portal at once; with more than one disk use 'device'")
            for n in self.networks:
                if n.subnet.overlaps(self.vagrant.mgmt_subnet):
                    raise ValueError(f"vagrant.mgmt_subnet: overlaps network {n.name} ({n.subnet})")
        for kind, names in (("nodes", nodes), ("networks", list(nets)), ("disks", [d.name for d in self.disks]),
                            ("groups", [g.name for g in self.groups])):
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"{kind}: duplicate name {sorted(dup)[0]!r}")
        if len(nodes) > 9:
            raise ValueError("nodes: at most 9 nodes on one testbed")
        if not any(n.heartbeat for n in self.networks):
            raise ValueError("networks: at least one network must carry heartbeat")
        if self.client.network not in nets:
            raise ValueError(f"client.network: unknown network {self.client.network!r}")
        subnets = [n.subnet for n in self.networks]
        for i, a in enumerate(subnets):
            for b in subnets[i + 1:]:
                if a.overlaps(b):
                    raise ValueError(f"networks: subnets {a} and {b} overlap")
        for i, g in enumerate(self.groups):
            where = f"groups[{i}]"
            if g.network not in nets:
                raise ValueError(f"{where}.network: unknown network {g.network!r}")
            if g.service_ip not in nets[g.network].subnet:
                raise ValueError(f"{where}.service_ip: {g.service_ip} is not in {nets[g.network].subnet}")
            if g.service_ip in self.reserved_addresses(g.network):
                raise ValueError(f"{where}.service_ip: {g.service_ip} is a node's or the client's address")
            if g.disk is not None and g.disk not in {d.name for d in self.disks}:
                raise ValueError(f"{where}.disk: unknown disk {g.disk!r}")
            for member in g.nodes:
                if member not in nodes:
                    raise ValueError(f"{where}.nodes: unknown node {member!r}")
        return self

    # -- derived addressing: node i gets .1i, the client .50 on every network --------------

    def node_index(self, node: str) -> int:
        return [n.name for n in self.nodes].index(node) + 1

    def address(self, node: str, network: str) -> ipaddress.IPv4Address:
        net = self.network(network).subnet
        host = 50 if node == self.client.name else 10 + self.node_index(node)
        return net.network_address + host

    def reserved_addresses(self, network: str) -> set[ipaddress.IPv4Address]:
        net = self.network(network).subnet
        return {net.network_address + 50} | {net.network_address + 10 + i for i in range(1, len(self.nodes) + 1)}

    def network(self, name: str) -> Network:
        for n in self.networks:
            if n.name == name:
                return n
        raise KeyError(name)

    def group(self, name: str) -> Group:
        for g in self.groups:
            if g.name == name:
                return g
        raise KeyError(name)

    @property
    def built_by_fallover(self) -> bool:
        """A cluster fallover builds itself (embedded, an SSH lab, its VMs); faults on any other cluster, a
        user's own, need --allow-disruptive."""
        return self.provider in ("local", "vagrant") or (self.ssh is not None and self.ssh.lab is not None)

    @property
    def node_names(self) -> list[str]:
        return [n.name for n in self.nodes]

    @property
    def service_network(self) -> Network:
        return next((n for n in self.networks if n.role == "service"), self.networks[0])


def _field_path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
    msg = re.sub(r"^(Value error|Assertion failed), ", "", err["msg"])
    if err["type"] == "extra_forbidden":
        msg = "unknown field"
    path = _field_path(loc)
    # model-level validators report their own field path at the start of the message
    return f"{path}: {msg}" if path else msg


def load_topology(path: str | Path) -> Topology:
    """Read and validate a topology file; any problem is one TopologyError line naming file and field."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise TopologyError(f"{path}: no such file") from None
    except (OSError, yaml.YAMLError) as e:
        raise TopologyError(f"{path}: cannot read: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise TopologyError(f"{path}: expected a mapping at the top level")
    try:
        topo = Topology.model_validate({**raw, "source": path.resolve()})
    except ValidationError as e:
        raise TopologyError(f"{path}: {_first_error(e)}") from None
    extra = topo.cluster.extra_config
    if extra is not None:
        resolved = extra if extra.is_absolute() else (path.parent / extra).resolve()
        if not resolved.is_file():
            raise TopologyError(f"{path}: cluster.extra_config: no such file {resolved}")
        topo = topo.model_copy(update={"cluster": topo.cluster.model_copy(update={"extra_config": resolved})})
    return topo


DEFAULT_TESTBED = Path(__file__).resolve().parent.parent / "testbeds" / "local.yaml"
