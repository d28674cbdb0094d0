"""What a fault is: a named failure with precheck(), inject(), verify() and heal(), its targets and undo data."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from harness.errors import FalloverError, UsageError
from harness.testbed.base import Testbed
from harness.topology import Topology
from harness.wait import poll

if TYPE_CHECKING:
    from harness.drivers.state import ClusterState

T = TypeVar("T")


def one_line(text: str) -> str:
    """Errors end up as one line of a report or of the CLI: command output must not break it."""
    return " ".join(text.split())


class FaultNotApplicable(UsageError):
    """precheck: the fault cannot take effect on the testbed as it is now (a powered-off node, a
    detached disk). Raised before anything is journaled or touched, hence a UsageError: exit 2."""

    def __init__(self, fault: str, target: str, why: str) -> None:
        self.fault, self.target, self.why = fault, target, why
        super().__init__(one_line(f"{fault} on {target}: {why}"))


class FaultNotInEffect(FalloverError):
    """verify: the fault was injected but its effect is not there; the nemesis has undone it again."""

    def __init__(self, fault: str, target: str, observed: str) -> None:
        self.fault, self.target, self.observed = fault, target, observed
        super().__init__(one_line(f"{fault} on {target} did not take effect: {observed}"))


SETTLE_S = 5.0  # how long a verification waits for an effect to show (tests shorten it)


def mark(undo: dict[str, Any], label: str, ago: float = 0.0, **data: Any) -> None:
    """Note a milestone of a long fault (every node stopped, the first start) for the timeline,
    `ago` seconds before now (a node that did the thing says how long ago).

    The fault has no timeline of its own; the nemesis turns these into test.mark events once
    inject returns, stamped when they happened, so a checker can measure from them.
    """
    undo.setdefault("marks", []).append([label, time.monotonic() - max(0.0, ago), data])


def look_until(look: Callable[[], T], good: Callable[[T], bool], timeout: float | None = None,
               interval: float = 0.05) -> T:
    """Look again until ``good`` or ``timeout``; return the last look, for the caller to judge and quote.

    Some effects take a moment to show (a cgroup goes FREEZING → FROZEN, a SIGKILLed process
    is reaped, a detached child execs): a verification waits for them, but never for long.
    The loop is `wait.poll`, wait_until's own; not wait_until itself, because a look that stays
    bad is an answer here (the caller quotes it), not a WaitTimeout, a good look may be falsy
    (`c is False`), and these looks are part of the fault's own step, not a wait of the runbook.
    """
    return poll(look, good, timeout=SETTLE_S if timeout is None else timeout, interval=interval)[0]

TARGET_KINDS = ("node", "adapter", "network", "disk", "group", "group_node", "partition", "cluster")


@dataclass(frozen=True)
class Target:
    """Where a fault strikes, plus its parameters. Only the fields a fault needs are set."""

    node: str | None = None
    network: str | None = None
    disk: str | None = None
    group: str | None = None
    nodes: tuple[str, ...] = ()
    rate: float | None = None
    delay_ms: float | None = None
    jitter_ms: float | None = None
    device: str | None = None  # a fence device (fence faults): only that level breaks; None: every level

    def need(self, key: str) -> str:
        """A field `Fault.validate` guarantees for the fault's target kind, typed as present."""
        value = getattr(self, key)
        if not value:
            raise UsageError(f"target {self.label} has no {key}")
        return str(value)

    @property
    def label(self) -> str:
        """Readable id, e.g. `node1-service` or `node2+node3`."""
        parts = [p for p in (self.node, self.network, self.disk, self.group, self.device) if p]
        if self.nodes:
            parts.append("+".join(self.nodes))
        return "-".join(parts) or "cluster"

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["nodes"] = list(self.nodes)
        return {k: v for k, v in d.items() if v not in (None, [], ())}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Target:
        return cls(**{**d, "nodes": tuple(d.get("nodes", ()))})


@dataclass(frozen=True)
class Fault:
    """One entry of the catalogue. Subclasses implement `inject` (fills undo data), `verify` and `heal`.

    The nemesis calls, in order: `precheck` (before anything is journaled: refuse a fault that
    cannot take effect), `inject`, `verify` (the effect is observable, else the fault is healed
    and the error raised: a fault that silently did nothing would make every verdict about it a
    lie), and later `heal`.

    `heal` must work from the journal alone, in a new process after a crash, and must be
    idempotent: healing a fault whose effect already vanished (a fenced node took its rules
    with it) is not an error. A heal that cannot undo what is still there raises.
    """

    name: ClassVar[str]
    family: ClassVar[str]
    event: ClassVar[str]          # the classic cluster event it exercises
    target_kind: ClassVar[str]    # one of TARGET_KINDS
    destructive: ClassVar[bool] = True
    summary: ClassVar[str] = ""
    mechanism: ClassVar[str] = ""  # how, on the embedded testbed
    needs: ClassVar[tuple[str, ...]] = ()  # capabilities of the testbed (CAPABILITIES) and the stack it needs
    defaults: ClassVar[dict[str, float]] = {}
    suite: ClassVar[str | None] = None
    """The suite whose plan holds it: None for the family suites (fallover, recovery, maintenance);
    "cluster" for whole-cluster operations, daemon kills and partition shapes, which take too long
    for the daily check (suites/cluster); "slow" for what waits out a cluster timeout (a hung fence
    device, a hung disk: suites/slow)."""
    expectation: ClassVar[dict[str, Any]] = {}
    """Limits the checkers read for this fault instead of the SLA's (e.g. max_outage_s 0: no outage)."""
    extra_asserted: ClassVar[tuple[str, ...]] = ()
    """Verdicts its cases assert beside those of the expected outcome (e.g. `starts`)."""
    params: dict[str, float] = field(default_factory=dict)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]] | None:
        """(outcome, reason, nodes that cannot take over) for one group, when the fault decides it itself.

        None: harness.plan derives it (the faults of the first catalogue). Newer faults keep their
        expected outcome beside their mechanism.
        """
        return None

    def expect_seen(self, topology: Topology, target: Target, group: str, home: str,
                    seen: ClusterState | None) -> tuple[str, str, set[str]] | None:
        """`expect`, given the cluster as the runner saw it before the case (``seen``: its DC, the version
        the DC runs), for the faults whose outcome depends on them; None while only planning."""
        return self.expect(topology, target, group, home)

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Break something. Record in ``undo`` (journaled again afterwards) what heal needs.

        ``undo`` arrives holding ``id`` (the journal entry id, for naming rules and files),
        and is already on disk: a crash mid-inject leaves enough to heal from the target.
        """
        raise NotImplementedError

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Observe the effect right after `inject`; raise `not_in_effect(...)` if it is not there.

        The default checks nothing: every fault of the catalogue is expected to override it
        (tests/unit/test_fault_checks.py lists the ones that do not yet).
        """

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        raise NotImplementedError

    def precheck(self, testbed: Testbed, target: Target) -> None:
        """Refuse (`refused(...)`) a fault that cannot take effect now; must touch nothing."""

    def needs_for(self, target: Target, topology: Topology) -> tuple[str, ...]:
        """The capabilities this case needs (`needs`, or more for some targets): the plan checks them."""
        return self.needs

    # -- helpers for precheck and verify -----------------------------------------------------------

    def refused(self, target: Target, why: str) -> FaultNotApplicable:
        return FaultNotApplicable(self.name, target.label, why)

    def not_in_effect(self, target: Target, observed: str) -> FaultNotInEffect:
        return FaultNotInEffect(self.name, target.label, observed)

    def require_running(self, testbed: Testbed, target: Target, node: str, consequence: str) -> None:
        """Refuse when ``node`` is powered off; ``consequence`` says why that matters (one clause)."""
        if not testbed.running(node):
            raise self.refused(target, f"{node} is powered off: {consequence}")

    # -- targets ----------------------------------------------------------------------------

    def targets(self, topology: Topology) -> list[Target]:
        """Every target this fault applies to in a topology: the rows of a test plan."""
        nodes, nets = topology.node_names, [n.name for n in topology.networks]
        match self.target_kind:
            case "node":
                return [Target(node=n) for n in nodes]
            case "adapter":
                return [Target(node=n, network=net) for n in nodes for net in nets]
            case "network":
                return [Target(network=net) for net in nets]
            case "disk":
                return [Target(disk=d.name) for d in topology.disks]
            case "group":
                return [Target(group=g.name) for g in topology.groups]
            case "group_node":
                return [Target(group=g.name, node=n) for g in topology.groups for n in g.nodes]
            case "partition":
                return [Target(nodes=(n,)) for n in nodes]
            case "cluster":
                return [Target()]
        raise ValueError(self.target_kind)

    def validate(self, topology: Topology, target: Target) -> Target:
        """Refuse targets outside the topology (one line naming the bad value); fill defaults."""
        need = {"node": ["node"], "adapter": ["node", "network"], "network": ["network"], "disk": ["disk"],
                "group": ["group"], "group_node": ["group", "node"], "partition": ["nodes"],
                "cluster": []}[self.target_kind]
        choices = {"node": topology.node_names, "network": [n.name for n in topology.networks],
                   "disk": [d.name for d in topology.disks], "group": [g.name for g in topology.groups]}
        for key in need:
            if not getattr(target, key):
                flag = "--node" if key == "nodes" else f"--{key}"
                raise UsageError(f"{self.name} needs {flag} ({self.target_kind} fault)")
        for key in ("node", "network", "disk", "group"):
            value = getattr(target, key)
            if value is not None and value not in choices[key]:
                raise UsageError(f"{self.name}: unknown {key} {value!r}; the topology has "
                                 f"{', '.join(choices[key]) or 'none'}")
        for n in target.nodes:
            if n not in topology.node_names:
                raise UsageError(f"{self.name}: unknown node {n!r}; the topology has {', '.join(topology.node_names)}")
        if target.nodes and len(set(target.nodes)) >= len(topology.node_names):
            raise UsageError(f"{self.name}: the cut-off side must leave at least one node on the other side")
        devices = topology.cluster.fencing_topology
        if target.device is not None and target.device not in devices:
            raise UsageError(f"{self.name}: unknown fence device {target.device!r}; the topology has "
                             f"{', '.join(devices)}")
        if target.rate is not None and not 0 < target.rate <= 1:
            raise UsageError(f"{self.name}: --rate must be in (0, 1], got {target.rate}")
        filled: dict[str, Any] = {k: v for k, v in self.defaults.items() if getattr(target, k) is None}
        return dataclasses.replace(target, **filled) if filled else target
