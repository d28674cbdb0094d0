"""Deliberately misconfigured clusters: the suites must fail them, for the right reason, in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Target
from harness.plan import Case
from harness.case_result import CaseResult
from harness.runner import Runner
from harness.testbed.local import LocalTestbed
from own_testbed import separate_testbed

pytestmark = pytest.mark.testbed

BROKEN = Path(__file__).resolve().parent.parent / "data" / "broken"


@pytest.fixture
def broken(request: pytest.FixtureRequest) -> Iterator[LocalTestbed]:
    with separate_testbed(BROKEN / f"{request.param}.yaml") as tb:
        yield tb


@pytest.mark.parametrize("broken", ["sticky"], indirect=True)
def test_failback_disabled_by_stickiness_fails_the_cascading_policy(broken: LocalTestbed, tmp_path: Path) -> None:
    # the extra configuration really is in the cluster
    r = broken.node("node1").run(["crm_attribute", "--type", "rsc_defaults", "--name", "resource-stickiness",
                                  "--query", "--quiet"], timeout=10)
    assert r.stdout.strip() == "1000"
    result = Runner(broken, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert not result.passed
    # the fallover itself was fine; what fails is the return to the declared policy, named as such
    failed = {v.name for v in result.failures}
    assert failed == {"policy", "redundancy_restored"}, result.report()
    policy = result.verdicts["policy"]
    assert "cascading" in policy.explanation and "stayed on node2" in policy.explanation, policy.explanation
    assert "app on node2, not on node1" in result.verdicts["redundancy_restored"].explanation


@pytest.mark.parametrize("broken", ["nofence"], indirect=True)
def test_no_fencing_no_quorum_then_a_partition_is_caught_as_split_brain(broken: LocalTestbed,
                                                                       tmp_path: Path) -> None:
    r = broken.node("node1").run(["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled",
                                  "--query", "--quiet"], timeout=10)
    assert r.stdout.strip() == "false"
    result = Runner(broken, tmp_path).run(Case("partition", Target(nodes=("node1",))))
    assert not result.passed
    split = result.verdicts["split_brain"]
    assert split.valid is False, result.report()
    assert "split brain" in split.explanation.lower(), split.explanation


def assert_judged(result: CaseResult, *, failing: set[str], cause: list[str]) -> None:
    """The case is a FAIL (never an ERROR), the named verdicts fail, the report names the cause in
    the cluster's own terms, carries no traceback, and the case directory holds its evidence."""
    report = result.report()
    assert result.status == "FAIL", report
    failed = {v.name for v in result.failures}
    assert failing <= failed, report
    for words in cause:
        assert words in report, f"{words!r} not in the report:\n{report}"
    assert "Traceback" not in report
    for name in ("timeline.json", "verdicts.json", "report.txt"):
        assert (result.run_dir / name).is_file(), f"{name} missing in {result.run_dir}"
    assert (result.run_dir / "report.txt").read_text().strip() == report.strip()


@pytest.mark.parametrize("broken", ["banned"], indirect=True)
def test_leftover_bans_leave_nowhere_to_fall_over(broken: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(broken, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert_judged(result, failing={"fallover", "wait for the outcome"},
                  cause=["app banned from node2", "app banned from node3"])


@pytest.mark.parametrize("broken", ["nofenceroute"], indirect=True)
def test_a_node_nobody_can_fence_blocks_the_takeover(broken: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(broken, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert_judged(result, failing={"fallover", "wait for the outcome"}, cause=["node1 is UNCLEAN"])
    why = "\n".join(result.diagnosis["wait for the outcome"])
    assert "fencing (off) of node1 requested by" in why and ": failed" in why, why
    assert "app-app counts as still running on node1 (UNCLEAN)" in why, why


@pytest.mark.parametrize("broken", ["blocked"], indirect=True)
def test_on_fail_block_freezes_a_killed_application(broken: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(broken, tmp_path).run(Case("app_kill", Target(group="app")))
    assert_judged(result, failing={"fallover", "wait for the outcome"},
                  cause=["app-app is BLOCKED", "failed action: app-app monitor on node1"])


@pytest.mark.parametrize("broken", ["threshold"], indirect=True)
def test_a_high_migration_threshold_restarts_in_place_instead_of_falling_over(broken: LocalTestbed,
                                                                             tmp_path: Path) -> None:
    result = Runner(broken, tmp_path).run(Case("app_kill", Target(group="app")))
    assert_judged(result, failing={"fallover", "wait for the outcome"},
                  cause=["below migration-threshold=3", "restarts it in place on node1"])


@pytest.mark.parametrize("broken", ["unsynced"], indirect=True)
def test_an_application_that_acknowledges_before_fsync_loses_writes_at_a_power_cut(broken: LocalTestbed,
                                                                                  tmp_path: Path) -> None:
    """Each node has its own view of the shared disk: the power cut of node1 drops what it had not flushed
    (the sample application, which fsyncs, passes the same case: test_runner.py)."""
    r = broken.node("node1").run(["pgrep", "-f", "kvapp.py --ack-before-fsync"], timeout=10, check=False)
    assert r.ok, "the broken application is not what runs on node1"
    result = Runner(broken, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert_judged(result, failing={"lost_writes"}, cause=["acknowledged writes lost"])
    lost = result.verdicts["lost_writes"]
    assert isinstance(lost.measured, int) and lost.measured > 0, lost.explanation
    assert lost.explanation.startswith(f"{lost.measured} of "), lost.explanation
    # the fallover itself went as it should: only the application's durability is at fault
    assert {v.name for v in result.failures} == {"lost_writes"}, result.report()

