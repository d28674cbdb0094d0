"""A testbed fake with switches that do only what each test says: the whole provider interface, in memory.

Faults are written against `harness.testbed.base.Testbed`; mypy checks this fake against it too
(`_: Testbed = FakeTestbed(...)` below), so a capability added to the interface shows up here.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from harness.errors import CommandFailed
from harness.result import Result
from harness.testbed.base import CAPABILITIES, Capabilities, Impairment, LogFile, Progress, Rule, Testbed, quiet
from harness.testbed.layout import Layout
from harness.topology import DEFAULT_TESTBED, load_topology
from harness.transport.base import Command

Shell = Callable[[str, str], tuple[int, str]]


class FakeNode:
    def __init__(self, testbed: FakeTestbed, name: str) -> None:
        self.testbed, self.name = testbed, name

    def run(self, cmd: Command, *, timeout: float, check: bool = True, env: Mapping[str, str] | None = None,
            input: str | None = None) -> Result:
        line = cmd if isinstance(cmd, str) else " ".join(cmd)
        self.testbed.commands.append((self.name, line))
        status, out = self.testbed.shell(self.name, line)
        r = Result(node=self.name, argv=("/bin/sh", "-c", line), exit_status=status, stdout=out, stderr="",
                   duration_s=0.0)
        if check and status != 0:
            raise CommandFailed(r)
        return r

    def alive(self) -> bool:
        return self.name in self.testbed.powered


class FakeTestbed:
    """The embedded testbed's interface with switches that do only what each test says."""

    __test__ = False

    def __init__(self, state_root: Path) -> None:
        self.topology = load_topology(DEFAULT_TESTBED)
        self.layout = Layout(self.topology, instance="unit", state_root=state_root)
        self.net: dict[str, Any] = {"carrier": True, "bridge_up": True, "tables": {}}  # the switch as faults see it
        self.impaired: str | None = None  # what impairment_missing reports
        self.powered = set(self.topology.node_names)
        self.adapter_port = True   # what set_adapter returns: does the port exist?
        self.bridge = True         # what set_network returns
        self.mode: str | None = "ok"
        self.read_error: str | None = None   # what a direct read of the disk returns
        self.freezer = "THAWED"
        self.fence: dict[str, str] = {}  # fence device → its mode (absent: ok)
        self.commands: list[tuple[str, str]] = []
        self.switched: list[tuple[str, ...]] = []
        self.shell: Shell = lambda node, cmd: (0, "")

    def running(self, node: str) -> bool:
        return node in self.powered

    def node(self, name: str) -> FakeNode:
        return FakeNode(self, name)

    def client(self) -> FakeNode:
        return FakeNode(self, "client")

    def up(self, progress: Progress = quiet, placement: bool = True) -> None:
        raise AssertionError("faults never bring a testbed up")

    def down(self, progress: Progress = quiet) -> list[str]:
        raise AssertionError("faults never tear a testbed down")

    def leftovers(self) -> list[str]:
        return []

    def power_off(self, node: str) -> None:
        self.switched.append(("power_off", node))

    def power_on(self, node: str) -> None:
        self.switched.append(("power_on", node))

    def start_services(self, node: str) -> None:
        self.switched.append(("start_services", node))

    def set_adapter(self, node: str, network: str, up: bool) -> bool:
        self.switched.append(("adapter", node, network, str(up)))
        return self.adapter_port

    def set_network(self, network: str, up: bool) -> bool:
        self.switched.append(("network", network, str(up)))
        return self.bridge

    def disk_mode(self, disk: str) -> str | None:
        return self.mode

    def set_disk_mode(self, disk: str, mode: str) -> None:
        self.switched.append(("disk", disk, mode))
        if mode == "ok":
            self.read_error = None  # plugged back: it reads

    def disk_read_error(self, disk: str, timeout: float = 10.0) -> str | None:
        return self.read_error

    def disk_write_error(self, disk: str) -> str | None:
        return "dd: error writing: Input/output error" if self.mode in ("eio", "eio-write") else None

    def fence_device_mode(self, device: str) -> str | None:
        return self.fence.get(device, "ok")

    def set_fence_device(self, device: str, mode: str) -> None:
        self.switched.append(("fence", device, mode))
        self.fence[device] = mode

    def fence_check(self, device: str, node: str, timeout: float = 3.0) -> str | None:
        return {"ok": None, "fail": "ERR device failed"}.get(self.fence.get(device, "ok"),
                                                              f"no answer from fence device {device} within 2 s")

    def freeze(self, node: str) -> None:
        self.switched.append(("freeze", node))

    def freezer_state(self, node: str) -> str:
        return self.freezer

    def spawn(self, node: str, argv: list[str], *, pidfile: str) -> None:
        self.switched.append(("spawn", node, *argv))

    def thaw(self, node: str) -> None:
        self.switched.append(("thaw", node))

    def capabilities(self) -> Capabilities:
        return {name: None for name in CAPABILITIES}

    @property
    def journal_path(self) -> Path:
        return self.layout.journal

    def carrier(self, node: str, network: str) -> bool | None:
        return self.net["carrier"] if node in self.powered else None

    def network_up(self, network: str) -> bool | None:
        return self.net["bridge_up"]

    def add_rule(self, rule_id: str, rule: Rule) -> int:
        rules = [rule] * (4 if rule.kind == "heartbeat" else 2)
        self.net["tables"][rule_id] = rules
        return len(rules)

    def rule_in_effect_since(self, rule_id: str) -> float | None:
        return self.net.get("in_effect", {}).get(rule_id)

    def rule_count(self, rule_id: str) -> int | None:
        found = self.net["tables"].get(rule_id)
        return None if found is None else len(found)

    def remove_rule(self, rule_id: str) -> None:
        self.net["tables"].pop(rule_id, None)

    def impair(self, impairment_id: str, impairment: Impairment) -> dict[str, Any]:
        self.switched.append(("impair", impairment.mode, impairment.node, impairment.network))
        return {"id": impairment_id}

    def impairment_missing(self, undo: dict[str, Any]) -> str | None:
        return self.impaired

    def unimpair(self, undo: dict[str, Any]) -> None:
        self.switched.append(("unimpair", undo["id"]))

    def mountpoint(self, group: str) -> str:
        return str(self.layout.mountpoint(group))

    def log_files(self) -> list[LogFile]:
        return []

    def log_size(self, log: LogFile) -> tuple[int, int]:
        return 0, 0

    def read_log(self, log: LogFile, start: int) -> tuple[int, bytes]:
        raise FileNotFoundError(log.path)

    def event_logs(self) -> dict[str, Path]:
        return {"notifications": self.layout.notification_log, "fences": self.layout.state / "fences.jsonl"}

    def mounts(self) -> dict[str, list[str]] | None:
        return None




def _conforms(tb: FakeTestbed) -> Testbed:
    return tb  # mypy: the fake implements the whole interface
