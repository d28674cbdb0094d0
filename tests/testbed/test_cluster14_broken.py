"""Issue 14 on clusters broken for the purpose: each new kind of case must FAIL there, naming why.

The same cases pass on the correct embedded cluster (`pytest suites/cluster`). Each broken cluster is a
testbed of its own (tests/data/broken), up once per module fixture: about 1 min to bring up, and 1-2 min
per case.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from own_testbed import separate_testbed
from test_broken_clusters import assert_judged

from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.testbed import nodes
from harness.testbed.local import LocalTestbed

pytestmark = pytest.mark.testbed

BROKEN = Path(__file__).resolve().parent.parent / "data" / "broken"


@pytest.fixture(scope="module")
def nofence() -> Iterator[LocalTestbed]:
    """stonith-enabled=false and no-quorum-policy=ignore: nothing stops a node that lost quorum."""
    with separate_testbed(BROKEN / "nofence.yaml") as tb:
        yield tb


def test_one_by_one_without_quorum_policy_starts_the_group_without_quorum(nofence: LocalTestbed,
                                                                          tmp_path: Path) -> None:
    result = Runner(nofence, tmp_path).run(Case("cluster_one_by_one", Target()))
    assert_judged(result, failing={"starts"}, cause=["without quorum"])


def test_a_one_way_cut_without_fencing_is_a_split_brain(nofence: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(nofence, tmp_path).run(Case("partition_oneway", Target(nodes=("node1",))))
    assert_judged(result, failing={"split_brain"}, cause=["split brain"])


def test_a_long_corosync_pause_without_fencing_is_a_split_brain(nofence: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(nofence, tmp_path).run(Case("corosync_pause_long", Target(node="node1")))
    assert_judged(result, failing={"split_brain"}, cause=["split brain"])


def test_a_blocked_application_is_not_recovered_in_place(tmp_path: Path) -> None:
    with separate_testbed(BROKEN / "blockedrecovery.yaml") as tb:
        result = Runner(tb, tmp_path).run(Case("app_kill_threshold", Target(group="app")))
    # Blocked, the application is not restarted in place, so its count never rises as a restart in place's
    # must (1, then 2). Which wrong value the harness reads depends on the monitor and on failure-timeout
    # (20 s here) expiring the first failure: "is 0, not 1" and "is 0, not 2" were both seen.
    assert_judged(result, failing={"fail_counts"}, cause=["the fail count on node1 is "])


# -- single-daemon kills (issue 14 item 5): a cluster that panics a node for a subdaemon's death ------------


@pytest.fixture(scope="module")
def failfast() -> Iterator[LocalTestbed]:
    """PCMK_fail_fast=yes and fencing off: a subdaemon's death panics its node, and nobody fences it.

    Pacemaker's panic writes "b" to /proc/sysrq-trigger (node-init.sh hides the host's) and then calls
    reboot(2), which in a PID namespace other than the host's only ends that namespace: this test
    refuses to run otherwise rather than reboot the machine.
    """
    with separate_testbed(BROKEN / "failfast.yaml") as tb:
        for node in tb.topology.node_names:
            init = nodes.init_pid(tb.layout, node)
            assert init is not None and os.readlink(f"/proc/{init}/ns/pid") != os.readlink("/proc/self/ns/pid"), \
                f"{node} shares the host's PID namespace: a Pacemaker panic there would reboot the host"
        yield tb


@pytest.mark.parametrize("fault", ["based_kill", "fenced_kill", "execd_kill", "attrd_kill", "schedulerd_kill",
                                   "controld_kill"])
def test_with_fail_fast_every_subdaemon_kill_fails_its_expectation(failfast: LocalTestbed, tmp_path: Path,
                                                                    fault: str) -> None:
    """node1 panics instead of respawning the daemon, leaves the membership, and nobody fences it: where the
    plan expects the group to stay it moves; where it may move (after a fence, or a clean stop of a node that
    stays a member) it moves without either."""
    result = Runner(failfast, tmp_path).run(Case(fault, Target(node="node1")))
    assert result.expected is not None, result.report()
    if result.expected.outcome == "stay":  # fenced_kill, attrd_kill; schedulerd_kill when node1 is not the DC
        assert_judged(result, failing={"fallover"}, cause=["although no fallover was expected"])
    else:
        assert result.expected.outcome == "planned", result.report()
        assert_judged(result, failing={"fencing"}, cause=["although it was never fenced"])
