"""Cluster-software faults: the membership layer (corosync) or the resource manager (pacemaker) killed."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import FalloverError
from harness.faults.base import Fault, Target
from harness.faults.ops import make_whole, signal_processes
from harness.testbed.base import Testbed


class _KillDaemon(Fault):
    family: ClassVar[str] = "cluster"
    event: ClassVar[str] = "clstrmgr_kill"
    target_kind: ClassVar[str] = "node"
    processes: ClassVar[tuple[str, ...]] = ()

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        killed = {}
        for comm in self.processes:
            killed[comm] = signal_processes(testbed, target.node, comm, "KILL")  # type: ignore[arg-type]
        undo["killed"] = killed
        if not any(killed.values()):
            raise FalloverError(f"{target.node}: none of {', '.join(self.processes)} was running")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.node)  # type: ignore[arg-type]


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
