"""Application faults: the service is killed, hangs, or its start script fails on a chosen node."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from harness.faults.base import Fault, Target
from harness.faults.ops import group_node
from harness.testbed.base import Testbed


def _app_pid(testbed: Testbed, node: str, group: str) -> int:
    """The application's PID inside the node, from the OCF agent's pidfile ("<pid> <starttime>")."""
    pidfile = f"/run/fallover-app-{group}/{group}-app.pid"
    out = testbed.node(node).run(["cat", pidfile], timeout=10).stdout.split()
    return int(out[0])


class AppKill(Fault):
    name: ClassVar[str] = "app_kill"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "server_down"
    target_kind: ClassVar[str] = "group"
    summary: ClassVar[str] = "the application process is killed (SIGKILL) where the group runs"
    mechanism: ClassVar[str] = "kill -KILL of the PID in the OCF agent's pidfile; the monitor notices"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = group_node(testbed, target.group)  # type: ignore[arg-type]
        undo["node"] = node
        testbed.node(node).run(["kill", "-KILL", str(_app_pid(testbed, node, target.group))], timeout=10)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Nothing to undo on the node: restarting the application is the cluster's job."""


class AppHang(Fault):
    name: ClassVar[str] = "app_hang"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "server_down (hung)"
    target_kind: ClassVar[str] = "group"
    summary: ClassVar[str] = "the application stops answering but stays alive (SIGSTOP)"
    mechanism: ClassVar[str] = "kill -STOP of the application's PID; heal: kill -CONT if it still exists"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = group_node(testbed, target.group)  # type: ignore[arg-type]
        pid = _app_pid(testbed, node, target.group)
        undo.update(node=node, pid=pid)
        testbed.node(node).run(["kill", "-STOP", str(pid)], timeout=10)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node, pid = undo.get("node"), undo.get("pid")
        if node and pid and testbed.running(node):
            testbed.node(node).run(["kill", "-CONT", str(pid)], timeout=10, check=False)


class AppStartFail(Fault):
    name: ClassVar[str] = "app_start_fail"
    family: ClassVar[str] = "application"
    event: ClassVar[str] = "acquire_failure (start fails on the takeover node)"
    target_kind: ClassVar[str] = "group_node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the application's start fails on the chosen node (--group, --node)"
    mechanism: ClassVar[str] = "a marker file the OCF agent reads before every start; heal: remove it"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        marker = Path(testbed.layout.state) / "faults" / f"app_start_fail.{target.group}"  # type: ignore[attr-defined]
        marker.parent.mkdir(parents=True, exist_ok=True)
        lines = set(marker.read_text().split()) if marker.exists() else set()
        marker.write_text("\n".join(sorted(lines | {target.node})) + "\n")  # type: ignore[operator]
        undo["marker"] = str(marker)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        marker = Path(undo.get("marker") or Path(testbed.layout.state) / "faults"  # type: ignore[attr-defined]
                      / f"app_start_fail.{target.group}")
        if not marker.exists():
            return
        rest = set(marker.read_text().split()) - {target.node}
        if rest:
            marker.write_text("\n".join(sorted(rest)) + "\n")
        else:
            marker.unlink()
