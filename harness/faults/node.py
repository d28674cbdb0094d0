"""Node faults: power off, graceful stop, hang (dead-man-switch case), CPU overload."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.faults.base import Fault, Target, look_until, mark
from harness.faults.ops import make_whole, pids
from harness.testbed.base import Testbed


class _NodeFault(Fault):
    """Every node fault needs its node powered on: powering off, stopping or freezing a dead node does nothing."""

    family: ClassVar[str] = "node"
    target_kind: ClassVar[str] = "node"
    when_off: ClassVar[str] = ""  # what a powered-off node makes impossible, for the refusal

    def precheck(self, testbed: Testbed, target: Target) -> None:
        self.require_running(testbed, target, target.need("node"), self.when_off)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        make_whole(testbed, target.need("node"))


class NodePowerOff(_NodeFault):
    name: ClassVar[str] = "node_power_off"
    event: ClassVar[str] = "node_down"
    when_off: ClassVar[str] = "it cannot be powered off again"
    summary: ClassVar[str] = "hard power off, no clean shutdown"
    needs: ClassVar[tuple[str, ...]] = ("power",)
    mechanism: ClassVar[str] = ("freeze the node's cgroup, cut its view of each shared disk (what it had not "
                                "flushed is lost), SIGKILL every task, thaw (namespaces vanish)")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.power_off(target.need("node"))

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node's init (PID 1 of its namespaces) is gone."""
        if testbed.running(target.need("node")):
            raise self.not_in_effect(target, f"the init of {target.node} is still running")


class NodeStop(_NodeFault):
    name: ClassVar[str] = "node_stop"
    event: ClassVar[str] = "node_down_graceful"
    when_off: ClassVar[str] = "it has no cluster services to stop"
    summary: ClassVar[str] = "graceful stop of the cluster services, with takeover"
    mechanism: ClassVar[str] = "SIGTERM pacemakerd (groups hand over), then corosync-cfgtool -H"

    def precheck(self, testbed: Testbed, target: Target) -> None:
        super().precheck(testbed, target)
        from harness.drivers import open_driver

        if not any(pids(testbed, target.need("node"), comm) for comm in open_driver(testbed).stack_processes()[:2]):
            raise self.refused(target, f"the cluster services of {target.node} are not running: nothing to stop")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        from harness.drivers import open_driver

        # the case counts from the SIGTERM (its SSH call on a loaded TCG guest took seconds), not from the call
        open_driver(testbed).stop_services(target.need("node"),
                                           signalled=lambda: mark(undo, "SIGTERM", fault_start=True))

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """No process of the cluster stack runs in the node, which itself stays powered on."""
        node = target.need("node")
        if not testbed.running(node):
            raise self.not_in_effect(target, f"{node} was powered off instead")
        from harness.drivers import open_driver

        left = [comm for comm in open_driver(testbed).stack_processes() if pids(testbed, node, comm)]
        if left:
            raise self.not_in_effect(target, f"{' and '.join(left)} still running on {node}")


class NodeHang(_NodeFault):
    name: ClassVar[str] = "node_hang"
    event: ClassVar[str] = "false_takeover"
    when_off: ClassVar[str] = "it has no processes to freeze"
    needs: ClassVar[tuple[str, ...]] = ("freeze", "quorum")  # without membership nobody takes a hung node's place
    summary: ClassVar[str] = "every process of the node frozen; the kernel still answers ARP and ping"
    mechanism: ClassVar[str] = "cgroup-v1 freezer FROZEN; heal: THAWED (or power on if it was fenced)"

    def precheck(self, testbed: Testbed, target: Target) -> None:
        super().precheck(testbed, target)
        state = testbed.freezer_state(target.need("node"))
        if state != "THAWED":
            raise self.refused(target, f"the freezer of {target.node} reads {state} already")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        testbed.freeze(target.need("node"))

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node's freezer cgroup reads FROZEN (FREEZING passes in a moment, unless a task cannot stop)."""
        state = look_until(lambda: testbed.freezer_state(target.need("node")), lambda s: s == "FROZEN")
        if state != "FROZEN":
            raise self.not_in_effect(target, f"the freezer of {target.node} reads {state}, not FROZEN")


class CpuOverload(_NodeFault):
    name: ClassVar[str] = "cpu_overload"
    event: ClassVar[str] = "false_takeover_risk"
    destructive: ClassVar[bool] = False
    when_off: ClassVar[str] = "no CPU hog can run on it"
    needs: ClassVar[tuple[str, ...]] = ("spawn",)
    summary: ClassVar[str] = "CPU hogs on the node (on the embedded testbed all nodes share the host's cores)"
    mechanism: ClassVar[str] = "stress-ng --cpu N in the node's cgroup; heal: SIGKILL its process group"
    defaults: ClassVar[dict[str, float]] = {"rate": 1.0}  # load fraction per worker

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        load = int(round((target.rate or 1.0) * 100))
        pidfile = f"/run/fallover-stress-{undo['id']}.pid"
        undo["pidfile"] = pidfile
        # --timeout bounds the damage if every heal path were lost
        testbed.spawn(target.need("node"), ["stress-ng", "--cpu", "0", "--cpu-load", str(load),
                                                      "--timeout", "3600", "--quiet"], pidfile=pidfile)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The process the pidfile names is stress-ng (the detached shell has exec'd it) and still runs."""
        node = target.need("node")

        def comm() -> str:
            r = testbed.node(node).run(f'cat /proc/$(cat {undo["pidfile"]})/comm', timeout=10, check=False)
            return r.stdout.strip() if r.ok else ""

        seen = look_until(comm, lambda c: c == "stress-ng")
        if seen != "stress-ng":
            raise self.not_in_effect(target, f"stress-ng is not running on {node} "
                                             f"(its pidfile names {seen or 'no live process'})")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = target.need("node")
        if not testbed.running(node):
            return  # powered off meanwhile: stress-ng died with the node
        # Every stress-ng in the node's PID namespace is ours (a crash that lost the pidfile is
        # covered too); workers may leave the leader's process group, so kill them all by PID.
        testbed.node(node).run(
            "for i in $(seq 100); do p=$(pidof stress-ng) || break; kill -KILL $p; sleep 0.05; done; "
            "rm -f /run/fallover-stress-*.pid; ! pidof stress-ng >/dev/null", timeout=15)
