"""The SSH provider's power: a node the cluster fences after it was powered on again is powered on again.

CI, 2026-12-02 (stop 32): the contract test powered the lab's spare node off and on; the fence the DC had
scheduled when the node vanished landed after the power-on (stonith-action off keeps it off), and `up`
waited 120 s for SSH on a node that was off, then failed with "No route to host". These tests drive
`SshTestbed` with an out-of-band power switch in memory and a connect that works only while it is on.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

import harness.drivers
from harness.errors import TestbedError, TransportError
from harness.testbed import sshpower
from harness.testbed.restore import ROUNDS
from harness.testbed.ssh import SshTestbed
from harness.topology import load_topology
from tests.unit.test_ssh_inventory import real_inventory


class Switch:
    """An out-of-band power switch (ipmitool's part) and the nodes' SSH, which answers only while on."""

    def __init__(self, tb: SshTestbed) -> None:
        self.on = {n: True for n in tb.topology.node_names}
        self.calls: list[tuple[str, str]] = []
        self.fence_after_power_on: list[str] = []  # nodes the DC's pending fence turns off right after

    def oob(self, key: str, **kw: str) -> str:
        node = kw["node"]
        self.calls.append((key, node))
        if key == "power_status":
            return "Chassis Power is " + ("on" if self.on[node] else "off")
        self.on[node] = key == "power_on"
        if key == "power_on" and node in self.fence_after_power_on:
            self.fence_after_power_on.remove(node)
            self.on[node] = False
        return ""


def _testbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, oob: dict[str, str] | None = None
             ) -> tuple[SshTestbed, Switch]:
    raw = real_inventory()
    if oob is not None:
        raw["ssh"]["oob"] = oob
    (tmp_path / "t.yaml").write_text(yaml.safe_dump(raw))
    tb = SshTestbed(load_topology(tmp_path / "t.yaml"), instance="unit")
    monkeypatch.setattr(sshpower, "POWER_TTL_S", 0.0)
    monkeypatch.setattr(sshpower, "BOOT_WAIT_S", 0.2)
    monkeypatch.setattr(sshpower.time, "sleep", lambda s: None)
    sw = Switch(tb)
    monkeypatch.setattr(tb, "_oob", sw.oob)
    for n, t in tb._nodes.items():
        def connect(n: str = n) -> None:
            if not sw.on[n]:
                raise TransportError(n, "unreachable: No route to host")
        monkeypatch.setattr(t, "connect", connect)
    return tb, sw


def test_a_node_fenced_right_after_its_power_on_is_powered_on_again(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    tb, sw = _testbed(tmp_path, monkeypatch)
    sw.on["node3"] = False
    sw.fence_after_power_on.append("node3")
    tb.power_on("node3")
    assert sw.on["node3"] and [c for c in sw.calls if c[0] == "power_on"] == [("power_on", "node3")] * 2


def test_a_node_fenced_each_time_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, sw = _testbed(tmp_path, monkeypatch)
    sw.on["node3"] = False
    sw.fence_after_power_on.extend(["node3"] * ROUNDS)
    with pytest.raises(TestbedError, match=f"node3 was powered off again each of the {ROUNDS} times"):
        tb.power_on("node3")


def test_without_a_power_reading_a_node_that_does_not_answer_is_waited_for_as_booting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No power reading (no out-of-band power, or sysrq reboot): a node that does not answer may be booting."""
    tb, sw = _testbed(tmp_path, monkeypatch, oob={})
    sw.on["node3"] = False
    with pytest.raises(TransportError, match="No route to host"):
        tb._reach("node3", first=False)  # BOOT_WAIT_S out, never "off"
    assert ("power_status", "node3") not in sw.calls


def _driver(monkeypatch: pytest.MonkeyPatch, on_recover: Any) -> list[dict[str, bool]]:
    seen: list[dict[str, bool]] = []

    def recover(**_: Any) -> None:
        seen.append(on_recover())
    fake = SimpleNamespace(recover=recover, stack_processes=lambda: ["corosync"])
    monkeypatch.setattr(harness.drivers, "open_driver", lambda _tb: fake)
    return seen


def test_up_powers_on_a_node_fenced_while_the_cluster_settles_and_waits_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, sw = _testbed(tmp_path, monkeypatch)
    monkeypatch.setattr(tb, "_mirror_events", lambda: None)
    monkeypatch.setattr(tb, "check_hosts", lambda progress: None)
    fences = iter(["node3"])

    def fence_once() -> dict[str, bool]:
        seen = dict(sw.on)
        if (n := next(fences, None)) is not None:
            sw.on[n] = False  # the DC's fence, scheduled when the node vanished, lands during the wait
        return seen
    seen = _driver(monkeypatch, fence_once)
    tb.state = tmp_path / "state"
    shown: list[str] = []
    tb.up(progress=shown.append, placement=False)
    assert len(seen) == 2 and seen[1]["node3"] and sw.on["node3"]
    assert sw.calls.count(("power_on", "node3")) == 1
    assert any("node3 powered off while the cluster settled" in s for s in shown)


def test_check_hosts_does_not_wait_for_ssh_on_a_node_the_power_reading_says_is_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb, sw = _testbed(tmp_path, monkeypatch)
    tb._checked = True  # a later `up`: node3 was fenced since the first
    sw.on["node3"] = False
    for t in tb._nodes.values():
        monkeypatch.setattr(t, "run", lambda *a, **kw: SimpleNamespace(failed=False))
    shown: list[str] = []
    tb.check_hosts(shown.append)
    assert "node3 was powered off meanwhile (fenced?): it is powered on below" in shown
    assert sw.calls.count(("power_status", "node3")) == 1  # one failed connect, one reading: no 120 s wait
