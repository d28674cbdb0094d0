"""Application faults: the service is killed, hangs, or its start script fails on a chosen node."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from harness.errors import CommandFailed, FalloverError, HealError, TransportError
from harness.faults.base import Fault, Target, look_until, mark
from harness.faults.ops import group_node
from harness.testbed.base import Testbed
from harness.topology import Application

AGENT = "/usr/lib/ocf/resource.d/fallover/fallover-app"
"""The OCF agent knows where the application is: what its start command left running (a cgroup and
an environment tag), a declared pid_file or process, or the sample app's pidfile."""


def locate_problem(app: Application) -> str | None:
    """Why app_kill/app_hang have no way at all to find this application's processes, or None."""
    if app.detached and not (app.pid_file or app.process):
        return ("its application is declared detached (start hands it outside the node's process tree) "
                "and names no pid_file or process")
    return None


def _agent(testbed: Testbed, node: str, group: str, *args: str) -> dict[str, Any]:
    """Run one of the agent's harness actions (`pids`, `signal`) inside the node; its JSON answer.

    state_dir and logfile are the ones harness/testbed/clusterconf.py gives the group's resource.
    """
    env = {"OCF_ROOT": "/usr/lib/ocf", "OCF_RESOURCE_INSTANCE": f"{group}-app",
           "OCF_RESKEY_state_dir": f"/run/fallover-app-{group}",
           "OCF_RESKEY_logfile": f"/var/log/cluster/{group}-app.log"}
    r = testbed.node(node).run([AGENT, *args], env=env, timeout=20)
    try:
        answer: dict[str, Any] = json.loads(r.stdout)
    except ValueError:
        raise CommandFailed(r, reason="the agent's answer is not JSON") from None
    return answer


def _ids(processes: list[dict[str, Any]]) -> list[str]:
    """PID:START of each process: a PID alone could name a stranger once the process is gone."""
    return [f"{p['pid']}:{p['start']}" for p in processes]


def _show(processes: list[dict[str, Any]]) -> str:
    return ", ".join(f"{p['pid']} [{p['state']}] {p['cmd'][:50]}" for p in processes)


class _AppSignal(Fault):
    """Signal the whole application where its group runs (every process, again any that appear meanwhile)."""

    signal: ClassVar[str]

    def precheck(self, testbed: Testbed, target: Target) -> None:
        group = target.need("group")
        why = locate_problem(testbed.topology.group(group).application)
        if why:
            raise self.refused(target, f"group {group}: {why}")
        try:
            node = group_node(testbed, group)
        except FalloverError as e:
            raise self.refused(target, str(e)) from None
        found = _agent(testbed, node, group, "pids")
        if not found["processes"]:
            raise self.refused(target, f"no process of {group}'s application on {node}: {found['problem']}")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        group = target.need("group")
        node = group_node(testbed, group)
        undo["node"] = node
        sent = _agent(testbed, node, group, "signal", self.signal)
        # Measure from the signal (the agent says how long before its answer it went out), not from the query
        # for the group's node and the agent's start: 8 s together on a TCG guest under load, against a 1 s
        # detection (app_kill-app, 2026-11-30). Left over: the answer's way back, tenths of a second at most.
        if sent.get("processes"):
            mark(undo, f"SIG{self.signal} sent", ago=float(sent.get("sent_ago_s") or 0.0), fault_start=True)
        undo.update(processes=_ids(sent["processes"]), mechanism=sent["mechanism"], problem=sent["problem"],
                    shown=_show(sent["processes"]))

    def _sent(self, target: Target, undo: dict[str, Any]) -> tuple[str, list[str]]:
        node, ids = undo.get("node"), undo.get("processes") or []
        if not node or not ids:
            raise self.not_in_effect(target, f"no process of {target.group}'s application was found on "
                                             f"{node or 'any node'}: {undo.get('problem')}")
        return node, ids


class AppKill(_AppSignal):
    name: ClassVar[str] = "app_kill"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "server_down"
    target_kind: ClassVar[str] = "group"
    summary: ClassVar[str] = "the application process is killed (SIGKILL) where the group runs"
    mechanism: ClassVar[str] = ("SIGKILL of every process of the application (what its start left running, "
                                "tracked by the OCF agent's cgroup; or its pid_file/process); the monitor notices")
    signal: ClassVar[str] = "KILL"

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, ids = self._sent(target, undo)
        try:
            alive = look_until(lambda: _agent(testbed, node, target.need("group"), "pids", *ids)["processes"],
                               lambda procs: not procs)
        except TransportError:
            return  # the node is gone, and everything that ran on it
        if alive:
            raise self.not_in_effect(target, f"still alive on {node} after SIGKILL: {_show(alive)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Nothing to undo on the node: restarting the application is the cluster's job."""


class AppHang(_AppSignal):
    name: ClassVar[str] = "app_hang"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "server_down (hung)"
    target_kind: ClassVar[str] = "group"
    summary: ClassVar[str] = "the application stops answering but stays alive (SIGSTOP)"
    mechanism: ClassVar[str] = ("SIGSTOP of every process of the application (as app_kill finds them); "
                                "heal: SIGCONT of those same processes if they still exist")
    signal: ClassVar[str] = "STOP"

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, ids = self._sent(target, undo)
        seen = look_until(lambda: _agent(testbed, node, target.need("group"), "pids", *ids)["processes"],
                          lambda procs: len(procs) == len(ids) and all(p["state"] in "Tt" for p in procs))
        running = [p for p in seen if p["state"] not in "Tt"]
        gone = len(ids) - len(seen)
        if running or gone:
            observed = f"not stopped on {node}: {_show(running)}" if running else ""
            if gone:
                observed += ("; " if observed else "") + f"{gone} of the {len(ids)} stopped processes vanished"
            raise self.not_in_effect(target, observed)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, ids = undo.get("node"), list(undo.get("processes") or [])
        if not node or not testbed.running(node):
            return  # powered off: nothing of it is left to continue
        if not ids and undo.get("pid"):  # a journal entry written before process sets
            testbed.node(node).run(["kill", "-CONT", str(undo["pid"])], timeout=10, check=False)
            return
        if not ids:
            return
        try:
            _agent(testbed, node, target.need("group"), "signal", "CONT", *ids)
        except TransportError:
            return  # fenced meanwhile
        except CommandFailed as e:
            raise HealError(f"app_hang on {target.label}: cannot continue {', '.join(ids)} on {node}: {e}") from e


class AppStartFail(Fault):
    name: ClassVar[str] = "app_start_fail"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "acquire_failure (start fails on the takeover node)"
    target_kind: ClassVar[str] = "group_node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the application's start fails on the chosen node (--group, --node)"
    mechanism: ClassVar[str] = "a marker file the OCF agent reads before every start; heal: remove it"
    needs: ClassVar[tuple[str, ...]] = ("resource_manager",)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        self.require_running(testbed, target, target.need("node"), "no start can be made to fail there")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = target.need("node")
        marker = _marker(testbed, node, target.need("group"))
        undo["marker"] = marker
        testbed.node(node).run(f'mkdir -p "$(dirname {marker})" && touch {marker} && '
                               f'{{ grep -qx {node} {marker} || echo {node} >> {marker}; }}', timeout=15)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node itself reads its name in the marker its agent consults before every start."""
        node = target.need("node")
        r = testbed.node(node).run(["cat", undo["marker"]], timeout=15, check=False)
        listed = r.stdout.split() if r.ok else []
        if node not in listed:
            raise self.not_in_effect(target, f"{undo['marker']} on {node} does not list {node} "
                                             f"(it lists {listed or 'nothing'})")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Strike the node's name from the marker, from the node or (powered off) any node that sees it."""
        node, marker = target.need("node"), undo.get("marker")
        if not marker:
            return  # inject failed before it wrote anything
        on = [n for n in [node, *testbed.topology.node_names] if testbed.running(n)]
        if not on:
            raise HealError(f"app_start_fail on {target.label}: no node is running to clear {marker} on")
        testbed.node(on[0]).run(f'[ ! -e {marker} ] || {{ grep -vx {node} {marker} > {marker}.new; '
                                f'if [ -s {marker}.new ]; then mv {marker}.new {marker}; '
                                f'else rm -f {marker}.new {marker}; fi; }}', timeout=15)


def _marker(testbed: Testbed, node: str, group: str) -> str:
    """The marker file the group's agent reads before a start: its `fail_start_marker` parameter."""
    r = testbed.node(node).run(["crm_resource", "--resource", f"{group}-app", "--get-parameter",
                                "fail_start_marker", "--quiet"], timeout=20, check=False)
    marker = r.stdout.strip()
    if not r.ok or not marker.startswith("/"):
        raise FalloverError(f"group {group}: its application resource has no fail_start_marker parameter "
                            f"(crm_resource on {node}: {(r.stderr or r.stdout).strip() or 'empty'})")
    return marker
