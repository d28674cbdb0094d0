"""The test plan: every fault × every target of the topology, with the outcome a correct cluster gives.

Like an automated cluster test plan: each case names what is done and what must follow
(the group falls over to a named node, stays where it is, or is unavailable until repaired),
so a test can say what was expected as well as what was measured.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from harness.faults import FAULTS, Target
from harness.faults.app import locate_problem
from harness.faults.partitions import quorum_outcome, two_way_splits
from harness.topology import Topology

if TYPE_CHECKING:
    from harness.drivers.state import ClusterState

Outcome = Literal["fallover", "stay", "outage", "planned", "restart"]

# Faults that take a node out of the cluster (it is lost, then fenced).
NODE_LOSS = {"node_power_off", "node_stop", "node_hang", "corosync_kill", "pacemaker_kill", "heartbeat_loss"}
# Faults that kill or stop the application where it runs (migration-threshold=1: it moves on).
APP_LOSS = {"app_kill", "app_hang"}
# Faults a cluster must ride out without moving anything.
RIDE_OUT = {"cpu_overload", "packet_loss", "packet_delay", "packet_corrupt", "disk_full"}
# The shared disk failing for every node at once (a single disk): the group cannot run anywhere until repaired.
DISK_LOSS = {"disk_pull", "disk_read_errors", "disk_write_errors", "disk_hang"}
# The fence device broken, then the node powered off: what the cluster may do depends on the fencing levels.
FENCE_LOSS = {"fence_fail", "fence_hang"}


@dataclass(frozen=True)
class Expected:
    """What a correct cluster does with one group when the fault strikes."""

    group: str
    outcome: Outcome
    home: str                   # where the group runs when the fault is injected
    takeover: str | None = None  # where it must answer from after a fallover
    why: str = ""
    limits: dict[str, float] = field(default_factory=dict)  # SLA limits this case widens, e.g. max_detection_s

    def describe(self) -> str:
        if self.outcome == "fallover":
            return f"{self.group} falls over from {self.home} to {self.takeover} ({self.why})"
        if self.outcome == "stay":
            return f"{self.group} stays on {self.home} ({self.why})"
        if self.outcome == "planned":
            return f"{self.group} keeps serving within the outage SLA ({self.why})"
        if self.outcome == "restart":
            return f"{self.group} stops with the cluster and starts once, on {self.home}, when quorum returns ({self.why})"
        return f"{self.group} is unavailable until the fault is repaired ({self.why})"


def spare_nodes(topology: Topology, case: Case, expected: Expected) -> list[str]:
    """The nodes a case neither strikes nor times: not its target, not the group's home or takeover."""
    busy = {case.target.node, *case.target.nodes, expected.home, expected.takeover}
    return [n for n in topology.node_names if n not in busy]


@dataclass(frozen=True)
class Case:
    fault: str
    target: Target
    trigger: str | None = None  # a second fault that makes this one matter (start failure needs a takeover)
    tags: tuple[str, ...] = field(default=())

    @property
    def id(self) -> str:
        return f"{self.fault}-{self.target.label}"


@dataclass(frozen=True)
class Excluded:
    """A case the topology declares but the harness has no way to run, and why (one line)."""

    case: Case
    why: str

    def __str__(self) -> str:
        return f"{self.case.id} left out of the plan: {self.why}"


class PlanExclusion(UserWarning):
    """Raised as a warning by `plan`, so that pytest prints every left-out case in its summary."""


def capabilities_of(topology: Topology) -> dict[str, str | None]:
    """What the topology's testbed and cluster stack can do: capability → None, or why not.

    Decided from the provider and the driver without bringing anything up (a provider answers
    from what it knows, or says why it cannot tell).
    """
    from harness.drivers import open_driver
    from harness.testbed import open_testbed

    testbed = open_testbed(topology)
    return {**testbed.capabilities(), **open_driver(testbed).capabilities()}


def plan(topology: Topology, faults: list[str] | None = None,
         capabilities: Mapping[str, str | None] | None = None, *, every_split: bool = False) -> list[Case]:
    """Every applicable (fault, target) of the topology, in catalogue order.

    A case with no mechanism on this topology or testbed (see `excluded`) is left out, with a
    warning that names it and says why. ``every_split`` (random-scenario mode) plans `partition`
    over every two-way split of the nodes, not only one node against the rest.
    """
    cases, left_out = _walk(topology, faults, capabilities, every_split)
    for e in left_out:
        warnings.warn(PlanExclusion(str(e)), stacklevel=2)
    return cases


def excluded(topology: Topology, faults: list[str] | None = None,
             capabilities: Mapping[str, str | None] | None = None) -> list[Excluded]:
    """The cases `plan` leaves out, each with its reason."""
    return _walk(topology, faults, capabilities)[1]


def _walk(topology: Topology, faults: list[str] | None,
          capabilities: Mapping[str, str | None] | None,
          every_split: bool = False) -> tuple[list[Case], list[Excluded]]:
    caps = capabilities_of(topology) if capabilities is None else capabilities
    cases, left_out = [], []
    for name, fault in FAULTS.items():
        if faults is not None and name not in faults:
            continue
        targets = fault.targets(topology)
        if every_split and name == "partition":
            targets = [Target(nodes=side) for side in two_way_splits(topology.node_names)]
        for target in targets:
            if name == "app_start_fail":
                g = topology.group(target.need("group"))
                if len(g.nodes) < 2 or target.node != g.nodes[1]:
                    continue  # only the takeover node's start failure changes anything
                trigger = "app_kill_threshold" if g.migration_threshold > 1 else "app_kill"  # what moves it
                variants = [Case(name, target, trigger=trigger)]
            elif name in FENCE_LOSS:
                variants = _fence_cases(topology, name, target)
            else:
                variants = [Case(name, target)]
            for case in variants:
                why = _lacking(caps, fault.needs_for(target, topology), case) or _no_mechanism(topology, case)
                if why:
                    left_out.append(Excluded(case, why))
                else:
                    cases.append(case)
    return cases, left_out


def _fence_cases(topology: Topology, name: str, target: Target) -> list[Case]:
    """Fence faults on a node some group runs on first (elsewhere a lost node's fence holds nothing up): every
    level broken; and, with two levels, the first alone (the second must fence). A hang of one level only
    delays the second by the fence timeout: that case is left to `fallover inject --device`."""
    if target.node not in {g.nodes[0] for g in topology.groups}:
        return []
    cases = [Case(name, target)]
    levels = topology.cluster.fencing_topology
    if name == "fence_fail" and len(levels) > 1:
        cases.append(Case(name, replace(target, device=levels[0])))
    return cases


def _lacking(caps: Mapping[str, str | None], needs: tuple[str, ...], case: Case) -> str | None:
    """Why the testbed or the stack cannot run the fault (or its trigger): the first capability it lacks."""
    from harness.drivers.base import DRIVER_CAPABILITIES
    from harness.testbed.base import CAPABILITIES

    trigger = FAULTS[case.trigger].needs if case.trigger else ()
    for need in (*needs, *trigger):
        why = caps.get(need, "nothing declares it")
        if why is not None:
            meaning = {**CAPABILITIES, **DRIVER_CAPABILITIES}.get(need, need)
            return f"it needs {need} ({meaning}): {why}"
    return None


def _no_mechanism(topology: Topology, case: Case) -> str | None:
    """Why a case cannot be run on this topology at all (decided before anything is touched)."""
    uses = {case.fault, case.trigger} & APP_LOSS
    if not uses or case.target.group is None:
        return None
    why = locate_problem(topology.group(case.target.group).application)
    if why is None:
        return None
    via = "" if case.fault in APP_LOSS else f" (its trigger {case.trigger} cannot run)"
    return f"group {case.target.group}: {why}, so app_kill/app_hang have no process to strike{via}"


def _next(order: list[str], after: str, excluded: set[str]) -> str | None:
    """The next node in a priority list after ``after`` (wrapping), skipping excluded ones."""
    if after not in order:
        return next((n for n in order if n not in excluded), None)
    i = order.index(after)
    for n in order[i + 1:] + order[:i]:
        if n not in excluded:
            return n
    return None


def expect(topology: Topology, case: Case, home: dict[str, str], seen: ClusterState | None = None) -> list[Expected]:
    """The correct outcome for every group, given where each runs at injection (`home`) and, when the runner
    has looked, the cluster as it was then (``seen``: the DC and its version decide some daemon kills)."""
    t = case.target
    out = []
    for g in topology.groups:
        h = home.get(g.name, g.nodes[0])
        outcome, why, lost = _outcome(topology, case, g.name, h, seen)
        declared = topology.expectations.get(f"{case.fault}:{t.label}") or topology.expectations.get(case.fault)
        if declared is not None and declared != outcome:
            outcome, why = declared, f"declared in the topology's expectations ({why})"
        takeover = _next(g.nodes, h, lost | {h}) if outcome == "fallover" else None
        if outcome == "fallover" and takeover is None:
            outcome, why = "outage", f"{why}; no other node of {g.name}'s list can take it over"
        out.append(Expected(g.name, outcome, h, takeover, why, _limits(topology, case)))
    return out


def repetitions(topology: Topology, cases: list[Case]) -> set[str]:
    """Ids of the cases that repeat an earlier case's failure type on another node of the same role.

    Same fault (and trigger), same target but for its node(s), the node(s) in the same role (the
    groups that run there when the plan starts: each group's first node) and the same expected
    outcome for every group: the passive nodes' power-off, partition, link faults … are one
    failure type each. The first such case (in plan order: the lowest node) stays in the daily
    `suites/fallover`; the others are the fuller matrix, `suites/matrix`.

    >>> from harness.topology import DEFAULT_TESTBED, load_topology
    >>> topo = load_topology(DEFAULT_TESTBED)
    >>> sorted(repetitions(topo, [Case("node_power_off", Target(node=n)) for n in topo.node_names]))
    ['node_power_off-node3']
    """
    home = {g.name: g.nodes[0] for g in topology.groups}
    seen: set[tuple[object, ...]] = set()
    out: set[str] = set()
    for c in cases:
        struck = {c.target.node} if c.target.node else set(c.target.nodes)
        if not struck:
            continue  # a network, a disk, a group: one case per target is the failure type itself
        role = tuple(sorted(g.name for g in topology.groups if g.nodes[0] in struck))
        outcomes = tuple((e.group, e.outcome, e.home, e.takeover) for e in expect(topology, c, home))
        key = (c.fault, c.trigger, replace(c.target, node=None, nodes=()), len(struck), role, outcomes)
        if key in seen:
            out.add(c.id)
        seen.add(key)
    return out


def _limits(topology: Topology, case: Case) -> dict[str, float]:
    """The SLA limits a case must widen, because the cluster can only react once one of its timeouts ran out."""
    from harness.testbed.clusterconf import FS_MONITOR_INTERVAL_S, FS_MONITOR_TIMEOUT_S

    sla = topology.sla
    if case.fault == "disk_hang":  # nothing fails: the Filesystem monitor has to time out first
        wait = FS_MONITOR_INTERVAL_S + FS_MONITOR_TIMEOUT_S
        return {"max_detection_s": sla.max_detection_s + wait, "max_notification_s": sla.max_notification_s + wait}
    v = topology.vagrant
    if case.fault == "disk_pull" and v is not None and v.disk_pull == "path":
        from harness.testbed.vagrantdisk import PATH_FAIL_S  # I/O fails only once the guests' initiators time out

        return {"max_detection_s": sla.max_detection_s + PATH_FAIL_S,
                "max_notification_s": sla.max_notification_s + PATH_FAIL_S}
    if case.fault == "app_start_fail":  # two takeovers by design: onto the chosen node, where the start fails,
        # then onto the next; each is allowed the declared one (12 resource operations, 69.8 s on TCG guests)
        return {"max_fallover_s": 2 * sla.max_fallover_s, "max_outage_s": sla.max_outage_s + sla.max_fallover_s}
    if case.fault == "fence_hang" and case.target.device:  # the next level is tried once the hung one timed out
        margin = topology.cluster.fence_timeout_s * 1.2  # the fencer's margin over the device's timeout
        return {"max_fallover_s": sla.max_fallover_s + margin, "max_outage_s": sla.max_outage_s + margin}
    return {}


def _outcome(topology: Topology, case: Case, group: str, home: str,
             seen: ClusterState | None = None) -> tuple[Outcome, str, set[str]]:
    """(outcome, reason, nodes that cannot take over) for one group."""
    f, t = case.fault, case.target
    g = topology.group(group)
    decided = FAULTS[f].expect_seen(topology, t, group, home, seen)
    if decided is not None:
        return decided  # type: ignore[return-value]  # Fault.expect returns an Outcome
    if f in NODE_LOSS:
        if t.node == home:
            how = "stops its cluster services and hands its groups over" if f == "node_stop" else \
                "leaves the cluster and is fenced"
            return "fallover", f"{home} {how}", {home}
        return "stay", f"{t.node} is not the node running {group}", set()
    if f in APP_LOSS:
        if g.migration_threshold > 1:
            return "stay", (f"the application's monitor fails and it is restarted in place: migration-threshold "
                            f"{g.migration_threshold}"), set()
        return "fallover", "the application's monitor fails and it may run on a node once", {home}
    if f == "app_start_fail":
        return "fallover", f"the start fails on {t.node}, so the takeover skips it", {home, t.need("node")}
    if f in ("adapter_down", "network_down_local"):
        if t.network == g.network and t.node == home:
            return "fallover", f"{home} can no longer reach clients on {g.network}", {home}
        why = "heartbeat continues on the other network" if t.network != g.network else \
            f"{t.node} is not the node running {group}"
        return "stay", why, set()
    if f == "network_down_global":
        if t.network == g.network:
            return "outage", f"no node can reach the clients on {g.network}", set()
        return "stay", "heartbeat continues on the other network", set()
    if f == "partition":
        return quorum_outcome(topology, set(t.nodes), home)  # type: ignore[return-value]
    if f == "group_move":
        if t.node == home:
            return "stay", f"{group} already runs on {home}", set()
        return "fallover", f"a planned move to {t.node}", set(topology.node_names) - {t.need("node")}
    if f == "node_standby":
        if t.node == home:
            return "fallover", f"{home} in standby hands its groups over", {home}
        return "stay", f"{t.node} is not the node running {group}", set()
    if f == "node_maintenance":
        return "stay", "maintenance mode leaves resources running, unmanaged", set()
    if f == "rolling_restart":
        return "planned", "each node restarts in turn; groups move and come back", set()
    if f in DISK_LOSS:
        what = {"disk_pull": "loses it", "disk_read_errors": "gets read errors from it",
                "disk_write_errors": "gets write errors from it", "disk_hang": "blocks on it"}[f]
        return "outage", f"the shared disk is a single disk: every node {what}", set()
    if f in FENCE_LOSS:
        return _fence_outcome(topology, case, group, home)
    if f in ("packet_loss", "packet_delay", "packet_corrupt") and t.node == home and t.network == g.network:
        # degraded, not dead: moving away and staying are both right; what clients see is judged
        return "planned", f"{home}'s link to its clients is degraded: staying or moving are both acceptable", set()
    if f in RIDE_OUT:
        return "stay", "a healthy cluster rides this out", set()
    raise ValueError(f"no expectation for fault {f}")


def _fence_outcome(topology: Topology, case: Case, group: str, home: str) -> tuple[Outcome, str, set[str]]:
    """A powered-off node whose fence devices are broken: the next working level fences it, or nothing may move."""
    t = case.target
    if t.node != home:
        return "stay", f"{t.node} is not the node running {group}", set()
    levels = topology.cluster.fencing_topology
    broken = {t.device} if t.device else set(levels)
    working = [(i, d) for i, d in enumerate(levels, 1) if d not in broken]
    how = "fails" if case.fault == "fence_fail" else "hangs past the fence timeout"
    if working:
        i, device = working[0]
        return "fallover", f"fence level {levels.index(t.device) + 1 if t.device else 1} ({', '.join(sorted(broken))}) " \
                           f"{how}; level {i} ({device}) fences {home}", {home}
    return "outage", (f"{home} is powered off and its fence device {how}: with no successful fence the cluster "
                      f"must not recover {group} elsewhere"), set()
