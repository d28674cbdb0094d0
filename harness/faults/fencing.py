"""Fencing faults: the fence device fails, or hangs past its timeout, while a node must be fenced.

Pacemaker may recover a lost node's resources elsewhere only once that node is fenced: a node
it cannot fence stays UNCLEAN and its resources wait (Pacemaker Explained, "Fencing"). These
faults break the device (every level of `cluster.fencing_topology`, or one level with
`--device`), then power the target node off as the trigger, so the cluster must fence it and
cannot. With every level broken the group must not move (the `fencing` verdict says whether a
takeover came before a successful fence); with one level broken the next level fences.
"""

from __future__ import annotations

from typing import Any, ClassVar

from harness.faults.base import Fault, Target, look_until
from harness.testbed.base import Testbed


class _FenceFault(Fault):
    family: ClassVar[str] = "fencing"
    target_kind: ClassVar[str] = "node"
    needs: ClassVar[tuple[str, ...]] = ("fence_device", "fencing")
    mode: ClassVar[str] = ""
    destructive: ClassVar[bool] = False  # by itself it breaks nothing but the fence path; the trigger does
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
        self.require_running(testbed, target, target.need("node"), "there is no power action left to ask for")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        undo["devices"] = self.devices(testbed, target)
        for device in undo["devices"]:
            testbed.set_fence_device(device, self.mode)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The real fence agent, through each broken device, gets an error (fail) or no answer (hang)."""
        node = target.need("node")
        for device in undo["devices"]:
            seen = look_until(lambda d=device: testbed.fence_check(d, node, timeout=1.0),  # type: ignore[misc]
                              lambda e: e is not None and (self.mode != "hang" or "no answer" in e), timeout=3.0)
            if seen is None:
                raise self.not_in_effect(target, f"fence device {device} still answers OK")
            if self.mode == "hang" and "no answer" not in seen:
                raise self.not_in_effect(target, f"fence device {device} answered ({seen}) instead of hanging")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        for device in undo.get("devices") or self.devices(testbed, target):
            testbed.set_fence_device(device, "ok")


class FenceFail(_FenceFault):
    name: ClassVar[str] = "fence_fail"
    event: ClassVar[str] = "fence_failure"
    mode: ClassVar[str] = "fail"
    summary: ClassVar[str] = ("the fence device fails (every level, or one with --device), then the node is "
                              "powered off: its resources must wait for a successful fence")
    mechanism: ClassVar[str] = ("the fence broker answers the device's power actions with an error; trigger: "
                                "node_power_off; heal: the device works again")


class FenceHang(_FenceFault):
    name: ClassVar[str] = "fence_hang"
    event: ClassVar[str] = "fence_timeout"
    mode: ClassVar[str] = "hang"
    suite: ClassVar[str | None] = "slow"  # waits out cluster.fence_timeout_s at least once
    summary: ClassVar[str] = ("the fence device hangs past its timeout (stonith-timeout), then the node is "
                              "powered off: its resources must wait for a successful fence")
    mechanism: ClassVar[str] = ("the fence broker holds the device's power actions unanswered until the agent is "
                                "killed at its timeout; trigger: node_power_off; heal: the device answers again")
