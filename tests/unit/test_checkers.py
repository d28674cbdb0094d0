"""Checkers judged on literal histories (verdict plumbing, detection, notification, fallover, outage)."""

from __future__ import annotations

from checker_history import *  # noqa: F401,F403  (the helpers and the names they use)


def test_merge_valid_false_beats_unknown_beats_true() -> None:
    def v(valid: Any) -> Verdict:
        return Verdict("x", valid, None, None, "", "")
    assert merge_valid([]) is True
    assert merge_valid([v(True), v(True)]) is True
    assert merge_valid([v(True), v(UNKNOWN)]) == UNKNOWN
    assert merge_valid([v(UNKNOWN), v(False), v(True)]) is False
    assert merge_valid([True, UNKNOWN]) == UNKNOWN


def test_check_safe_turns_an_exception_into_unknown() -> None:
    def check_boom(c: Context) -> Verdict:
        raise ValueError("bad sample")
    v = check_safe(check_boom, ctx())
    assert v.valid == UNKNOWN and v.name == "boom"
    assert "ValueError: bad sample" in v.explanation and "test_checkers.py" in v.explanation
    assert check_safe(lambda c: 42, ctx(), name="odd").valid == UNKNOWN  # type: ignore[arg-type,return-value]


def test_run_all_keeps_every_verdict_and_merges() -> None:
    def broken(c: Context) -> Verdict:
        raise KeyError("group")
    verdicts = run_all(ctx(), {**CHECKERS, "broken": broken})
    assert list(verdicts)[:len(CHECKERS)] == list(CHECKERS)
    assert verdicts["broken"].valid == UNKNOWN and verdicts["broken"].name == "broken"
    assert merge_valid(verdicts.values()) == UNKNOWN


def test_verdict_is_frozen() -> None:
    v = Verdict("x", True, 1.0, 2.0, "s", "ok")
    with pytest.raises(dataclasses.FrozenInstanceError):
        v.valid = False  # type: ignore[misc]


def test_saved_and_loaded_timeline_gives_identical_verdicts(tmp_path: Path) -> None:
    requests = [req(1, key="k1", value="a"), req(30, "verify", key="k1", value="a")]
    live = run_all(ctx(history(), requests), CHECKERS)
    loaded = Timeline.load(history().save(tmp_path / "timeline.json"))
    assert run_all(ctx(loaded, requests), CHECKERS) == live
    assert all(v.valid is True for v in live.values()), [str(v) for v in live.values() if v.valid is not True]


# -- detection ------------------------------------------------------------------------------------


def test_detection_in_time() -> None:
    v = check_detection(ctx())
    assert v.valid is True and v.measured == pytest.approx(2.0) and v.limit == 5
    assert v.explanation.startswith("detection took 2 s (limit 5 s)") and "node1 lost" in v.explanation


def test_detection_late_is_caught() -> None:
    late = {"detect": [ev(6.5, CLUSTER_NODE_LOST, "node1")], "notify": [],
            "takeover": [ev(7.0, CLUSTER_GROUP_STOPPED, group="app")]}
    v = check_detection(ctx(history(replace=late)))
    assert v.valid is False and v.measured == pytest.approx(6.5)


def test_detection_ignores_reactions_unrelated_to_the_fault() -> None:
    unrelated = [ev(1.0, CLUSTER_NODE_LOST, "node3"), ev(1.5, CLUSTER_FAILED_ACTION, resource="other", node="node3")]
    v = check_detection(ctx(history(replace={"detect": unrelated, "notify": [], "takeover": []})))
    assert v.valid is False and "never reported" in v.explanation


def test_detection_credits_a_failed_action_of_the_group() -> None:
    app_kill = {"fault": [ev(0, FAULT_INJECTED, "node1", fault="kill_app", target="node1")], "detect": [],
                "notify": [], "takeover": [ev(1.2, CLUSTER_FAILED_ACTION, resource="app-app", task="monitor",
                                              node="node1", rc=7)]}
    v = check_detection(ctx(history(replace=app_kill)))
    assert v.valid is True and v.measured == pytest.approx(1.2) and "app-app monitor" in v.explanation


def test_partition_target_label_names_the_fault_nodes() -> None:
    part = {"fault": [ev(0, FAULT_INJECTED, fault="partition", target="node2+node3")],
            "detect": [ev(1.0, CLUSTER_NODE_LOST, "node1"), ev(1.5, CLUSTER_NODE_LOST, "node3")], "notify": []}
    c = ctx(history(replace=part))
    assert c.fault_nodes == {"node2", "node3"}
    v = check_detection(c)
    assert v.valid is True and v.measured == pytest.approx(1.5) and "node3 lost" in v.explanation


def test_detection_times_an_alert_when_pacemaker_raised_it_not_when_it_was_delivered() -> None:
    """On a busy TCG guest an alert waited 5-8 s for its agent: the cluster had noticed when it raised it."""
    late_agent = ev(15.8, NOTIFICATION, "node1", kind="node", desc="lost", guest_wall=900.0,
                    timestamp_epoch=890, timestamp_usec=500000)  # waited 9.5 s for its agent in the node
    v = check_detection(ctx(history(replace={"detect": [late_agent], "notify": [late_agent]})))
    assert v.valid is False and v.measured == pytest.approx(6.3)  # the limit here is 5 s
    assert "at +6.30 s, delivered at +15.80 s" in v.explanation
    assert check_notification(ctx(history(replace={"detect": [late_agent], "notify": [late_agent]}))).measured \
        == pytest.approx(15.8)  # the operator hears of it when it arrives


def test_an_alert_raised_before_the_fault_is_no_detection_of_it() -> None:
    stale = ev(0.5, NOTIFICATION, "node1", kind="node", desc="lost", guest_wall=900.0, timestamp_epoch=898)
    v = check_detection(ctx(history(replace={"detect": [stale], "notify": [], "takeover": []})))
    assert v.valid is False and "never reported" in v.explanation


def test_detection_without_fault_is_unknown() -> None:
    assert check_detection(ctx(history(replace={"fault": []}))).valid == UNKNOWN


# -- notification ---------------------------------------------------------------------------------


def test_notification_in_time() -> None:
    v = check_notification(ctx())
    assert v.valid is True and v.measured == pytest.approx(2.1) and "node node1 lost" in v.explanation


def test_late_notification_is_caught() -> None:
    v = check_notification(ctx(history(replace={"notify": [ev(10.5, NOTIFICATION, "node1", kind="node",
                                                                desc="lost")]})))
    assert v.valid is False and v.measured == pytest.approx(10.5) and "late" in v.explanation


def test_missing_notification_is_caught() -> None:
    noise = [ev(2, NOTIFICATION, "node3", kind="node", desc="lost"),
             ev(3, NOTIFICATION, "node1", kind="attribute", attribute_name="fail-count-app-app")]
    v = check_notification(ctx(history(replace={"notify": noise})))
    assert v.valid is False and v.measured is None and "no notification about node1" in v.explanation


def test_notification_of_a_group_resource_counts() -> None:
    v = check_notification(ctx(history(replace={"notify": [ev(1.0, NOTIFICATION, "node1", kind="resource",
                                                                rsc="app-ip", task="monitor", rc="7")]})))
    assert v.valid is True and "resource app-ip monitor on node1 rc=7" in v.explanation


def test_a_node_asked_to_leave_is_notified_by_its_shutdown_attribute() -> None:
    """A graceful stop's first alert: the DC sets node1's "shutdown" while its resources still run."""
    def notified(*events: Event) -> Verdict:
        return check_notification(ctx(history(replace={"notify": list(events)})))
    v = notified(ev(0.4, NOTIFICATION, "node1", kind="attribute", attribute_name="shutdown",
                    attribute_value="1796196310"))
    assert v.valid is True and v.measured == pytest.approx(0.4)
    assert "attribute shutdown=1796196310 on node1" in v.explanation
    # cleared (back in the cluster), or another node's: no news of this fault
    assert notified(ev(0.4, NOTIFICATION, "node1", kind="attribute", attribute_name="shutdown",
                       attribute_value="")).valid is False
    assert notified(ev(0.4, NOTIFICATION, "node1", kind="attribute", attribute_name="shutdown",
                       attribute_value="0")).valid is False
    assert notified(ev(0.4, NOTIFICATION, "node3", kind="attribute", attribute_name="shutdown",
                       attribute_value="1796196310")).valid is False


def test_notification_limit_can_be_set_per_test() -> None:
    assert check_notification(ctx(max_notification_s=1.0)).valid is False


# -- fallover -------------------------------------------------------------------------------------


def test_fallover_in_time() -> None:
    v = check_fallover(ctx())
    assert v.valid is True and v.measured == pytest.approx(4.202)
    assert v.explanation == ("fallover took 4.2 s (limit 15 s): poweroff on node1 at +0.00 s, "
                             "service answered from node2 at +4.20 s")


def test_fallover_too_slow_is_caught() -> None:
    slow = probe(-2, 0, True, "node1") + probe(0, 16, False, None) + probe(16, 20, True, "node2")
    v = check_fallover(ctx(history(samples=slow)))
    assert v.valid is False and v.measured == pytest.approx(16.002)


def test_fallover_to_the_wrong_node_is_caught() -> None:
    v = check_fallover(ctx(expected_node="node3"))
    assert v.valid is False and "never answered from node3" in v.explanation


def test_fallover_from_probe_events_when_no_samples() -> None:
    from harness.timeline import PROBE_UP
    v = check_fallover(ctx(history(samples=[], extra=[ev(4.5, PROBE_UP, "node2")])))
    assert v.valid is True and v.measured == pytest.approx(4.5)


def test_no_fallover_expected_and_group_stayed() -> None:
    restart = probe(-2, 0, True, "node1") + probe(0, 1, False, None) + probe(1, 5, True, "node1")
    tl = history(replace={"takeover": [], "rejoin": [], "detect": [], "notify": []}, samples=restart)
    v = check_fallover(ctx(tl, expect_fallover=False))
    assert v.valid is True and v.measured == "node1" and "stayed on node1" in v.explanation


def test_no_fallover_expected_but_group_moved_is_caught() -> None:
    v = check_fallover(ctx(expect_fallover=False))
    assert v.valid is False and v.measured == "node2" and v.limit == "node1"


def test_fallover_unknown_without_a_takeover_reference() -> None:
    tl = history(replace={"setup": [], "fault": [ev(0, FAULT_INJECTED, fault="partition", target="service")]},
                 samples=probe(0, 1, False, None) + probe(1, 2, True, "node2"))
    assert check_fallover(Context(timeline=tl)).valid == UNKNOWN


# -- outage ---------------------------------------------------------------------------------------


def test_outage_within_limit() -> None:
    v = check_outage(ctx())
    assert v.valid is True and v.measured == pytest.approx(4.2)
    assert "2 outages" in v.explanation and "from +0.00 s" in v.explanation


def test_outage_above_sla_is_caught() -> None:
    long = probe(-2, 0, True, "node1") + probe(0, 16, False, None) + probe(16, 20, True, "node2")
    v = check_outage(ctx(history(samples=long)))
    assert v.valid is False and v.measured == pytest.approx(16.0) and "(limit 15 s)" in v.explanation


def test_open_outage_within_limit_is_unknown_and_above_limit_is_caught() -> None:
    short = check_outage(ctx(history(samples=probe(-2, 0, True, "node1") + probe(0, 3, False, None))))
    assert short.valid == UNKNOWN and short.measured == pytest.approx(2.98) and "still open" in short.explanation
    long = check_outage(ctx(history(samples=probe(-2, 0, True, "node1") + probe(0, 20, False, None))))
    assert long.valid is False and "still open" in long.explanation


def test_outage_is_send_time_of_first_failure_to_send_time_of_next_success() -> None:
    samples = [ProbeSample(BASE + t, 0.0, ok, 0.3 if ok else 2.0) for t, ok in
               ((0.0, True), (1.0, False), (1.5, False), (2.25, True), (3.0, False))]
    runs = outages(samples)
    assert [(r.start - BASE, r.end - BASE, r.failed, r.open) for r in runs] == [(1.0, 2.25, 2, False),
                                                                               (3.0, 3.0, 1, True)]


def test_outage_without_samples_is_unknown() -> None:
    assert check_outage(ctx(history(samples=[]))).valid == UNKNOWN


def test_a_trigger_is_judged_and_named_after_the_fault_that_set_the_stage() -> None:
    # app_start_fail on node2 first (its start will fail there), then the trigger kills the app on node1
    stage = [ev(-8, FAULT_INJECTED, None, fault="app_start_fail", target="node2-app", family="application"),
             ev(-1, FAULT_INJECTED, None, fault="app_kill", target="app", family="application")]
    c = Context(timeline=history(replace={"fault": stage}), topology=topo(), fault_start=BASE + 0.0,
                expectation={"group": "app", "fault_node": "node2"})
    assert c.fault is stage[1] and c.fault_desc == "app_kill after app_start_fail on node2"
    single = Context(timeline=history(), topology=topo(), expectation={"group": "app"})
    assert single.fault_desc == "poweroff on node1"
