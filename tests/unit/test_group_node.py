"""Where a group runs, asked of the nodes after its first choice first (not of the loaded node it runs on)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from harness.errors import FalloverError
from harness.faults import ops


class Driver:
    def __init__(self, node: str | None, asks: list[Any]) -> None:
        self.node, self.asks = node, asks

    def ask_first(self, nodes: list[str]) -> None:
        self.asks.append(list(nodes))

    def state(self) -> Any:
        self.asks.append("state")
        return SimpleNamespace(group_node=lambda g: self.node, summary=lambda: "online=node1,node2,node3")


def _testbed() -> Any:
    group = SimpleNamespace(nodes=["node1", "node2", "node3"])
    return SimpleNamespace(topology=SimpleNamespace(group=lambda name: group))


def test_the_nodes_after_the_groups_home_are_asked_first(monkeypatch: pytest.MonkeyPatch) -> None:
    asks: list[Any] = []
    monkeypatch.setattr("harness.drivers.open_driver", lambda tb: Driver("node1", asks))
    assert ops.group_node(_testbed(), "app") == "node1"
    assert asks == [["node2", "node3"], "state"]


def test_a_driver_without_a_query_order_is_just_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    plain = SimpleNamespace(state=lambda: SimpleNamespace(group_node=lambda g: "node2", summary=lambda: ""))
    monkeypatch.setattr("harness.drivers.open_driver", lambda tb: plain)
    assert ops.group_node(_testbed(), "app") == "node2"


def test_a_group_running_nowhere_is_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("harness.drivers.open_driver", lambda tb: Driver(None, []))
    with pytest.raises(FalloverError, match="group app is not running anywhere: online=node1,node2,node3"):
        ops.group_node(_testbed(), "app")
