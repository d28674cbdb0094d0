"""The provider interface: every capability that faults, load, recovery and audits use of a testbed.

A provider is the embedded namespace cluster (`local`), a cluster reached over SSH (`ssh`), or
VMs (`vagrant`). Faults are written against this interface only, so one catalogue runs on all
of them. A provider that cannot do something says so in `capabilities()` with a reason, and the
test plan leaves out (and names) every fault that needs it: never a silent skip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Protocol

from harness.topology import Topology
from harness.transport.base import Transport

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default progress sink."""


@dataclass(frozen=True)
class Pace:
    """How often the harness may ask a testbed's nodes about the cluster, and how long an answer may take.

    The defaults are the embedded testbed's, where crm_mon answers in tens of milliseconds. A testbed whose
    nodes answer far slower says so (its ``pace`` attribute): on emulated VMs one crm_mon costs a guest
    seconds of its CPU, and polling at 4 Hz kept the guest the harness asked busy with the asking.
    """

    poll_s: float = 0.25
    """Between two looks at the cluster (the poller, settle waits)."""
    query_timeout_s: float = 8.0
    """One read-only query (crm_mon, the settle query)."""
    admin_timeout_s: float = 30.0
    """One command that changes the cluster (cleanup, move)."""
    probe_hz: float = 100.0
    """How often the client's probe asks the service (harness.probe): its resolution of an outage."""
    probe_timeout_s: float = 0.5
    """How long one probe answer may take before the service counts as not answering."""
    verify_concurrency: int = 16
    """Readers at once when the acknowledged writes are read back (harness.verify)."""
    verify_timeout_s: float = 2.0
    """How long one read-back may take (it is retried, and a read never answered is no lost write)."""
    load_users: int = 10
    """Locust users when a run names none (`--users`; each makes ~20 PUT+GET cycles a second). A testbed whose
    service would fall behind that load measures its own capacity, not the cluster's recovery."""


def pace_of(testbed: object) -> Pace:
    """The testbed's declared pace, or the embedded testbed's."""
    pace = getattr(testbed, "pace", None)
    return pace if isinstance(pace, Pace) else Pace()


CAPABILITIES: dict[str, str] = {
    "power": "power a node off and on (hard, no clean shutdown)",
    "freeze": "hang a node: stop every process of it, and let it go again",
    "spawn": "start a detached process in a node (a CPU hog)",
    "adapter": "pull one node's cable on one network, and see its carrier",
    "network": "fail a whole network for every node",
    "rules": "drop traffic between node sets, a share of an adapter's packets, or a node's heartbeat",
    "impair": "delay or corrupt an adapter's packets",
    "disk": "pull a shared disk (every I/O fails) and plug it back",
    "notifications": "see the cluster's notifications and fences (what its alert agent records)",
    "disk_modes": "fail only a shared disk's reads or only its writes, or hang its I/O",
    "fence_device": "make a fence device fail or hang its power actions, and mend it",
}
"""Every capability a provider may have, with what it means (the plan quotes the reason it lacks one)."""

Capabilities = Mapping[str, str | None]
"""capability → None when the testbed has it, else why not (one clause, e.g. "the kernel has no netem")."""


HEARTBEAT_PORTS = "5405-5412"
"""corosync's UDP ports (knet: 5405 for link 0, one port more per further link): what `heartbeat` drops."""


@dataclass(frozen=True)
class Rule:
    """Traffic a network fault drops, by meaning rather than by mechanism (a switch port, a node's nft).

    ``partition``: everything between ``nodes`` and the rest of the cluster, on every network;
    ``loss``: a share ``rate`` of ``node``'s packets on ``network``, both directions;
    ``heartbeat``: the cluster's heartbeat traffic (corosync) of ``node``, on every network;
    ``grudge``: per receiving node, the nodes whose packets it no longer gets, on every network
    (Jepsen's grudge: one-way cuts, bridges).
    """

    kind: Literal["partition", "loss", "heartbeat", "grudge"]
    nodes: tuple[str, ...] = ()
    node: str | None = None
    network: str | None = None
    rate: float | None = None
    grudge: tuple[tuple[str, tuple[str, ...]], ...] = ()


@dataclass(frozen=True)
class Impairment:
    """Each packet of ``node``'s adapter on ``network``, both directions, delayed or corrupted."""

    mode: Literal["delay", "corrupt"]
    node: str
    network: str
    delay_ms: float | None = None
    jitter_ms: float | None = None
    rate: float | None = None


@dataclass(frozen=True)
class LogFile:
    """A log of a node that the audit reads: the path inside the node, and whether it must exist."""

    node: str
    path: str
    required: bool = True


class Testbed(Protocol):
    topology: Topology

    # -- lifecycle ------------------------------------------------------------------------------

    def up(self, progress: Progress = quiet, placement: bool = True) -> None:
        """Bring the cluster up (idempotent: heals a crashed run's journal, powers fenced nodes on)
        and wait until it has settled; ``placement=False`` accepts groups on any node."""

    def down(self, progress: Progress = quiet) -> list[str]:
        """Remove everything the testbed made; returns a line per thing removed."""

    def leftovers(self) -> list[str]:
        """Anything of this testbed still on the machine (empty after a clean `down`)."""

    def capabilities(self) -> Capabilities:
        """Every name of `CAPABILITIES` → None (has it) or why not; decided without touching anything."""

    @property
    def journal_path(self) -> Path:
        """Where the fault journal lives, on the harness's side (`fallover heal` replays it)."""

    # -- commands -------------------------------------------------------------------------------

    def node(self, name: str) -> Transport:
        """Run commands on a cluster node."""

    def client(self) -> Transport:
        """Run commands on the client host (load, probe)."""

    def spawn(self, node: str, argv: list[str], *, pidfile: str) -> None:
        """Start a detached process in a node; ``pidfile`` (inside the node) receives its PID."""

    # -- power and hang -------------------------------------------------------------------------

    def running(self, node: str) -> bool:
        """Is the node powered on?"""

    def power_off(self, node: str) -> None: ...

    def power_on(self, node: str) -> None: ...

    def start_services(self, node: str) -> None:
        """Start the cluster software on a powered-on node."""

    def freeze(self, node: str) -> None: ...

    def thaw(self, node: str) -> None:
        """Undo `freeze`; a no-op on a node that is not frozen."""

    def freezer_state(self, node: str) -> str:
        """FROZEN, FREEZING, THAWED, or ABSENT (the node was never started, or is powered off)."""

    # -- network --------------------------------------------------------------------------------

    def carrier(self, node: str, network: str) -> bool | None:
        """Does the node itself see a carrier on its adapter on ``network``? None: it is powered off."""

    def set_adapter(self, node: str, network: str, up: bool) -> bool:
        """Pull (or plug back) one cable; False when the adapter is gone (the node was powered off)."""

    def network_up(self, network: str) -> bool | None:
        """Is the whole network up? None when the testbed has no such network (it is down)."""

    def set_network(self, network: str, up: bool) -> bool:
        """Fail (or restore) a whole network; False when it does not exist."""

    def add_rule(self, rule_id: str, rule: Rule) -> int:
        """Install a `Rule` under ``rule_id``; returns how many rules the mechanism holds for it."""

    def rule_in_effect_since(self, rule_id: str) -> float | None:
        """The monotonic time since which every drop of ``rule_id`` is in place, when installing it took
        long enough to matter (rules on several nodes, each over SSH); None: since `add_rule` returned."""

    def rule_count(self, rule_id: str) -> int | None:
        """How many rules ``rule_id`` holds as the kernel lists them; None when it is not installed."""

    def remove_rule(self, rule_id: str) -> None:
        """Remove ``rule_id`` (idempotent); raises if it is still in place afterwards."""

    def impair(self, impairment_id: str, impairment: Impairment) -> dict[str, Any]:
        """Start delaying or corrupting; returns what `unimpair` needs (journaled by the caller first)."""

    def impairment_missing(self, undo: dict[str, Any]) -> str | None:
        """None when the impairment is in effect, else what is missing (one clause)."""

    def unimpair(self, undo: dict[str, Any]) -> None:
        """Stop it (idempotent); raises if something of it is still in place."""

    # -- shared disk ----------------------------------------------------------------------------

    def disk_mode(self, disk: str) -> str | None:
        """What the disk does now (`ok`, `eio`, …); None when it is not attached."""

    def set_disk_mode(self, disk: str, mode: str) -> None:
        """`eio` pulls the disk (every I/O fails), `ok` plugs it back (a no-op when it is gone)."""

    def disk_read_error(self, disk: str, timeout: float = 10.0) -> str | None:
        """Read one block of the disk past every cache: None when it reads, else the error seen (a read that
        gets no answer within ``timeout`` says so: a hung disk)."""

    def disk_write_error(self, disk: str) -> str | None:
        """Write one block of the disk past every cache, where no filesystem keeps data: None when it
        writes, else the error seen (`disk_modes`)."""

    # -- fence devices (`fence_device`) ---------------------------------------------------------

    def fence_device_mode(self, device: str) -> str | None:
        """`ok`, `fail` or `hang`: what the fence device does with power actions now; None when it is not there."""

    def set_fence_device(self, device: str, mode: str) -> None:
        """Break a fence device (`fail`, `hang`) or mend it (`ok`, a no-op when the testbed is gone)."""

    def fence_check(self, device: str, node: str, timeout: float = 3.0) -> str | None:
        """Ask the device, the way the cluster's fencer does, for a harmless power action on ``node``:
        None when it answers OK, else what came back (an error, or no answer within ``timeout``)."""

    def mountpoint(self, group: str) -> str:
        """Where the group's filesystem is mounted inside the nodes."""

    # -- evidence -------------------------------------------------------------------------------

    def log_files(self) -> list[LogFile]:
        """The cluster logs of every node, for the log audit."""

    def log_size(self, log: LogFile) -> tuple[int, int]:
        """(file identity, size) now; (0, 0) when it is missing or cannot be read (the audit's mark)."""

    def read_log(self, log: LogFile, start: int) -> tuple[int, bytes]:
        """(file identity, bytes from ``start``, or all of it when the file is shorter: it was replaced);
        identity changes when the file is replaced. FileNotFoundError when the file is missing,
        OSError when it cannot be read."""

    def event_logs(self) -> dict[str, Path]:
        """`notifications` (the alert hook's lines) and `fences` (fence events), on the harness's side."""

    def mounts(self) -> dict[str, list[str]] | None:
        """Where each shared disk is mounted: {disk: [nodes]}; None when the testbed cannot tell."""


setattr(Testbed, "__test__", False)  # a name pytest would otherwise try to collect (not a protocol member)


def lacking(testbed: Testbed, needs: tuple[str, ...]) -> str | None:
    """Why ``testbed`` cannot do what ``needs`` names (the first missing capability), or None."""
    caps = testbed.capabilities()
    for need in needs:
        why = caps.get(need, f"the testbed does not declare `{need}`")
        if why is not None:
            return f"needs {need} ({CAPABILITIES.get(need, need)}), which this testbed lacks: {why}"
    return None
