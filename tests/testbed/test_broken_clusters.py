"""Deliberately misconfigured clusters: the suites must fail them, for the right reason, in plain words."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Target
from harness.plan import Case
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
