"""Disk faults beyond a pull: read errors, write errors, a hang; their plan, limits and hang-safe checks."""

from __future__ import annotations

import pytest

from harness.faults import FAULTS, Target
from harness.plan import Case, expect, plan
from harness.testbed import disk
from harness.topology import DEFAULT_TESTBED, load_topology

TOPO = load_topology(DEFAULT_TESTBED)


@pytest.mark.parametrize("fault, words", [("disk_read_errors", "gets read errors"),
                                          ("disk_write_errors", "gets write errors"),
                                          ("disk_hang", "blocks on it")])
def test_a_single_shared_disk_failing_for_every_node_is_an_outage(fault: str, words: str) -> None:
    e = expect(TOPO, Case(fault, Target(disk="shared")), {"app": "node1"})[0]
    assert e.outcome == "outage" and words in e.why
    assert FAULTS[fault].family == "disk" and FAULTS[fault].mode in ("eio-read", "eio-write", "hang")


def test_a_hung_disk_is_judged_against_the_monitor_timeout_not_the_plain_sla() -> None:
    e = expect(TOPO, Case("disk_hang", Target(disk="shared")), {"app": "node1"})[0]
    assert e.limits == {"max_detection_s": 5 + 2 + 20, "max_notification_s": 10 + 2 + 20}
    assert expect(TOPO, Case("disk_pull", Target(disk="shared")), {"app": "node1"})[0].limits == {}


def test_only_the_cases_that_wait_out_a_timeout_are_slow() -> None:
    assert {n for n, f in FAULTS.items() if f.suite == "slow"} == {"disk_hang", "fence_hang"}
    assert {"disk_read_errors-shared", "disk_write_errors-shared", "disk_hang-shared"} <= {c.id for c in plan(TOPO)}


def test_a_check_held_by_a_hung_disk_returns_instead_of_waiting_for_it() -> None:
    # `sleep` stands for a dd held by the disk; had the check waited for it, this would return much later
    got = disk._dd(["sleep", "600"], "a read of /dev/loopX", timeout=0.3)
    assert got == "a read of /dev/loopX got no answer within 0.3s"
    assert disk._dd(["true"], "x", timeout=5) is None
    assert disk._dd(["sh", "-c", "echo 'dd: Input/output error' >&2; exit 1"], "x", 5) == "dd: Input/output error"
