"""Cluster-software faults: the membership layer (corosync) or the resource manager (pacemaker) killed."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import FalloverError, TransportError
from harness.faults.base import Fault, Target, look_until
from harness.faults.ops import make_whole, pids, signal_processes
from harness.testbed.base import Testbed


class _KillDaemon(Fault):
    family: ClassVar[str] = "cluster"
    event: ClassVar[str] = "clstrmgr_kill"
    target_kind: ClassVar[str] = "node"
    needs: ClassVar[tuple[str, ...]] = ("pacemaker",)
    processes: ClassVar[tuple[str, ...]] = ()

    def precheck(self, testbed: Testbed, target: Target) -> None:
        node = target.need("node")
        self.require_running(testbed, target, node, "its daemons are dead already")
        if not any(pids(testbed, node, comm) for comm in self.processes):
            raise self.refused(target, f"none of {', '.join(self.processes)} is running on {node}: nothing to kill")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        killed = {}
        for comm in self.processes:
            killed[comm] = signal_processes(testbed, target.need("node"), comm, "KILL")
        undo["killed"] = killed
        if not any(killed.values()):
            raise FalloverError(f"{target.node}: none of {', '.join(self.processes)} was running")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Every killed PID is gone (a respawned daemon has a new PID; a node fenced meanwhile took them all)."""
        node = target.need("node")

        def survivors() -> list[str]:
            try:
                return [f"{comm} (pid {pid})" for comm, killed in undo["killed"].items()
                        for pid in set(killed) & set(pids(testbed, node, comm))] if testbed.running(node) else []
            except TransportError:
                return []  # the node vanished while we looked

        left = look_until(survivors, lambda s: not s)
        if left:
            raise self.not_in_effect(target, f"still running on {node} after SIGKILL: {', '.join(left)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.need("node"))


class CorosyncKill(_KillDaemon):
    name: ClassVar[str] = "corosync_kill"
    summary: ClassVar[str] = "corosync (membership, heartbeat) SIGKILLed on the node"
    mechanism: ClassVar[str] = "kill -KILL of the node's corosync; heal: restart the stack (or power on if fenced)"
    processes: ClassVar[tuple[str, ...]] = ("corosync",)


class PacemakerKill(_KillDaemon):
    name: ClassVar[str] = "pacemaker_kill"
    summary: ClassVar[str] = "pacemakerd and its controller SIGKILLed on the node; corosync stays"
    mechanism: ClassVar[str] = ("kill -KILL of pacemakerd and pacemaker-controld; heal: restart the stack "
                                "(or power on if fenced)")
    processes: ClassVar[tuple[str, ...]] = ("pacemakerd", "pacemaker-controld")
