"""Fencing faults: the fence device fails, or hangs past its timeout, while a node must be fenced.

Pacemaker may recover a lost node's resources elsewhere only once that node is fenced: a node
it cannot fence stays UNCLEAN and its resources wait (Pacemaker Explained, "Fencing"). These
faults break the device (every level of `cluster.fencing_topology`, or one level with
`--device`), then power the target node off, so the cluster must fence it and cannot. With every level broken the group must not move (the `fencing` verdict says whether a
takeover came before a successful fence); with one level broken the next level fences.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar

from harness.errors import FalloverError
from harness.faults.base import Fault, Target, look_until
from harness.faults.ops import make_whole
from harness.testbed.base import Testbed


class _FenceFault(Fault):
    family: ClassVar[str] = "fencing"
    target_kind: ClassVar[str] = "node"
    needs: ClassVar[tuple[str, ...]] = ("fence_device", "fencing", "power")
    mode: ClassVar[str] = ""
    extra_asserted: ClassVar[tuple[str, ...]] = ("fencing",)  # what these faults are about: no takeover without one

    def devices(self, testbed: Testbed, target: Target) -> list[str]:
        return [target.device] if target.device else list(testbed.topology.cluster.fencing_topology)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        for device in self.devices(testbed, target):
            mode = testbed.fence_device_mode(device)
            if mode is None:
                raise self.refused(target, f"fence device {device} is not there (its broker is not running; "
                                           f"is the testbed up?)")
            if mode != "ok":
                raise self.refused(target, f"fence device {device} is already in mode {mode!r}")
        self.require_running(testbed, target, target.need("node"), "it cannot be powered off to need a fence")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Break the devices, ask each the way the fencer does (while the node still runs, so the question is
        harmless: `on` of a running node), then power the node off: now the cluster must fence it."""
        node = target.need("node")
        undo["devices"] = self.devices(testbed, target)
        for device in undo["devices"]:
            testbed.set_fence_device(device, self.mode)
        for device in undo["devices"]:
            seen = look_until(functools.partial(testbed.fence_check, device, node, timeout=1.0),
                              lambda e: e is not None and (self.mode != "hang" or "no answer" in e), timeout=3.0)
            if seen is None or (self.mode == "hang" and "no answer" not in seen):
                raise self.not_in_effect(target, f"fence device {device} still answers "
                                                 f"{'OK' if seen is None else seen}")
        undo["powered_off"] = True
        testbed.power_off(node)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node is powered off and every broken device is still in its mode (inject asked each one)."""
        if testbed.running(target.need("node")):
            raise self.not_in_effect(target, f"{target.node} is still running")
        for device in undo["devices"]:
            if testbed.fence_device_mode(device) != self.mode:
                raise self.not_in_effect(target, f"fence device {device} is in mode "
                                                 f"{testbed.fence_device_mode(device)!r}, not {self.mode!r}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Mend the devices, then do what an operator does once the fence path works: fence the node (it may
        have been given up on after too many failures), then power it on. Fencing first: a node powered on
        while a fence of it is still owed would be fenced again under the recovery."""
        from harness.drivers import open_driver

        for device in undo.get("devices") or self.devices(testbed, target):
            testbed.set_fence_device(device, "ok")
        if not undo.get("powered_off"):
            return
        node = target.need("node")
        if not testbed.running(node):
            timeout = testbed.topology.cluster.fence_timeout_s * 2
            try:
                open_driver(testbed).admin(["stonith_admin", "--fence", node, "--timeout", str(timeout)],
                                           timeout=timeout + 15)
            except FalloverError as e:
                raise FalloverError(f"{node}: the fence devices work again, but fencing it still fails: {e}") from e
        make_whole(testbed, node)


class FenceFail(_FenceFault):
    name: ClassVar[str] = "fence_fail"
    event: ClassVar[str] = "fence_failure"
    mode: ClassVar[str] = "fail"
    summary: ClassVar[str] = ("the fence device fails (every level, or one with --device), then the node is "
                              "powered off: its resources must wait for a successful fence")
    mechanism: ClassVar[str] = ("the fence broker answers the device's power actions with an error, then the node "
                                "is powered off; heal: the device works again, the node is fenced, then powered on")


class FenceHang(_FenceFault):
    name: ClassVar[str] = "fence_hang"
    event: ClassVar[str] = "fence_timeout"
    mode: ClassVar[str] = "hang"
    suite: ClassVar[str | None] = "slow"  # waits out cluster.fence_timeout_s at least once
    summary: ClassVar[str] = ("the fence device hangs past its timeout (stonith-timeout), then the node is "
                              "powered off: its resources must wait for a successful fence")
    mechanism: ClassVar[str] = ("the fence broker holds the device's power actions unanswered until the agent is "
                                "killed at its timeout, then the node is powered off; heal: as fence_fail")
