"""`up`'s wait for every guest's SSH: a guest that the cluster fences while it boots (a fence of a node powered
off and on within the detection time lands late) is started again once; a second time is the cluster's doing.

A stand-in for the testbed: guests whose SSH answers after a number of tries, and a power switch that a
'late fence' flips while `check_hosts` waits.
"""

from __future__ import annotations

import pytest

from harness.errors import TestbedError, TransportError
from harness.testbed import vagrant
from harness.testbed.vagrant import VagrantTestbed


class Guest:
    def __init__(self, answers_after: int) -> None:
        self.tries, self.answers_after = 0, answers_after

    def connect(self) -> None:
        self.tries += 1
        if self.tries <= self.answers_after:
            raise TransportError("node3", "No route to host")


class Lab:
    """What check_hosts uses of VagrantTestbed: its transports, power state and power switch."""

    def __init__(self, fences_at: list[int]) -> None:
        self._nodes = {"node1": Guest(0), "node3": Guest(5)}
        self.on = {"node1": True, "node3": True}
        self.fences_at = fences_at  # node3's SSH tries after which the cluster powers it off
        self.started: list[str] = []

    def running(self, node: str) -> bool:
        if self._nodes[node].tries in self.fences_at:
            self.fences_at.remove(self._nodes[node].tries)
            self.on[node] = False
        return self.on[node]

    def power_on(self, node: str) -> None:
        self.started.append(node)
        self.on[node] = True
        self._nodes[node].tries = 0  # a fresh boot


@pytest.fixture(autouse=True)
def _no_wait(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vagrant.time, "sleep", lambda s: None)


def test_a_guest_fenced_while_it_boots_is_started_again_and_waited_for() -> None:
    lab, said = Lab(fences_at=[2]), list[str]()
    VagrantTestbed.check_hosts(lab, said.append)  # type: ignore[arg-type]
    assert lab.started == ["node3"] and lab.on["node3"] and lab._nodes["node3"].tries == 6
    assert any("node3 was powered off while it booted" in s for s in said)


def test_a_guest_fenced_again_after_its_restart_is_an_error_that_says_so() -> None:
    lab = Lab(fences_at=[2, 3])
    with pytest.raises(TestbedError, match="node3 was powered off again while it booted.*fencing it in a loop"):
        VagrantTestbed.check_hosts(lab)  # type: ignore[arg-type]
    assert lab.started == ["node3"]


def test_guests_that_answer_are_left_alone() -> None:
    lab = Lab(fences_at=[])
    VagrantTestbed.check_hosts(lab)  # type: ignore[arg-type]
    assert lab.started == [] and lab._nodes["node3"].tries == 6
