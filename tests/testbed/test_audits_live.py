"""The audits on the real embedded cluster: no SPOF error, a pulled heartbeat cable is found, quiet logs are clean,
a killed corosync's noise is expected by construction."""

from __future__ import annotations

import time

import pytest

from harness import notifications
from harness.audits.logs import LogAudit, disruptions_from, expected_for
from harness.audits.spof import LIVE_CHECKS, Finding, audit_live
from harness.drivers.pacemaker import PacemakerDriver
from harness.faults import Nemesis
from harness.poller import ClusterPoller
from harness.testbed.local import LocalTestbed
from harness.timeline import CLUSTER_NODE_LOST, TEST_MARK, Timeline
from harness.wait import wait_until

pytestmark = pytest.mark.testbed


def app_pid(testbed: LocalTestbed, node: str) -> str:
    """The sample app's pidfile (pid and start time) where the group runs."""
    return testbed.node(node).run(["cat", "/run/fallover-app-app/app-app.pid"], timeout=10).stdout.strip()


def test_live_audit_has_no_error_and_leaves_the_cluster_as_it_was(testbed: LocalTestbed,
                                                                    cluster: PacemakerDriver) -> None:
    active = cluster.wait_settled(timeout=60).group_node("app")
    assert active is not None
    before = app_pid(testbed, active)
    findings = audit_live(testbed, cluster)
    assert {f.check for f in findings} == set(LIVE_CHECKS)
    assert [str(f) for f in findings if not f.ok] == []
    assert [f.subject for f in findings if f.check == "corosync-links"] == testbed.topology.node_names
    # the idempotency round ran on a spare node: the active app is the same process, nothing is left behind
    state = cluster.state()
    assert state is not None and state.group_node("app") == active and not state.failed_actions
    assert app_pid(testbed, active) == before
    for node in testbed.topology.node_names:
        t = testbed.node(node)
        assert t.run("ls -d /tmp/fallover-spof-* 2>/dev/null", timeout=10, check=False).stdout == ""
        if node != active:
            assert not t.run(["pgrep", "-f", "kvapp.py"], timeout=10, check=False).ok, f"a test app runs on {node}"


def test_a_pulled_standby_cable_is_a_corosync_links_error_on_every_node(testbed: LocalTestbed,
                                                                         cluster: PacemakerDriver) -> None:
    audit = LogAudit(testbed)
    audit.mark()

    def failed() -> list[Finding]:
        return [f for f in audit_live(testbed, cluster, checks=["corosync-links"]) if f.failed]

    def failed_everywhere() -> list[Finding] | None:
        found = failed()
        return found if len(found) == len(testbed.topology.node_names) else None

    with Nemesis(testbed).inject("adapter_down", node="node2", network="standby"):
        # knet notices on each node at its own moment: wait until every node has
        bad = wait_until(failed_everywhere, timeout=20, interval=0.5,
                         what="corosync on every node to report the pulled standby cable")
    assert sorted(f.subject for f in bad) == ["node1", "node2", "node3"]
    detail = next(f.detail for f in bad if f.subject == "node2")
    assert "node1 over 1 link(s) [0]" in detail and "node3 over 1 link(s) [0]" in detail
    assert "single point of failure" in detail
    wait_until(lambda: not failed(), timeout=30, interval=0.5, what="knet to bring link 1 back")
    # a standby cable is invisible at error level: the expected list of adapter_down covers all of it
    assert audit.findings(expected_for("adapter_down")) == []


def test_log_audit_finds_nothing_after_a_quiet_window(testbed: LocalTestbed, cluster: PacemakerDriver) -> None:
    cluster.wait_settled(timeout=60)
    audit = LogAudit(testbed)
    audit.mark()
    time.sleep(3)
    # the app's monitor writes every 2 s, so the audit did read something
    assert any(line.file == "app-app.log" for line in audit.new_lines())
    assert audit.findings() == []


def test_a_killed_corosyncs_noise_is_expected_by_construction_and_only_then(testbed: LocalTestbed,
                                                                            cluster: PacemakerDriver) -> None:
    cluster.wait_settled(timeout=60)
    timeline = Timeline()
    audit = LogAudit(testbed)
    audit.mark()
    poller = ClusterPoller(cluster, timeline, tails=notifications.testbed_tails(testbed)).start()
    try:  # the runner's steps: inject, see the loss, heal, recover between the two marks
        with Nemesis(testbed, timeline).inject("corosync_kill", node="node3"):
            wait_until(lambda: timeline.first(CLUSTER_NODE_LOST, node="node3"), timeout=20, interval=0.2,
                       what="the cluster to lose node3")
        timeline.add(TEST_MARK, None, label="recovery start")
        testbed.up(placement=False)
        cluster.wait_settled(timeout=90)
        timeline.add(TEST_MARK, None, label="recovery end")
    finally:
        poller.stop()
    res = audit.result(disruptions_from(timeline, testbed.topology), faults=["corosync_kill"])
    assert res.status == "ok", res.explanation
    noise = [ln for ln, why in res.expected if ln.node == "node3" and "corosync_kill injected on node3" in why]
    assert noise, "node3's daemons always say that their cluster layer is gone"
    # the same lines without the timeline's disruptions are findings: nothing is ignored wholesale
    assert set(noise) <= set(audit.result(faults=["corosync_kill"]).findings)
