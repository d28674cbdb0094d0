"""No silent no-op: on a fake testbed whose switches do nothing, every fault refuses or reports it.

The real effects are checked on the embedded testbed (tests/testbed/test_faults.py); here each
verification is shown to *fail* when the effect is missing, and the nemesis to undo the fault,
journal nothing it should not, and collect every heal failure. This module: the nemesis and the
catalogue; each family's checks are in test_fault_checks_network.py and test_fault_checks_host.py.
"""

from __future__ import annotations

import os
from typing import Any

import pytest
from fake_testbed import FakeTestbed
from fault_checks import failed_start

from harness.errors import HealError, TestbedError
from harness.faults.base import Fault, Target
from harness.faults.nemesis import HealFailed, Nemesis
from harness.faults.registry import FAULTS

pytestmark = pytest.mark.usefixtures("quick")


# -- the nemesis: undo on failure, collect every heal failure -------------------------------------

def test_verify_failure_whose_undo_fails_too_says_both(tb: FakeTestbed, switch: dict[str, Any],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The carrier stays (verify fails), and plugging the cable back raises (the undo fails)."""

    def set_adapter(node: str, network: str, up: bool) -> bool:
        if up:
            raise TestbedError("netlink said no")
        return True

    monkeypatch.setattr(tb, "set_adapter", set_adapter)
    err, nemesis, _ = failed_start(tb, HealFailed, "adapter_down", node="node1", network="service")
    assert str(err).startswith("healing adapter_down on node1-service failed: adapter_down on node1-service did "
                               "not take effect: node1 still sees a carrier on service; undoing it failed too: "
                               "netlink said no")
    assert [e.fault for e in nemesis.journal.entries()] == ["adapter_down"]  # kept for `fallover heal`


class Flaky(Fault):
    """A fault whose heal fails while `broken` is set."""

    name = "flaky"
    family = "test"
    event = "test"
    target_kind = "node"
    broken: set[str] = set()

    def inject(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        pass

    def verify(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        pass

    def heal(self, testbed: Any, target: Target, undo: dict[str, Any]) -> None:
        if target.node in self.broken:
            raise TestbedError(f"{target.node} would not come back\nsecond line")


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> type[Flaky]:
    monkeypatch.setitem(FAULTS, "flaky", Flaky())
    Flaky.broken = set()
    return Flaky


def test_heal_all_heals_past_failures_and_reports_them_all(tb: FakeTestbed, flaky: type[Flaky]) -> None:
    nemesis = Nemesis(tb)
    for node in ("node1", "node2", "node3"):
        nemesis.start("flaky", node=node)
    flaky.broken = {"node3", "node1"}
    with pytest.raises(HealFailed) as caught:
        nemesis.heal_all()
    err = caught.value
    assert isinstance(err, HealError)
    assert err.failures == [("flaky on node3", "node3 would not come back second line"),
                            ("flaky on node1", "node1 would not come back second line")]  # each tried once
    assert err.healed == ["flaky on node2"]
    assert len(str(err).splitlines()) == 1 and str(err).startswith("2 faults could not be healed: flaky on node3")
    assert sorted(e.target["node"] for e in nemesis.journal.entries()) == ["node1", "node3"]
    flaky.broken = set()
    assert sorted(nemesis.heal_all()) == ["flaky on node1", "flaky on node3"]
    assert nemesis.journal.entries() == []


def test_replay_heals_past_an_unknown_fault_and_a_failing_heal(tb: FakeTestbed, flaky: type[Flaky]) -> None:
    from harness.faults.journal import Entry

    crashed = Nemesis(tb)
    crashed.start("flaky", node="node1")
    crashed.start("flaky", node="node2")
    crashed.journal.record(Entry(fault="meteor_strike", target={"node": "node3"}))
    flaky.broken = {"node2"}
    with pytest.raises(HealFailed) as caught:
        Nemesis(tb).replay()  # a new process, from the journal alone
    assert [label for label, _ in caught.value.failures] == ["meteor_strike on node3", "flaky on node2"]
    assert caught.value.healed == [f"flaky on node1 (injected by pid {os.getpid()})"]


# -- coverage of the catalogue ------------------------------------------------------------------------

NOT_YET_VERIFIED: set[str] = set()  # every fault checks its effect; keep it so


def test_every_fault_verifies_its_effect() -> None:
    """A fault that keeps the default verify() checks nothing; the list of those may only shrink."""
    unverified = {name for name, f in FAULTS.items() if type(f).verify is Fault.verify}
    assert unverified <= NOT_YET_VERIFIED, f"faults without a verify(): {sorted(unverified - NOT_YET_VERIFIED)}"
