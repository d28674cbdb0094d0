"""Issue 14 on clusters broken for the purpose: each new kind of case must FAIL there, naming why.

The same cases pass on the correct embedded cluster (`pytest suites/cluster`, and with
`--testbed testbeds/local-recovery.yaml` for recovery in place). Each broken cluster is a testbed of its own
(tests/data/broken), up once per module fixture: about 1 min to bring up, and 1-3 min per case (each test
says what it measured).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from own_testbed import separate_testbed
from test_broken_clusters import assert_judged

from harness.drivers import open_driver
from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.testbed import nodes
from harness.testbed.local import LocalTestbed

pytestmark = pytest.mark.testbed

BROKEN = Path(__file__).resolve().parent.parent / "data" / "broken"


@pytest.fixture
def nofence() -> Iterator[LocalTestbed]:
    """stonith-enabled=false and no-quorum-policy=ignore: nothing stops a node that lost quorum.

    A fresh one per test (about 15 s): the split brains these cases provoke mount the shared ext4 on two
    nodes at once and corrupt it, and the next case on the same testbed could not be made whole (every
    Filesystem monitor failed to write its status file: an ERROR of corosync_pause_long after the one-way cut).
    """
    with separate_testbed(BROKEN / "nofence.yaml") as tb:
        yield tb


def test_one_by_one_without_quorum_policy_starts_the_group_without_quorum(nofence: LocalTestbed,
                                                                          tmp_path: Path) -> None:
    result = Runner(nofence, tmp_path).run(Case("cluster_one_by_one", Target()))
    assert_judged(result, failing={"starts"}, cause=["without quorum"])


def test_a_slow_first_election_fails_the_time_to_service_of_a_simultaneous_start(tmp_path: Path) -> None:
    """dc-deadtime 45 s: after the restart every node waits that long for a DC, the group with it.

    A simultaneous restart on `nofence` (quorum ignored, no fencing) passed: the three nodes join
    within the 2 s dc-deadtime, so the group still starts once, on node1, with quorum. This one took
    141 s with its bring-up (load 16-21).
    """
    with separate_testbed(BROKEN / "slowstart.yaml") as tb:
        result = Runner(tb, tmp_path).run(Case("cluster_simul_restart", Target()))
    assert_judged(result, failing={"starts"}, cause=["time to service", "exceeds 30 s"])


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
    stays a member) it moves without either. Measured: the six with the bring-up in 5 min 42 s (load 18-31)."""
    result = Runner(failfast, tmp_path).run(Case(fault, Target(node="node1")))
    assert result.expected is not None, result.report()
    if result.expected.outcome == "stay":  # fenced_kill, attrd_kill; schedulerd_kill when node1 is not the DC
        assert_judged(result, failing={"fallover"}, cause=["although no fallover was expected"])
    else:
        assert result.expected.outcome == "planned", result.report()
        assert_judged(result, failing={"fencing"}, cause=["although it was never fenced"])


def test_a_token_shorter_than_declared_loses_the_node_in_a_short_corosync_pause(tmp_path: Path) -> None:
    """The topology declares an 8000 ms token; corosync runs 1000 ms (`shorttoken`, hand-edited): the 4 s pause
    the plan derives from the declared token outlasts the real token + consensus, node1 is lost and fenced,
    and the group moves where it should have stayed: node1 lost at +2.35 s, app on node2 at +4.43 s, every other
    verdict ok. 54 s and 47 s with its bring-up (load 11-27)."""
    with separate_testbed(BROKEN / "shorttoken.yaml") as tb:
        result = Runner(tb, tmp_path).run(Case("corosync_pause_short", Target(node="node1")))
    assert result.expected is not None and result.expected.outcome == "stay", result.report()
    assert_judged(result, failing={"fallover"}, cause=["a 4 s pause is shorter than the 8000 ms token",
                                                       "although no fallover was expected"])


# -- recovery in place and reattach (issue 14 items 3, 4) ----------------------------------------------


@pytest.fixture(scope="module")
def inplace() -> Iterator[LocalTestbed]:
    """Recovery in place as local-recovery.yaml declares it; each test below breaks it its own way."""
    with separate_testbed(BROKEN / "inplace.yaml") as tb:
        yield tb


def test_a_failure_that_never_expires_fails_the_expiry(inplace: LocalTestbed, tmp_path: Path) -> None:
    """The topology declares failure-timeout 20 s; the cluster holds 0 (never forget): the count stays 1.
    74 s (the expiry is waited for up to 35 s)."""
    group_meta(inplace, "failure-timeout", "0")
    try:
        result = Runner(inplace, tmp_path).run(Case("app_failure_expiry", Target(group="app")))
    finally:
        group_meta(inplace, "failure-timeout", "20s")
    assert_judged(result, failing={"fail_counts"}, cause=["the fail count on node1 still reads 1",
                                                          "(failure-timeout 20 s)"])


def test_a_rule_on_an_attribute_the_restart_erases_fails_the_reattach(inplace: LocalTestbed, tmp_path: Path) -> None:
    """The group needs `gw-ok`, a transient node attribute an operator's script set with attrd_updater: the
    stack restart of a reattach erases it, nothing sets it again, and once maintenance mode ends the group
    stops: the application is not the one that ran before, and clients saw an outage. 131 s, most of it
    the operator recovery waiting 90 s for a group that can run nowhere."""
    nodes = inplace.topology.node_names
    driver = open_driver(inplace)
    for node in nodes:
        inplace.node(node).run(["attrd_updater", "--name", "gw-ok", "--update", "1"], timeout=15)
    driver.wait_until(lambda s: all(s.attributes.get(n, {}).get("gw-ok") == "1" for n in nodes), timeout=30,
                      what="gw-ok on every node")
    driver.admin(["cibadmin", "--create", "--scope", "constraints", "--xml-text",
                  '<rsc_location id="app-needs-gw" rsc="app"><rule id="app-needs-gw-rule" score="-INFINITY">'
                  '<expression id="app-needs-gw-expr" attribute="gw-ok" operation="not_defined"/></rule>'
                  '</rsc_location>'])
    try:
        result = Runner(inplace, tmp_path).run(Case("cluster_reattach", Target()))
    finally:
        driver.admin(["cibadmin", "--delete", "--xml-text", '<rsc_location id="app-needs-gw"/>'])
    assert_judged(result, failing={"untouched", "outage"},
                  cause=["app's application is not running after the reattach",
                         "nothing set again before maintenance mode ended (node1: gw-ok; node2: gw-ok; node3: gw-ok)"])


def group_meta(tb: LocalTestbed, name: str, value: str) -> None:
    """Set a meta attribute of the group `app` in the cluster (it overrides what the topology generated)."""
    open_driver(tb).admin(["crm_resource", "--resource", "app", "--meta", "--set-parameter", name,
                           "--parameter-value", value])
