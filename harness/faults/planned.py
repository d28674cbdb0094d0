"""Planned operations, run like faults so that their client-visible cost is measured the same way."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from harness.drivers.state import ClusterState
from harness.faults.base import Fault, Target, look_until
from harness.faults.ops import make_whole
from harness.testbed.base import Testbed
from harness.topology import Topology

if TYPE_CHECKING:
    from harness.drivers.base import Driver


def _driver(testbed: Testbed) -> Driver:
    from harness.drivers import open_driver

    return open_driver(testbed)


def _node_flag(fault: Fault, testbed: Testbed, target: Target, flag: str) -> None:
    """verify: the cluster itself reports the node in standby / maintenance (not just the attribute written)."""
    node = str(target.node)

    def look() -> bool | None:
        s = _driver(testbed).state()
        return getattr(s.nodes[node], flag) if s is not None and node in s.nodes else None

    seen = look_until(look, lambda v: v is True, timeout=10)
    if seen is not True:
        raise fault.not_in_effect(target, f"crm_mon does not show {node} in {flag} "
                                          f"({'no node answers' if seen is None else 'it is not'})")


def _node_attr(testbed: Testbed, node: str, name: str, value: str | None) -> None:
    argv = ["crm_attribute", "--node", node, "--name", name]
    argv += ["--update", value] if value is not None else ["--delete"]
    _driver(testbed).admin(argv)


def _any_running(testbed: Testbed) -> str:
    return next((n for n in testbed.topology.node_names if testbed.running(n)), testbed.topology.node_names[0])


class GroupMove(Fault):
    needs: ClassVar[tuple[str, ...]] = ("resource_manager",)
    name: ClassVar[str] = "group_move"
    family: ClassVar[str] = "planned"
    event: ClassVar[str] = "rg_move"
    target_kind: ClassVar[str] = "group_node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "planned move of a group to another node of its list"
    mechanism: ClassVar[str] = "crm_resource --move --node; heal: --clear (a cascading group then goes home)"

    def targets(self, topology: Topology) -> list[Target]:
        return [Target(group=g.name, node=n) for g in topology.groups for n in g.nodes[1:]]

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _driver(testbed).admin(["crm_resource", "--resource", target.need("group"), "--move", "--node",
                               target.need("node")])

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The move constraint crm_resource writes (cli-prefer-<group>) is in the CIB."""
        r = testbed.node(_any_running(testbed)).run(["cibadmin", "--query", "--scope", "constraints"], timeout=15)
        if f'id="cli-prefer-{target.group}"' not in r.stdout:
            raise self.not_in_effect(target, f"no cli-prefer-{target.group} constraint in the CIB")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _driver(testbed).clear_move(target.need("group"))


class NodeStandby(Fault):
    needs: ClassVar[tuple[str, ...]] = ("resource_manager",)
    name: ClassVar[str] = "node_standby"
    family: ClassVar[str] = "planned"
    event: ClassVar[str] = "node standby (maintenance with takeover)"
    target_kind: ClassVar[str] = "node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the node is put in standby: its groups move away, it stays a member"
    mechanism: ClassVar[str] = "node attribute standby=on; heal: delete it"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_attr(testbed, target.need("node"), "standby", "on")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_flag(self, testbed, target, "standby")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_attr(testbed, target.need("node"), "standby", None)


class NodeMaintenance(Fault):
    needs: ClassVar[tuple[str, ...]] = ("resource_manager",)
    name: ClassVar[str] = "node_maintenance"
    family: ClassVar[str] = "planned"
    event: ClassVar[str] = "node maintenance (resources unmanaged, left running)"
    target_kind: ClassVar[str] = "node"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "the node is put in maintenance mode: the cluster stops managing what runs there"
    mechanism: ClassVar[str] = "node attribute maintenance=on; heal: delete it"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_attr(testbed, target.need("node"), "maintenance", "on")

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_flag(self, testbed, target, "maintenance")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        _node_attr(testbed, target.need("node"), "maintenance", None)


class RollingRestart(Fault):
    name: ClassVar[str] = "rolling_restart"
    family: ClassVar[str] = "planned"
    event: ClassVar[str] = "rolling restart of the cluster software"
    target_kind: ClassVar[str] = "cluster"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "every node in turn: graceful stop of the cluster services, start, wait until settled"
    mechanism: ClassVar[str] = "SIGTERM pacemakerd + corosync-cfgtool -H, restart, wait settled; node by node"

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        driver = _driver(testbed)
        for node in reversed(testbed.topology.node_names):  # the usual order: the busiest node last
            driver.stop_services(node)
            groups = [g.name for g in testbed.topology.groups]

            def handed_over(s: ClusterState, node: str = node) -> bool:
                return node in s.offline and all(s.group_node(g) is not None for g in groups)

            driver.wait_until(handed_over, timeout=60, what=f"{node} stopped and its groups running elsewhere")
            driver.start_services(node)
            driver.wait_settled(timeout=90)
            undo.setdefault("done", []).append(node)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Every node went through its stop and start (inject waits for each; this says if one was skipped)."""
        skipped = [n for n in testbed.topology.node_names if n not in undo.get("done", [])]
        if skipped:
            raise self.not_in_effect(target, f"not restarted: {', '.join(skipped)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        for node in testbed.topology.node_names:
            make_whole(testbed, node)
