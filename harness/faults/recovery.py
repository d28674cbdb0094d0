"""Recovery in place (CTS ResourceRecover): with `migration_threshold` above 1 a failed application is
restarted on its node and its fail count rises; at the threshold the group moves; after
`failure_timeout_s` the count expires.

The faults kill the application as `app_kill` does and note, after each failure, where the group
came back and the fail count there (`mark` "fail count"): the `fail_counts` verdict judges those
notes (harness/checkers/recovery.py). A cluster that moves the group too early, or never forgets,
is a FAIL of that verdict, never an error of the fault.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar

from harness.errors import FalloverError, TransportError, WaitTimeout
from harness.faults.app import AppKill, _agent
from harness.faults.base import Target, mark
from harness.faults.ops import group_node
from harness.testbed.base import Testbed
from harness.topology import Topology

EXPIRY_MARGIN_S = 15.0
"""How long past failure-timeout a fail count may take to expire: the scheduler rechecks at the expiry,
then a transition runs (Pacemaker 2.1 schedules the recheck itself; cluster-recheck-interval is the fallback)."""


def fail_count(testbed: Testbed, node: str, group: str) -> int:
    """The application's fail count on ``node`` as the CIB holds it (0 when none is recorded)."""
    on = next((n for n in [node, *testbed.topology.node_names] if testbed.running(n)), node)
    r = testbed.node(on).run(["crm_failcount", "--query", "--resource", f"{group}-app", "--node", node],
                             timeout=15, check=False)
    value = r.stdout.rsplit("value=", 1)[-1].strip() if "value=" in r.stdout else "0"
    return int(value) if value.isdigit() else 0 if value in ("", "0") else 1000000  # INFINITY


def _running_again(testbed: Testbed, group: str, timeout: float) -> str | None:
    """Where the group runs again, every member started (None: nowhere within ``timeout``)."""
    from harness.drivers import open_driver

    try:
        s = open_driver(testbed).wait_until(lambda st: st.group_node(group) is not None, timeout=timeout,
                                            what=f"{group} running again")
    except WaitTimeout:
        return None
    return s.group_node(group)


class _Recovering(AppKill):
    suite: ClassVar[str | None] = "cluster"
    extra_asserted: ClassVar[tuple[str, ...]] = ("fail_counts",)

    def kill_once(self, testbed: Testbed, group: str, node: str, i: int, undo: dict[str, Any]) -> str | None:
        """One failure: kill, wait until the cluster has counted it, then until the group runs again; note
        where and the fail count there. Returns that node (None: the group did not come back)."""
        before = fail_count(testbed, node, group)
        _agent(testbed, node, group, "signal", "KILL")
        deadline = time.monotonic() + 30
        while fail_count(testbed, node, group) <= before and time.monotonic() < deadline:
            time.sleep(0.25)  # the monitor (2 s interval) notices, the failure is written with its count
        where = _running_again(testbed, group, timeout=max(1.0, deadline - time.monotonic()))
        count = fail_count(testbed, where or node, group)
        mark(undo, "fail count", kill=i, node=where, home=node, value=count, on_home=fail_count(testbed, node, group))
        return where


class AppKillThreshold(_Recovering):
    name: ClassVar[str] = "app_kill_threshold"
    event: ClassVar[str] = "server_down, repeated to the migration threshold (CTS ResourceRecover)"
    summary: ClassVar[str] = ("the application killed again each time it is restarted in place, until the "
                              "migration threshold moves the group")
    mechanism: ClassVar[str] = ("SIGKILL of the application (as app_kill), migration_threshold times; after each, "
                                "crm_failcount where it came back")

    def targets(self, topology: Topology) -> list[Target]:
        return [Target(group=g.name) for g in topology.groups if g.migration_threshold > 1]

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        group = target.need("group")
        home = group_node(testbed, group)
        undo["node"] = home
        threshold = testbed.topology.group(group).migration_threshold
        for i in range(1, threshold):
            where = self.kill_once(testbed, group, home, i, undo)
            if where != home:
                return  # moved (or gone) before the threshold: the fail_counts verdict says so
        mark(undo, "threshold failure", fault_start=True)  # detection and fallover count from this kill
        sent = _agent(testbed, home, group, "signal", "KILL")  # the failure that reaches the threshold
        undo["processes"] = [f"{p['pid']}:{p['start']}" for p in sent["processes"]]
        undo["kills"] = threshold

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        if not undo.get("marks"):
            raise self.not_in_effect(target, f"no failure of {target.group}'s application was recorded")

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        n = topology.group(group).migration_threshold
        return "fallover", (f"restarted in place on {home} {n - 1} time(s), its fail count rising to {n - 1}; the "
                            f"failure that reaches migration-threshold {n} moves it"), {home}


class AppFailureExpiry(_Recovering):
    name: ClassVar[str] = "app_failure_expiry"
    event: ClassVar[str] = "server_down, then the failure forgotten (failure-timeout)"
    summary: ClassVar[str] = "the application killed once: restarted in place, its fail count expires after failure-timeout"
    mechanism: ClassVar[str] = ("SIGKILL of the application (as app_kill) once; crm_failcount polled until it reads 0 "
                                f"(at most failure_timeout_s + {EXPIRY_MARGIN_S:g} s)")

    def targets(self, topology: Topology) -> list[Target]:
        return [Target(group=g.name) for g in topology.groups
                if g.migration_threshold > 1 and g.failure_timeout_s is not None]

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        group = target.need("group")
        home = group_node(testbed, group)
        undo["node"] = home
        timeout = testbed.topology.group(group).failure_timeout_s or 0
        where = self.kill_once(testbed, group, home, 1, undo)
        failed_at = time.monotonic()
        if where is None:
            return
        deadline = failed_at + timeout + EXPIRY_MARGIN_S
        count = fail_count(testbed, where, group)
        while count and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                count = fail_count(testbed, where, group)
            except (TransportError, FalloverError):
                continue
        mark(undo, "fail count expired", node=where, value=count,
             after_s=round(time.monotonic() - failed_at, 2), failure_timeout_s=timeout)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        if not undo.get("marks"):
            raise self.not_in_effect(target, f"no failure of {target.group}'s application was recorded")

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        g = topology.group(group)
        return "stay", (f"restarted in place on {home} (migration-threshold {g.migration_threshold}); its fail count "
                        f"of 1 expires after failure-timeout {g.failure_timeout_s} s"), set()
