"""`up` on a testbed that exists: every node whole before the wait, and a node fenced during the wait started again."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from fake_testbed import FakeTestbed

import harness.drivers
from harness.drivers.pacemaker import STACK_PROCESSES
from harness.errors import TestbedError, WaitTimeout
from harness.faults import ops
from harness.testbed import restore as restore_mod
from harness.testbed.restore import ROUNDS, restore


class Nodes(FakeTestbed):
    """Nodes that power on and whose stacks start for real (in memory): which daemons run where."""

    def __init__(self, tmp_path: Path) -> None:
        super().__init__(tmp_path)
        self.daemons = {n: set(STACK_PROCESSES) for n in self.topology.node_names}
        self.shell = self._shell

    def _shell(self, node: str, cmd: str) -> tuple[int, str]:
        if cmd.startswith("pidof "):
            return (0, "42\n") if cmd.split()[1] in self.daemons[node] else (1, "")
        return 0, ""

    def power_on(self, node: str) -> None:
        super().power_on(node)
        self.powered.add(node)
        self.daemons[node] = set(STACK_PROCESSES)  # its init starts the stack

    def start_services(self, node: str) -> None:
        super().start_services(node)
        self.daemons[node] = set(STACK_PROCESSES)


def _driver(monkeypatch: pytest.MonkeyPatch, tb: Nodes, recover: Any) -> list[set[str]]:
    """open_driver → a driver whose `recover` calls ``recover(tb)``; returns the powered nodes at each call."""
    seen: list[set[str]] = []

    def on_recover(**_: Any) -> None:
        seen.append(set(tb.powered))
        recover(tb)
    fake = SimpleNamespace(recover=on_recover, stack_processes=lambda: STACK_PROCESSES)
    monkeypatch.setattr(harness.drivers, "open_driver", lambda _tb: fake)
    monkeypatch.setattr(ops, "RELOOK_S", 0.0)
    return seen


def test_a_node_fenced_while_the_cluster_settles_is_started_and_waited_for_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = Nodes(tmp_path)
    fenced = iter(["node2"])

    def fence_once(t: Nodes) -> None:
        if (n := next(fenced, None)) is not None:
            t.powered.discard(n)  # the DC's fence, scheduled before the heal, lands during the wait
    seen = _driver(monkeypatch, tb, fence_once)
    restore(tb, timeout=60)
    assert len(seen) == 2 and "node2" in seen[1]
    assert tb.switched.count(("power_on", "node2")) == 1 and tb.running("node2")


def test_a_running_node_without_its_stack_is_restarted_before_the_wait(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = Nodes(tmp_path)
    tb.daemons["node2"] -= {"pacemakerd", "pacemaker-controld"}  # corosync only: offline to its peers for good
    _driver(monkeypatch, tb, lambda t: None)
    restore(tb, timeout=60)
    assert ("start_services", "node2") in tb.switched
    assert any(n == "node2" and c.startswith("kill -KILL") for n, c in tb.commands)  # the leftovers first
    assert [s for s in tb.switched if s[0] != "thaw"] == [("start_services", "node2")]  # whole nodes left alone


def test_a_node_fenced_every_time_it_comes_back_is_an_error_naming_it(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = Nodes(tmp_path)
    _driver(monkeypatch, tb, lambda t: t.powered.discard("node3"))
    with pytest.raises(TestbedError, match=f"node3 powered off again each of the {ROUNDS} times"):
        restore(tb, timeout=60)


def test_a_timeout_says_what_each_node_s_own_stack_shows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = Nodes(tmp_path)

    def stuck(t: Nodes) -> None:
        t.daemons["node2"].discard("pacemaker-controld")  # it exits during the wait ("allegedly just fenced")
        raise WaitTimeout("cluster settling", 90, "online=node1,node3; not settled: nodes not online: node2")
    _driver(monkeypatch, tb, stuck)
    with pytest.raises(WaitTimeout) as e:
        restore(tb, timeout=60)
    assert "nodes not online: node2" in str(e.value)
    assert str(e.value).endswith("nodes' own stacks: node2 runs no pacemaker-controld")


def test_without_settle_nodes_off_are_powered_on_and_nothing_else(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """An SSH lab heals its own journal over SSH next: a stack restart first would pre-empt its narrower heals."""
    tb = Nodes(tmp_path)
    tb.powered.discard("node1")
    tb.daemons["node2"].discard("pacemakerd")
    seen = _driver(monkeypatch, tb, lambda t: None)
    restore(tb, timeout=60, settle=False)
    assert seen == [] and tb.switched == [("power_on", "node1")] and tb.commands == []


def test_the_stacks_line_names_nodes_off_and_unanswering(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = Nodes(tmp_path)
    _driver(monkeypatch, tb, lambda t: None)
    assert restore_mod.stacks(tb) == "nodes' own stacks: every node runs corosync, pacemakerd, pacemaker-controld"
    tb.powered.discard("node1")
    assert "node1 is powered off" in restore_mod.stacks(tb)
