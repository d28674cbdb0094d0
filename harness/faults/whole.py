"""Whole-cluster operations (CTS SimulStart/SimulStop, StopOnebyOne/StartOnebyOne, Reattach; PowerHA
NODE_DOWN_FORCED), run as planned faults so the runner records them under load like any other.

The cluster stack is stopped and started on every node; the service is down meanwhile, and the
verdicts ask what matters then: the group starts exactly once, on its first node, never without
quorum, and how long clients wait for it (`starts`, harness/checkers/whole.py). Reattach keeps the
resources running through the restart (maintenance mode): clients must see no outage at all, and
the application must be the same processes afterwards (`untouched`).

Milestones go to the timeline through `mark` ("cluster stopped", "cluster start", ...), so the
checkers measure from them.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, ClassVar

from harness.drivers.state import ClusterState
from harness.errors import FalloverError, WaitTimeout
from harness.faults.app import _agent
from harness.faults.base import Fault, Target, mark
from harness.faults.ops import make_whole
from harness.testbed.base import Testbed
from harness.topology import Topology

if TYPE_CHECKING:
    from harness.drivers.base import Driver

STOPPED, START, QUORATE, UP = "cluster stopped", "cluster start", "cluster start with quorum", "cluster up"
"""The marks every whole-cluster operation leaves: the last node stopped, the first start, the start of the node
that makes a majority (time to service counts from there: before it, the group must not run), every node online."""
QUORUMLESS_HOLD_S = 10.0
"""Beyond the detection SLA, how long one-by-one stays with too few nodes for quorum, each way: a cluster that
ignores quorum would start (or keep) the group meanwhile, and the `starts` verdict would see it."""
WHOLE_EXPECTATION: dict[str, Any] = {"max_poller_errors": 100000, "whole_cluster": True}
"""While no node runs a stack nobody answers crm_mon: those blind polls are the operation, not a hole."""


def _driver(testbed: Testbed) -> Driver:
    from harness.drivers import open_driver

    return open_driver(testbed)


def _at_once(nodes: list[str], action: Any) -> None:
    """Run ``action(node)`` on every node at the same time; the first failure is raised after all ran."""
    with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
        for future in [pool.submit(action, n) for n in nodes]:
            future.result()


def _wait_online(driver: Driver, nodes: list[str], timeout: float = 90.0) -> None:
    driver.wait_until(lambda s: all(n in s.online for n in nodes) and s.dc is not None, timeout=timeout,
                      what=f"{', '.join(nodes)} online with a DC")


def _restart_at_once(testbed: Testbed, driver: Driver, undo: dict[str, Any]) -> None:
    """Every node's stack stopped at once, then started at once, until all are online; marks each phase."""
    nodes = testbed.topology.node_names
    _at_once(nodes, driver.stop_services)
    undo["stopped"] = list(nodes)
    mark(undo, STOPPED)
    mark(undo, START)
    mark(undo, QUORATE)
    _at_once(nodes, driver.start_services)
    undo["started"] = list(nodes)
    _wait_online(driver, nodes)
    mark(undo, UP)


def _start_joining(testbed: Testbed, driver: Driver, node: str, online: list[str]) -> None:
    """Start one node's stack and wait until it is online, again if the startup fencing powered it off meanwhile.

    Once quorum returns, the DC fences every node it has never seen (startup-fencing, on by default): a
    node whose turn comes next may be fenced while it starts. make_whole powers such a node on.
    """
    for attempt in range(3):
        make_whole(testbed, node)
        try:
            _wait_online(driver, online, timeout=60)
            return
        except WaitTimeout:
            if testbed.running(node) or attempt == 2:
                raise


class _WholeCluster(Fault):
    family: ClassVar[str] = "planned"
    target_kind: ClassVar[str] = "cluster"
    destructive: ClassVar[bool] = True
    needs: ClassVar[tuple[str, ...]] = ("pacemaker", "quorum")
    suite: ClassVar[str | None] = "cluster"
    expectation: ClassVar[dict[str, Any]] = WHOLE_EXPECTATION
    extra_asserted: ClassVar[tuple[str, ...]] = ()

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        first = topology.group(group).nodes[0]
        return "restart", f"every node stops, then starts; {first} is its first node", set()

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Every node went through its stop and its start (inject waits for each: this names one it skipped)."""
        for step in ("stopped", "started"):
            skipped = [n for n in testbed.topology.node_names if n not in undo.get(step, [])]
            if skipped:
                raise self.not_in_effect(target, f"not {step}: {', '.join(skipped)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        for node in testbed.topology.node_names:
            make_whole(testbed, node)


class ClusterSimulRestart(_WholeCluster):
    name: ClassVar[str] = "cluster_simul_restart"
    event: ClassVar[str] = "cluster stop and start, all nodes at once (CTS SimulStop + SimulStart)"
    summary: ClassVar[str] = "every node's cluster stack stopped at once, then started at once"
    mechanism: ClassVar[str] = ("graceful stop (SIGTERM pacemakerd, corosync-cfgtool -H) on every node in parallel; "
                                "then every node's services started in parallel; wait until settled")
    extra_asserted: ClassVar[tuple[str, ...]] = ("starts",)

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        driver = _driver(testbed)
        _restart_at_once(testbed, driver, undo)
        driver.wait_settled(timeout=testbed.topology.sla.max_recovery_s + 30)


class ClusterOneByOne(_WholeCluster):
    name: ClassVar[str] = "cluster_one_by_one"
    event: ClassVar[str] = "cluster stop to zero, then start, one node at a time (CTS StopOnebyOne + StartOnebyOne)"
    summary: ClassVar[str] = ("nodes stopped one by one (last priority first) down to none, then started one by one "
                              "in priority order")
    mechanism: ClassVar[str] = ("graceful stop of each node's stack, waiting until the others see it gone; then "
                                "each node started, waiting until it is online, the next only then")
    extra_asserted: ClassVar[tuple[str, ...]] = ("starts",)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        first = topology.group(group).nodes[0]
        need = len(topology.node_names) // 2 + 1
        return "restart", (f"it must stop when too few nodes are left for quorum, stay stopped while fewer than "
                           f"{need} nodes run, and start on {first} once they do"), set()

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        driver, topo = _driver(testbed), testbed.topology
        order = self.start_order(topo)
        undo["stopped"], undo["started"] = [], []
        majority = len(order) // 2 + 1
        hold = topo.sla.max_detection_s + QUORUMLESS_HOLD_S
        for i, node in enumerate(reversed(order)):
            driver.stop_services(node)
            undo["stopped"].append(node)
            left = [n for n in order if n not in undo["stopped"]]
            if left:
                def seen_stopped(s: ClusterState, node: str = node) -> bool:
                    return node in s.offline

                driver.wait_until(seen_stopped, timeout=60, what=f"{node} seen stopped by {', '.join(left)}")
            if len(left) == majority - 1:
                time.sleep(hold)  # the first nodes without quorum: long enough to see whether they stop the group
        mark(undo, STOPPED)
        for i, node in enumerate(order):
            if i == 0:
                mark(undo, START)
            if i + 1 == majority:
                mark(undo, QUORATE)
            _start_joining(testbed, driver, node, [*undo["started"], node])
            undo["started"].append(node)
            if i + 2 == majority:
                time.sleep(hold)  # the last moment without quorum: long enough to see whether the group starts
        mark(undo, UP)
        driver.wait_settled(timeout=topo.sla.max_recovery_s + 30)

    @staticmethod
    def start_order(topology: Topology) -> list[str]:
        """The first group's priority list, then the other nodes: the group's home starts first (alone, no quorum)."""
        first = topology.groups[0].nodes if topology.groups else []
        return list(first) + [n for n in topology.node_names if n not in first]


class ClusterReattach(_WholeCluster):
    name: ClassVar[str] = "cluster_reattach"
    event: ClassVar[str] = "reattach: stack restarted under maintenance mode (CTS Reattach, PowerHA NODE_DOWN_FORCED)"
    summary: ClassVar[str] = ("maintenance-mode on, every node's cluster stack restarted, the resources re-detected, "
                              "maintenance-mode off: no resource stops or starts")
    mechanism: ClassVar[str] = ("crm_attribute maintenance-mode=true; stop every stack at once, start every stack; "
                                "wait until the group is seen where it runs; re-run the node-attribute monitors "
                                "(crm_resource --force-check); maintenance-mode deleted")
    expectation: ClassVar[dict[str, Any]] = {**WHOLE_EXPECTATION, "max_outage_s": 0.0}
    extra_asserted: ClassVar[tuple[str, ...]] = ("untouched",)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        return "stay", ("maintenance mode detaches the cluster from the resources: they keep running through the "
                        "restart and are re-detected where they run; target outage: none"), set()

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The operator's reattach, step by step; what the cluster does once maintenance mode ends is marked,
        never raised: a cluster that loses state in the restart and then stops or moves a group fails the
        `untouched` and `outage` verdicts (a FAIL of the cluster), not the operation (an ERROR)."""
        driver, topo = _driver(testbed), testbed.topology
        mark(undo, "application before", processes=_app_processes(testbed, driver))
        before = driver.state()
        attributes = {n: sorted(a) for n, a in (before.attributes if before else {}).items()}
        driver.admin(["crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--update", "true"])
        undo["maintenance"] = True
        driver.wait_until(lambda s: all(not r.managed for g in s.groups.values() for r in g.resources), timeout=30,
                          what="every group resource unmanaged")
        _restart_at_once(testbed, driver, undo)
        homes = {g.name: g.nodes[0] for g in topo.groups}
        driver.wait_until(lambda s: all(s.group_node(g) is not None for g in homes), timeout=60,
                          what="every group re-detected where it runs")
        restored = _refresh_attributes(testbed, driver)
        awaited = {n: [a for a in names if restored is None or a in restored] for n, names in attributes.items()}
        driver.wait_until(lambda s: all(name in s.attributes.get(n, {}) for n, names in awaited.items()
                                        for name in names), timeout=30,
                          what=f"the node attributes back ({awaited})")
        after = driver.state()
        lost = {n: [a for a in names if a not in (after.attributes.get(n, {}) if after else {})]
                for n, names in attributes.items()}
        if any(lost.values()):  # transient attributes nothing sets again: the cluster acts on their absence
            mark(undo, "attributes lost", attributes={n: a for n, a in lost.items() if a})
        _lift_maintenance(driver)
        undo["maintenance"] = False
        unsettled = _settle_after_lift(driver, [g.name for g in topo.groups], topo.sla.max_recovery_s + 30)
        if unsettled:
            mark(undo, "not settled after maintenance", why=unsettled)
        mark(undo, "application after", processes=_app_processes(testbed, driver, stopped_ok=True))

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        super().heal(testbed, target, undo)
        if undo.get("maintenance"):
            _lift_maintenance(_driver(testbed))


def _lift_maintenance(driver: Driver) -> None:
    driver.admin(["crm_attribute", "--type", "crm_config", "--name", "maintenance-mode", "--delete"])


def _refresh_attributes(testbed: Testbed, driver: Driver) -> set[str] | None:
    """Set the node attributes the groups' location rules read again, before maintenance mode ends.

    The restart erased them (transient attributes die with the stack), and maintenance mode pauses
    the monitors that set them: lifting it with them missing would stop every group they guard
    (Pacemaker Administration, "Detach and Reattach", the note on ocf:pacemaker:ping). Running each
    clone's monitor once on every node is the operator's "verify that the cluster re-detected all
    resources correctly". Returns the names of the attributes those monitors set (each agent's `name`
    parameter), None when one could not be read: an attribute nothing sets again (one an operator's
    script wrote with attrd_updater) is not waited for, and the reattach notes it lost.
    """
    s = driver.state()
    clones = sorted(r for r in (s.resources if s else {}) if r.startswith(("linkmon-", "reach-")))
    nodes = testbed.topology.node_names
    ask = testbed.node(next((n for n in nodes if testbed.running(n)), nodes[0]))
    names: set[str] | None = set()
    for clone in clones:
        rsc = clone.removesuffix("-clone")
        for node in nodes:
            testbed.node(node).run(["crm_resource", "--force-check", "--resource", rsc], timeout=30, check=False)
        r = ask.run(["crm_resource", "--resource", rsc, "--get-parameter", "name"], timeout=15, check=False)
        value = r.stdout.strip().splitlines()[-1].strip() if r.ok and r.stdout.strip() else ""
        if names is not None and value and " " not in value:
            names.add(value)
        else:
            names = None  # which attribute it sets is unknown: wait for every one
    return names


def _settle_after_lift(driver: Driver, groups: list[str], timeout: float) -> str | None:
    """Until the cluster settles after maintenance mode, or has stopped a group and gone idle (it decided
    not to run it: waiting longer shows nothing new). Returns why it did not settle (None: settled)."""
    def done(s: Any) -> bool:
        return driver.settled(s) or (any(s.group_node(g) is None for g in groups) and driver.busy(s) is None)

    try:
        s = driver.wait_until(done, timeout=timeout, what="the cluster settled after maintenance mode")
    except WaitTimeout as e:
        return str(e)
    stopped = [g for g in groups if s.group_node(g) is None]
    if stopped:
        return f"{', '.join(stopped)} stopped once maintenance mode ended: {s.summary()}"
    try:
        driver.wait_settled(timeout=timeout)  # the quiet period: a result in flight may still move a group
    except WaitTimeout as e:
        return str(e)
    return None


def _app_processes(testbed: Testbed, driver: Driver, *, stopped_ok: bool = False) -> dict[str, list[str]]:
    """Each group's application processes (node:PID:start time) where it runs: the same ones afterwards, or it
    restarted. A group that is not running has none (``stopped_ok``; before the operation it is an error)."""
    s = driver.state()
    out: dict[str, list[str]] = {}
    for g in testbed.topology.groups:
        node = s.group_node(g.name) if s else None
        if node is None:
            if stopped_ok:
                out[g.name] = []
                continue
            raise FalloverError(f"group {g.name} is not running: {s.summary() if s else 'no node answers'}")
        found = _agent(testbed, node, g.name, "pids")
        out[g.name] = sorted(f"{node}:{p['pid']}:{p['start']}" for p in found["processes"])
    return out
