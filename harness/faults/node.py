"""Node faults: power off, graceful stop, hang (dead-man-switch case), CPU overload."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.faults.base import Fault, Target
from harness.faults.ops import make_whole
from harness.testbed.base import Testbed


class NodePowerOff(Fault):
    name: ClassVar[str] = "node_power_off"
    family: ClassVar[str] = "node"
    event: ClassVar[str] = "node_down"
    target_kind: ClassVar[str] = "node"
    summary: ClassVar[str] = "hard power off, no clean shutdown"
    mechanism: ClassVar[str] = "SIGKILL every task of the node's cgroup, then thaw (namespaces vanish)"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.power_off(target.node)  # type: ignore[arg-type]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.node)  # type: ignore[arg-type]


class NodeStop(Fault):
    name: ClassVar[str] = "node_stop"
    family: ClassVar[str] = "node"
    event: ClassVar[str] = "node_down_graceful"
    target_kind: ClassVar[str] = "node"
    summary: ClassVar[str] = "graceful stop of the cluster services, with takeover"
    mechanism: ClassVar[str] = "SIGTERM pacemakerd (groups hand over), then corosync-cfgtool -H"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from harness.drivers.pacemaker import PacemakerDriver

        PacemakerDriver(testbed).stop_services(target.node)  # type: ignore[arg-type]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.node)  # type: ignore[arg-type]


class NodeHang(Fault):
    name: ClassVar[str] = "node_hang"
    family: ClassVar[str] = "node"
    event: ClassVar[str] = "false_takeover"
    target_kind: ClassVar[str] = "node"
    summary: ClassVar[str] = "every process of the node frozen; the kernel still answers ARP and ping"
    mechanism: ClassVar[str] = "cgroup-v1 freezer FROZEN; heal: THAWED (or power on if it was fenced)"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.freeze(target.node)  # type: ignore[attr-defined]

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.node)  # type: ignore[arg-type]


class CpuOverload(Fault):
    name: ClassVar[str] = "cpu_overload"
    family: ClassVar[str] = "node"
    event: ClassVar[str] = "false_takeover_risk"
    target_kind: ClassVar[str] = "node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "CPU hogs on the node (on the embedded testbed all nodes share the host's cores)"
    mechanism: ClassVar[str] = "stress-ng --cpu N in the node's cgroup; heal: SIGKILL its process group"
    defaults: ClassVar[dict[str, float]] = {"rate": 1.0}  # load fraction per worker

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        load = int(round((target.rate or 1.0) * 100))
        pidfile = f"/run/fallover-stress-{undo['id']}.pid"
        undo["pidfile"] = pidfile
        # --timeout bounds the damage if every heal path were lost
        testbed.spawn(target.node, ["stress-ng", "--cpu", "0", "--cpu-load", str(load),  # type: ignore[attr-defined]
                                    "--timeout", "3600", "--quiet"], pidfile=pidfile)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        if not testbed.running(target.node):  # type: ignore[arg-type]
            return  # powered off meanwhile: stress-ng died with the node
        # Every stress-ng in the node's PID namespace is ours (a crash that lost the pidfile is
        # covered too); workers may leave the leader's process group, so kill them all by PID.
        testbed.node(target.node).run(  # type: ignore[arg-type]
            "for i in $(seq 100); do p=$(pidof stress-ng) || break; kill -KILL $p; sleep 0.05; done; "
            "rm -f /run/fallover-stress-*.pid; ! pidof stress-ng >/dev/null", timeout=15)
