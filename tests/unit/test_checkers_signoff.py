"""Verdicts you can sign off on: successes are not detection, flaps are not recovery, a doubly mounted
filesystem is split brain, --no-load is "not judged", and a recording with holes is "unknown"."""

from __future__ import annotations

import json

from checker_history import *  # noqa: F401,F403  (the helpers and the names they use)

from harness.checkers.base import NOT_JUDGED
from harness.checkers.notification import op_failed, relevant
from harness.notifications import NotificationTail
from harness.timeline import CLUSTER_DEGRADED, CLUSTER_MOUNTS, FENCED

GLOBAL = [ev(0, FAULT_INJECTED, fault="network_down_global", target="service", family="network")]


def _ok_monitor(t: float, node: str = "node1", **kw: Any) -> Event:
    return ev(t, NOTIFICATION, node, kind="resource", rsc="app-app", task="monitor", interval=2000, rc=0,
              target_rc=0, status=0, desc="ok", **kw)


# -- 1. a successful operation is never detection nor the notification of the fault ---------------


def test_successful_monitor_is_neither_detection_nor_notification() -> None:
    """network_down_global: the first alert is app-app's monitor rc=0 at +0.5 s; the dead network
    is noticed at +3.1 s, when the reachability attribute drops."""
    noticed = ev(3.1, NOTIFICATION, "node1", kind="attribute", attribute_name="reach-service", attribute_value="0")
    tl = history(replace={"fault": GLOBAL, "detect": [], "notify": [_ok_monitor(0.5), noticed], "takeover": []})
    c = ctx(tl)
    d, n = check_detection(c), check_notification(c)
    assert d.valid is True and d.measured == pytest.approx(3.1) and "reach-service=0" in d.explanation
    assert n.valid is True and n.measured == pytest.approx(3.1)
    assert "monitor" not in d.explanation and "monitor" not in n.explanation


def test_a_connectivity_attribute_lost_in_the_cib_is_detection_without_any_alert() -> None:
    """Pacemaker alerts report attributes only with select_attributes: the poller's view of the CIB
    is how a dead network is detected then (the notification verdict still needs an alert)."""
    from harness.timeline import CLUSTER_ATTRIBUTE
    seen = [ev(0.5, CLUSTER_ATTRIBUTE, "node1", name="reach-service", value="1", was="1"),   # no drop
            ev(2.4, CLUSTER_ATTRIBUTE, "node2", name="reach-service", value="0", was="1"),
            ev(2.6, CLUSTER_ATTRIBUTE, "node1", name="reach-service", value="0", was="1")]
    tl = history(replace={"fault": GLOBAL, "detect": seen, "notify": [_ok_monitor(0.5)], "takeover": []})
    v = check_detection(ctx(tl))
    assert v.valid is True and v.measured == pytest.approx(2.4)
    assert "attribute reach-service on node2 from 1 to 0" in v.explanation
    adapter = {"fault": [ev(0, FAULT_INJECTED, "node1", fault="adapter_down", target="node1-service")],
               "detect": [ev(1.0, CLUSTER_ATTRIBUTE, "node3", name="ethmonitor-service", value=None, was="1"),
                          ev(1.9, CLUSTER_ATTRIBUTE, "node1", name="ethmonitor-service", value=None, was="1"),
                          ev(12, CLUSTER_ATTRIBUTE, "node1", name="ethmonitor-service", value="1", was=None)],
               "notify": [], "takeover": []}
    v = check_detection(ctx(history(replace=adapter)))
    assert v.measured == pytest.approx(1.9) and "from 1 to unset" in v.explanation


def test_only_successes_after_the_fault_is_no_detection_and_no_notification() -> None:
    oks = [_ok_monitor(0.5),
           ev(0.7, NOTIFICATION, "node1", kind="resource", rsc="app-ip", task="monitor", interval=0, rc=7,
              target_rc=7, status=0, desc="not running"),                                    # a probe: stopped
           ev(1.0, NOTIFICATION, "node1", kind="resource", rsc="app-app", task="stop", interval=0, rc=0,
              target_rc=0, status=0),
           ev(1.5, NOTIFICATION, "node2", kind="resource", rsc="app-app", task="start", interval=0, rc=0,
              target_rc=0, status=0),
           ev(2.0, NOTIFICATION, "node1", kind="node", desc="member"),
           ev(2.5, NOTIFICATION, "node1", kind="attribute", attribute_name="reach-service", attribute_value="1")]
    tl = history(replace={"fault": GLOBAL, "detect": [], "notify": oks, "takeover": []})
    d, n = check_detection(ctx(tl)), check_notification(ctx(tl))
    assert d.valid is False and d.measured is None and "never reported" in d.explanation
    assert n.valid is False and "6 notifications after the fault, none reporting a failure" in n.explanation


@pytest.mark.parametrize("data, failed", [
    ({"task": "monitor", "interval": 2000, "rc": 0, "target_rc": 0, "status": 0}, False),
    ({"task": "monitor", "interval": 2000, "rc": 7, "target_rc": 0, "status": 0}, True),    # app died
    ({"task": "monitor", "interval": 0, "rc": 7, "target_rc": 7, "status": 0}, False),     # probe: stopped
    ({"task": "monitor", "interval": 0, "rc": 0, "target_rc": 7, "status": 0}, True),      # running elsewhere
    ({"task": "start", "interval": 0, "rc": 0, "target_rc": 0, "status": 0}, False),
    ({"task": "start", "interval": 0, "rc": 1, "target_rc": 0, "status": 0}, True),
    ({"task": "monitor", "interval": 5000, "rc": 1, "target_rc": 0, "status": 3}, True),   # timed out
    ({"task": "stop", "rc": 0, "target_rc": 0, "status": 1}, False),                       # pending
    ({"task": "monitor", "interval": "2000", "rc": "7"}, True),                            # strings, no target
    ({"task": "monitor", "interval": "0", "rc": "7"}, False),
    ({"task": "monitor", "interval": 0, "rc": 8}, False),
    ({"task": "stop", "rc": 0}, False),
    ({"task": "stop"}, False),                                                             # no result: no failure
])
def test_op_failed_is_rc_against_target_rc_or_a_failed_execution(data: dict[str, Any], failed: bool) -> None:
    assert op_failed(data) is failed


def test_a_failed_monitor_of_the_group_is_detection_and_notification() -> None:
    died = ev(1.3, NOTIFICATION, "node1", kind="resource", rsc="app-app", task="monitor", interval=2000, rc=7,
              target_rc=0, status=0, desc="not running")
    app_kill = {"fault": [ev(0, FAULT_INJECTED, "node1", fault="kill_app", target="node1", family="application")],
                "detect": [], "notify": [_ok_monitor(0.4), died], "takeover": []}
    c = ctx(history(replace=app_kill))
    d, n = check_detection(c), check_notification(c)
    assert d.valid is True and d.measured == pytest.approx(1.3)
    assert "resource app-app monitor on node1 rc=7 (expected 0)" in n.explanation


def test_group_stopped_counts_only_with_a_failed_member() -> None:
    planned_like = {"fault": GLOBAL, "detect": [], "notify": [],
                    "takeover": [ev(1.0, CLUSTER_GROUP_STOPPED, "node1", group="app", now=[]),
                                 ev(2.0, CLUSTER_GROUP_STOPPED, "node1", group="app", failed=["app-fs"])]}
    v = check_detection(ctx(history(replace=planned_like)))
    assert v.measured == pytest.approx(2.0) and "app-fs failed" in v.explanation


def test_failback_stop_after_the_heal_is_not_detection() -> None:
    # nothing noticed during the fault; the only reactions come with the failback after the heal
    late = {"detect": [], "notify": [], "takeover": [],
            "rejoin": [ev(12, CLUSTER_NODE_JOINED, "node1"), ev(13, CLUSTER_GROUP_STOPPED, "node2", group="app"),
                       ev(13.5, NOTIFICATION, "node2", kind="resource", rsc="app-app", task="stop", rc=0, target_rc=0,
                          status=0),
                       ev(13.9, CLUSTER_GROUP_STARTED, "node1", group="app")]}
    c = ctx(history(replace=late))
    assert check_detection(c).valid is False and check_notification(c).valid is False


def test_fencing_of_the_fault_node_is_detection() -> None:
    fenced = {"detect": [ev(1.7, FENCED, "node1", action="off", outcome="ok")], "notify": []}
    v = check_detection(ctx(history(replace=fenced)))
    assert v.valid is True and v.measured == pytest.approx(1.7) and "node1 fenced" in v.explanation
    other = {"detect": [ev(1.7, FENCED, "node3", action="off", outcome="ok")], "notify": [], "takeover": []}
    assert check_detection(ctx(history(replace=other))).valid is False


def test_connectivity_attribute_counts_on_the_fault_node_only_and_only_going_down() -> None:
    c = ctx(history(replace={"fault": [ev(0, FAULT_INJECTED, "node1", fault="adapter_down", target="node1-service")]}))

    def note(node: str, name: str, value: str) -> Event:
        return ev(1, NOTIFICATION, node, kind="attribute", attribute_name=name, attribute_value=value)
    assert relevant(c, note("node1", "ethmonitor-service", ""))
    assert relevant(c, note("node1", "reach-service", "0"))
    assert not relevant(c, note("node3", "reach-service", "0"))       # another node's ping
    assert not relevant(c, note("node1", "reach-service", "1"))       # coming back is recovery
    assert relevant(c, note("node2", "fail-count-app-app#monitor_2000", "1"))   # the group's resource
    assert not relevant(c, note("node3", "fail-count-other#monitor_1000", "1"))
    assert not relevant(c, note("node1", "last-failure-app-app#monitor_2000", "1700000000"))
    assert not relevant(c, ev(1, NOTIFICATION, "node1", kind="mystery", desc="lost"))


def test_fault_nodes_come_from_the_fault_events_nodes_when_it_names_no_single_node() -> None:
    part = [ev(0, FAULT_INJECTED, fault="partition", target="majority", nodes=["node2", "node3"])]
    assert ctx(history(replace={"fault": part})).fault_nodes == {"node2", "node3"}


def test_planned_operation_is_not_judged_for_detection_or_notification() -> None:
    move = {"fault": [ev(0, FAULT_INJECTED, fault="move_group", target="app", family="planned")],
            "detect": [], "notify": []}
    for check in (check_detection, check_notification):
        v = check(ctx(history(replace=move)))
        assert v.valid is True and not v.judged and v.status == NOT_JUDGED and v.measured is None


# -- 3. redundancy must stay --------------------------------------------------------------------------


def _recovery(*events: Event) -> Timeline:
    return history(replace={"redundant": list(events)})


def test_redundancy_that_is_lost_again_before_the_end_was_never_restored() -> None:
    v = check_redundancy_restored(ctx(_recovery(ev(10.11, CLUSTER_REDUNDANT),
                                                ev(11.4, CLUSTER_DEGRADED, why="group app on node2, not on node1"))))
    assert v.valid is False and v.measured is None
    assert "did not stay fully redundant" in v.explanation and "+10.11 s" in v.explanation
    assert "group app on node2, not on node1" in v.explanation


def test_redundancy_after_a_flap_counts_from_the_final_stretch_and_names_the_flap() -> None:
    v = check_redundancy_restored(ctx(_recovery(ev(10.11, CLUSTER_REDUNDANT),
                                                ev(11.4, CLUSTER_DEGRADED, why="group app on node2, not on node1"),
                                                ev(12.4, CLUSTER_DEGRADED, why="group app not started"),
                                                ev(15.0, CLUSTER_REDUNDANT))))
    assert v.valid is True and v.measured == pytest.approx(5.0)
    assert "fully redundant at +15.00 s and stayed so" in v.explanation
    assert "redundant at +10.11 s but lost it again at +11.40 s (group app on node2, not on node1)" in v.explanation


def test_redundancy_flapping_past_the_limit_fails() -> None:
    v = check_redundancy_restored(ctx(_recovery(ev(10.5, CLUSTER_REDUNDANT), ev(11, CLUSTER_DEGRADED, why="x"),
                                                ev(41, CLUSTER_REDUNDANT))))
    assert v.valid is False and v.measured == pytest.approx(31.0)


def test_a_new_fault_ends_the_window_of_the_previous_recovery() -> None:
    second = [ev(20, FAULT_INJECTED, "node2", fault="poweroff", target="node2"), ev(21, CLUSTER_DEGRADED, why="y")]
    v = check_redundancy_restored(ctx(_recovery(ev(15, CLUSTER_REDUNDANT), *second)))
    assert v.valid is True and v.measured == pytest.approx(5.0)


# -- 4. a shared filesystem mounted on two nodes ------------------------------------------------------


def _mounts(*seen: tuple[float, dict[str, list[str]]]) -> list[Event]:
    return [ev(t, CLUSTER_MOUNTS, mounts=m) for t, m in seen]


def test_filesystem_mounted_on_two_nodes_is_split_brain() -> None:
    m = _mounts((-5, {"shared": ["node1"]}), (3.2, {"shared": ["node1", "node2"]}), (4.0, {"shared": ["node2"]}))
    v = check_split_brain(ctx(history(extra=m)))
    assert v.valid is False
    assert v.explanation == ("split brain: shared filesystem shared mounted on node1 and node2 at +3.20 s "
                             "(until +4.00 s)")


def test_filesystem_still_mounted_twice_at_the_end_is_split_brain() -> None:
    v = check_split_brain(ctx(history(extra=_mounts((3.0, {"shared": ["node1", "node3"]})))))
    assert v.valid is False and "still when the recording ended" in v.explanation


def test_clean_handover_of_the_filesystem_is_no_split_brain() -> None:
    m = _mounts((-5, {"shared": ["node1"]}), (3.0, {"shared": []}), (3.9, {"shared": ["node2"]}),
                (13.5, {"shared": []}), (13.8, {"shared": ["node1"]}))
    v = check_split_brain(ctx(history(extra=m)))
    assert v.valid is True and "5 mount changes of shared, never on two nodes at once" in v.explanation
    assert "not recorded" in check_split_brain(ctx()).explanation


# -- 5. no load ---------------------------------------------------------------------------------------


def test_no_load_is_not_judged_for_lost_writes_and_failed_requests() -> None:
    for check in (check_lost_writes, check_failed_requests):
        v = check(ctx(load=False))
        assert v.valid is True and v.judged is False and v.measured is None and v.status == NOT_JUDGED
        assert v.explanation.startswith("not judged: no load (--no-load)")
    assert merge_valid([check_lost_writes(ctx(load=False))]) is True
    # with load (or not saying), no verify record is still "unknown"
    assert check_lost_writes(ctx()).valid == UNKNOWN
    assert check_lost_writes(ctx(load=True)).valid == UNKNOWN


def test_no_load_said_but_requests_recorded_are_judged() -> None:
    rs = [req(1, key="a", value="1"), req(30, "verify", key="a", value="1")]
    v = check_lost_writes(ctx(requests=rs, load=False))
    assert v.valid is True and v.judged and v.measured == 0


def test_not_judged_survives_save_and_load(tmp_path: Path) -> None:
    v = check_lost_writes(ctx(load=False))
    back = Verdict(**json.loads(json.dumps(dataclasses.asdict(v))))
    assert back == v and str(back).startswith("lost_writes: not judged:")


# -- 7. what the recorders lost ----------------------------------------------------------------------


def _counted(tl: Timeline, **counts: int) -> Timeline:
    tl.meta["counts"] = counts
    return tl


def test_counts_come_from_meta_with_aliases_and_timeline_dropped() -> None:
    tl = _counted(history(), poller_errors=2, dropped=3, bad_notifications=1, probe_skipped=7)
    tl.dropped = 5
    assert ctx(tl).counts == {"poller_errors": 2, "timeline_dropped": 5, "bad_notification_lines": 1,
                              "probe_skipped": 7}


def test_lost_polls_make_redundancy_and_policy_unknown_but_keep_an_in_time_detection() -> None:
    c = ctx(_counted(history(), poller_errors=9))
    red = check_redundancy_restored(c)
    assert red.valid == UNKNOWN and "9 cluster polls that observed nothing (limit 4)" in red.explanation
    assert "as recorded: redundancy restored" in red.explanation
    assert check_policy(c).valid == UNKNOWN
    det = check_detection(c)
    assert det.valid is True and "the pass holds" in det.explanation
    late = {"detect": [ev(6.5, CLUSTER_NODE_LOST, "node1")], "notify": [], "takeover": []}
    assert check_detection(ctx(_counted(history(replace=late), poller_errors=9))).valid == UNKNOWN
    assert check_redundancy_restored(ctx(_counted(history(), poller_errors=4))).valid is True  # at the limit


def test_bad_notification_lines_make_a_missing_notification_unknown() -> None:
    tl = _counted(history(replace={"notify": []}), bad_notification_lines=1)
    v = check_notification(ctx(tl))
    assert v.valid == UNKNOWN and "1 unreadable notification lines (limit 0)" in v.explanation
    assert check_notification(ctx(_counted(history(), bad_notification_lines=1))).valid is True
    assert check_notification(ctx(_counted(history(replace={"notify": []}), bad_notification_lines=1),
                                  max_bad_notification_lines=2)).valid is False


def test_skipped_probe_slots_make_outage_and_split_brain_unknown() -> None:
    c = ctx(_counted(history(), probe_skipped=200))
    assert c.count_limit("probe_skipped") == 100  # max(100, 5 % of 1100 samples + 200 skipped slots)
    long = probe(-2, 0, True, "node1") + probe(0, 4.2, False, None) + probe(4.2, 100, True, "node2")
    assert ctx(_counted(history(samples=long), probe_skipped=1)).count_limit("probe_skipped") == \
        pytest.approx(0.05 * (len(long) + 1))
    assert check_outage(c).valid == UNKNOWN and "200 probe slots skipped" in check_outage(c).explanation
    assert check_split_brain(c).valid == UNKNOWN
    assert check_fallover(c).valid is True  # an in-time takeover only gets later with holes
    assert check_outage(ctx(_counted(history(), probe_skipped=50))).valid is True


def test_a_not_judged_verdict_stays_not_judged_whatever_was_lost() -> None:
    v = check_lost_writes(ctx(_counted(history(), poller_errors=99, probe_skipped=9999), load=False))
    assert v.judged is False and v.valid is True


def test_notification_tail_counts_its_bad_lines(tmp_path: Path) -> None:
    log = tmp_path / "notifications.log"
    log.write_text('{"wall": 1.0, "kind": "node", "node": "node1", "desc": "lost"}\n'
                   'not json\n{"kind": "node"}\n{"wall": 2.0, "kind": "node", "node": "node2", "desc": "member"}\n'
                   '{"wall": 3.0, "kind"')  # the last line is still being written: not bad, not yet read
    tail = NotificationTail(log)
    assert [e.node for e in tail.poll()] == ["node1", "node2"]
    assert tail.bad_lines == 2 and tail.bad == 2


def test_a_node_lost_is_detection_only_where_it_is_the_clusters_own_membership() -> None:
    from harness.timeline import CLUSTER_NODE_LOST
    fault = {"fault": [ev(0, FAULT_INJECTED, "node1", fault="node_power_off", target="node1")],
             "detect": [ev(0.2, CLUSTER_NODE_LOST, "node1")], "notify": [], "takeover": []}
    assert check_detection(ctx(history(replace=fault))).measured == pytest.approx(0.2)
    v = check_detection(ctx(history(replace=fault), membership=False))  # keepalived: the harness saw it, not VRRP
    assert v.valid is False and "never reported" in v.explanation
