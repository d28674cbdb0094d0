"""Fence faults on the embedded cluster: no takeover while no fence succeeds; level 2 fences when level 1 fails.

Each passes on the correct cluster and fails on one broken for it: `nofence` (fencing disabled in
the cluster's own configuration, while the topology declares it) takes the group over without any
fence; `nolevel2` declares two levels whose second can run nowhere. About 6 minutes in all (two
testbeds of their own; the hang waits out the 15 s fence timeout).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.case_result import CaseResult
from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.testbed.base import Testbed
from harness.testbed.local import LocalTestbed
from harness.timeline import FENCED, Timeline
from own_testbed import separate_testbed

pytestmark = pytest.mark.testbed

DATA = Path(__file__).resolve().parent.parent / "data"
TESTBEDS = Path(__file__).resolve().parents[2] / "testbeds"


def fence_case(device: str | None = None, fault: str = "fence_fail") -> Case:
    return Case(fault, Target(node="node1", device=device))


def fences(result: CaseResult) -> list[tuple[str, str]]:
    t = Timeline.load(result.run_dir / "timeline.json")
    return [(str(e.data.get("device")), str(e.data.get("outcome"))) for e in t.of(FENCED) if e.node == "node1"]


def test_a_failing_fence_device_holds_the_takeover_until_it_is_mended(testbed: Testbed, tmp_path: Path) -> None:
    result = Runner(testbed, tmp_path).run(fence_case())
    report = result.report()
    assert result.status == "PASS", report
    v = result.verdicts["fencing"]
    assert v.valid is True and "fence attempt(s) failed" in v.explanation, report
    seen = fences(result)
    assert any(o.startswith("ERR fence_fail") for _, o in seen), seen
    assert result.verdicts["consistency"].valid is True, report


@pytest.mark.slow
def test_a_hung_fence_device_is_given_up_at_its_timeout_and_nothing_moves(testbed: Testbed, tmp_path: Path) -> None:
    result = Runner(testbed, tmp_path).run(fence_case(fault="fence_hang"))
    report = result.report()
    assert result.status == "PASS", report
    assert any(o.startswith("TIMEOUT fence_hang") for _, o in fences(result)), fences(result)


@pytest.fixture
def cluster_of(request: pytest.FixtureRequest) -> Iterator[LocalTestbed]:
    with separate_testbed(request.param) as tb:
        yield tb


@pytest.mark.parametrize("cluster_of", [DATA / "broken" / "nofence.yaml"], indirect=True)
def test_a_cluster_that_takes_over_without_fencing_fails_the_fencing_verdict(cluster_of: LocalTestbed,
                                                                             tmp_path: Path) -> None:
    result = Runner(cluster_of, tmp_path).run(fence_case())
    report = result.report()
    assert result.status == "FAIL", report
    v = result.verdicts["fencing"]
    assert v.valid is False and "a takeover without a successful fence" in v.explanation, report


@pytest.mark.parametrize("cluster_of", [TESTBEDS / "local-levels.yaml"], indirect=True)
def test_when_level_1_fails_level_2_fences_and_the_group_falls_over(cluster_of: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(cluster_of, tmp_path).run(fence_case(device="fence"))
    report = result.report()
    assert result.expected is not None and result.expected.outcome == "fallover"
    assert result.status == "PASS", report
    seen = fences(result)
    assert any(d == "fence" and o.startswith("ERR") for d, o in seen), seen
    assert ("backup", "OK") in seen, seen
    assert "fenced by device backup" in result.verdicts["fencing"].explanation, report


@pytest.mark.parametrize("cluster_of", [DATA / "broken" / "nolevel2.yaml"], indirect=True)
def test_a_second_level_that_can_run_nowhere_leaves_the_group_waiting(cluster_of: LocalTestbed,
                                                                       tmp_path: Path) -> None:
    result = Runner(cluster_of, tmp_path).run(fence_case(device="fence"))
    report = result.report()
    assert result.status == "FAIL", report
    assert {"fallover", "wait for the outcome"} <= {v.name for v in result.failures}, report
    assert not any(d == "backup" for d, _ in fences(result)), fences(result)
