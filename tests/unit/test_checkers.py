"""Checkers judged on literal histories: for each, a passing, a failing and an unknown case; no cluster."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from harness.checkers import CHECKERS, UNKNOWN, Context, Verdict, check_safe, merge_valid, run_all
from harness.checkers.detection import check_detection
from harness.checkers.failed_requests import check_failed_requests
from harness.checkers.fallover import check_fallover
from harness.checkers.lost_writes import check_lost_writes
from harness.checkers.notification import check_notification
from harness.checkers.outage import check_outage, outages
from harness.checkers.policy import check_policy
from harness.checkers.redundancy import check_redundancy_restored
from harness.checkers.split_brain import check_split_brain, interleaved
from harness.timeline import (ARP_GRATUITOUS, ARP_REPLY, CLUSTER_FAILED_ACTION, CLUSTER_GROUP_SPLIT,
                              CLUSTER_GROUP_STARTED, CLUSTER_GROUP_STOPPED, CLUSTER_NODE_JOINED, CLUSTER_NODE_LOST,
                              CLUSTER_REDUNDANT, FAULT_HEALED, FAULT_INJECTED, NOTIFICATION, Event, ProbeSample,
                              Request, Timeline)
from harness.topology import Topology

BASE = 5000.0  # an arbitrary monotonic origin: checkers must only use differences
MAC1, MAC2 = "52:54:00:00:00:01", "52:54:00:00:00:02"
VIP = "10.77.1.100"


def ev(t: float, kind: str, node: str | None = None, /, **data: Any) -> Event:
    return Event(mono=BASE + t, wall=1.7e9 + t, kind=kind, node=node, data=data)


def probe(t0: float, t1: float, ok: bool, node: str | None, period: float = 0.02,
          latency: float = 0.002) -> list[ProbeSample]:
    """Samples sent every `period` from t0 (inclusive) to t1 (exclusive)."""
    n = round((t1 - t0) / period)
    return [ProbeSample(mono=BASE + t0 + i * period, wall=1.7e9 + t0 + i * period, ok=ok,
                        latency_s=latency if ok else 0.5, node=node if ok else None,
                        error=None if ok else "timed out") for i in range(n)]


def req(t: float, kind: str = "put", ok: bool = True, key: str | None = None, value: str | None = None,
        **kw: Any) -> Request:
    return Request(mono=BASE + t, wall=1.7e9 + t, kind=kind, ok=ok, latency_s=kw.pop("latency_s", 0.004),
                   key=key, value=value, **kw)


def topo(policy: str = "cascading", **sla: float) -> Topology:
    return Topology.model_validate({
        "name": "unit", "nodes": [{"name": "node1"}, {"name": "node2"}, {"name": "node3"}],
        "networks": [{"name": "service", "role": "service", "subnet": "10.77.1.0/24"}],
        "disks": [{"name": "shared"}],
        "groups": [{"name": "app", "service_ip": VIP, "network": "service", "disk": "shared",
                    "nodes": ["node1", "node2", "node3"], "policy": policy}],
        "sla": {"max_detection_s": 5, "max_fallover_s": 15, "max_outage_s": 15, "max_recovery_s": 30, **sla}})


def history(*, replace: dict[str, list[Event]] | None = None, extra: Sequence[Event] = (),
            samples: list[ProbeSample] | None = None) -> Timeline:
    """A clean cascading fallover of group app: node1 powered off at 0, node2 serves from 4.2, node1 rejoins
    after the heal at 10 and takes the group back at 14; `replace` swaps one phase's events."""
    phases: dict[str, list[Event]] = {
        "setup": [ev(-5, CLUSTER_GROUP_STARTED, "node1", group="app"), ev(-4, CLUSTER_REDUNDANT),
                  ev(-3, ARP_GRATUITOUS, ip=VIP, mac=MAC1), ev(-0.01, ARP_REPLY, ip=VIP, mac=MAC1)],
        "fault": [ev(0, FAULT_INJECTED, "node1", fault="poweroff", target="node1", family="node")],
        "detect": [ev(2.0, CLUSTER_NODE_LOST, "node1")],
        "notify": [ev(2.1, NOTIFICATION, "node1", kind="node", desc="lost")],
        "takeover": [ev(3.0, CLUSTER_GROUP_STOPPED, group="app"), ev(4.0, CLUSTER_GROUP_STARTED, "node2", group="app"),
                     ev(4.01, ARP_GRATUITOUS, ip=VIP, mac=MAC2), ev(4.21, ARP_GRATUITOUS, ip=VIP, mac=MAC2)],
        "heal": [ev(10, FAULT_HEALED, "node1", fault="poweroff", target="node1")],
        "rejoin": [ev(12, CLUSTER_NODE_JOINED, "node1"), ev(13.9, CLUSTER_GROUP_STARTED, "node1", group="app"),
                   ev(13.91, ARP_GRATUITOUS, ip=VIP, mac=MAC1)],
        "redundant": [ev(15, CLUSTER_REDUNDANT)],
    }
    phases.update(replace or {})
    if samples is None:
        samples = probe(-2, 0, True, "node1") + probe(0, 4.2, False, None) + probe(4.2, 13.8, True, "node2") \
            + probe(13.8, 14.0, False, None) + probe(14.0, 20, True, "node1")
    return Timeline(events=[e for p in phases.values() for e in p] + list(extra), probe=samples)


def ctx(timeline: Timeline | None = None, requests: Sequence[Request] = (), policy: str = "cascading",
        **expectation: Any) -> Context:
    return Context(timeline=timeline or history(), requests=list(requests), topology=topo(policy),
                   expectation={"group": "app", **expectation})


# -- base -----------------------------------------------------------------------------------------


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


# -- failed requests ------------------------------------------------------------------------------


def _load() -> list[Request]:
    return [req(i * 0.1, "put" if i % 2 else "get", ok=not 10 <= i < 14, key=f"k{i}", value="v",
                error=None if not 10 <= i < 14 else "ConnectionRefusedError") for i in range(40)]


def test_failed_requests_is_informational_without_a_limit() -> None:
    v = check_failed_requests(ctx(requests=_load() + [req(30, "verify", ok=False, key="k1")]))
    assert v.valid is True and v.measured == 4 and v.limit is None
    assert "4 of 40 load requests failed (10.00%; get 2/20, put 2/20)" in v.explanation
    assert "ConnectionRefusedError (4x)" in v.explanation


def test_failed_requests_above_a_limit_are_caught() -> None:
    assert check_failed_requests(ctx(requests=_load(), max_failed_requests=3)).valid is False
    share = check_failed_requests(ctx(requests=_load(), max_failed_share=0.2))
    assert share.valid is True and share.measured == pytest.approx(0.1) and share.unit == "share"


def test_failed_requests_without_load_but_with_a_limit_is_unknown() -> None:
    assert check_failed_requests(ctx(max_failed_requests=0)).valid == UNKNOWN
    assert check_failed_requests(ctx()).valid is True


# -- lost writes ----------------------------------------------------------------------------------


def test_no_lost_writes() -> None:
    rs = [req(1, key="a", value="1"), req(2, key="b", value="2"), req(3, ok=False, key="c", value="3"),
          req(30, "verify", key="a", value="1"), req(30, "verify", key="b", value="2")]
    v = check_lost_writes(ctx(requests=rs))
    assert v.valid is True and v.measured == 0 and "all 2 acknowledged" in v.explanation


def test_lost_writes_are_caught() -> None:
    rs = [req(1, key="a", value="1"), req(2, key="b", value="2"), req(3, key="c", value="3"),
          req(4, key="d", value="4"),
          req(30, "verify", key="a", value="1"),
          req(30, "verify", key="b", value="stale"),                       # different value
          req(31, "verify", ok=False, key="c", status=404, error="HTTP 404: no such key")]  # failed; d: missing
    v = check_lost_writes(ctx(requests=rs))
    assert v.valid is False and v.measured == 3
    assert "3 of 4 acknowledged writes lost" in v.explanation
    assert "'stale'" in v.explanation and "HTTP 404" in v.explanation and "d (acknowledged at +4.00 s, no verify" \
        in v.explanation


def test_lost_writes_last_verify_decides() -> None:
    rs = [req(1, key="a", value="1"), req(30, "verify", ok=False, key="a", error="timed out"),
          req(31, "verify", key="a", value="1")]
    assert check_lost_writes(ctx(requests=rs)).valid is True


def test_lost_writes_without_verify_records_is_unknown() -> None:
    v = check_lost_writes(ctx(requests=[req(1, key="a", value="1")]))
    assert v.valid == UNKNOWN and "no verify records" in v.explanation


# -- split brain ----------------------------------------------------------------------------------


def test_clean_handover_is_no_split_brain() -> None:
    v = check_split_brain(ctx())
    assert v.valid is True and v.measured == 0


def test_two_macs_for_the_vip_are_caught() -> None:
    both = [ev(5.0 + i * 0.2, ARP_REPLY, ip=VIP, mac=mac) for i in range(3) for mac in (MAC1, MAC2)]
    v = check_split_brain(ctx(history(extra=both)))
    assert v.valid is False and VIP in v.explanation and MAC1 in v.explanation and MAC2 in v.explanation


def test_group_split_event_is_caught() -> None:
    v = check_split_brain(ctx(history(extra=[ev(3.5, CLUSTER_GROUP_SPLIT, group="app", nodes=["node1", "node2"])])))
    assert v.valid is False and "active on node1+node2" in v.explanation


def test_interleaved_probe_answers_are_caught() -> None:
    flip = probe(-2, 0, True, "node1") + probe(0, 0.1, True, "node2") + probe(0.1, 0.2, True, "node1") \
        + probe(0.2, 2, True, "node2")
    v = check_split_brain(ctx(history(samples=flip)))
    assert v.valid is False and "probe answered by node1, then node2, then node1" in v.explanation


def test_interleaving_needs_both_ends_within_the_window() -> None:
    failback = [(0.0, "a"), (0.9, "b"), (1.6, "b"), (2.0, "a")]
    assert interleaved(failback, 1.0) is None
    assert interleaved([(0.0, "a"), (0.3, "b"), (0.6, "a")], 1.0) == (0.0, "a", "b", 0.6)


def test_split_brain_without_evidence_is_unknown() -> None:
    assert check_split_brain(Context(timeline=Timeline(events=[ev(0, FAULT_INJECTED)]))).valid == UNKNOWN


# -- redundancy -----------------------------------------------------------------------------------


def test_redundancy_restored_in_time() -> None:
    v = check_redundancy_restored(ctx())
    assert v.valid is True and v.measured == pytest.approx(5.0) and "healed at +10.00 s" in v.explanation


def test_redundancy_late_or_missing_is_caught() -> None:
    late = check_redundancy_restored(ctx(history(replace={"redundant": [ev(45, CLUSTER_REDUNDANT)]})))
    assert late.valid is False and late.measured == pytest.approx(35.0)
    missing = check_redundancy_restored(ctx(history(replace={"redundant": []})))
    assert missing.valid is False and "never became fully redundant" in missing.explanation


def test_redundancy_without_heal_is_unknown() -> None:
    assert check_redundancy_restored(ctx(history(replace={"heal": []}))).valid == UNKNOWN


# -- policy ---------------------------------------------------------------------------------------


def test_cascading_group_back_on_node1() -> None:
    v = check_policy(ctx())
    assert v.valid is True and v.measured == "node1" and v.limit == "node1"


def test_cascading_group_not_back_on_node1_is_caught() -> None:
    v = check_policy(ctx(history(replace={"rejoin": [ev(12, CLUSTER_NODE_JOINED, "node1")]})))
    assert v.valid is False and v.measured == "node2" and v.limit == "node1"
    assert "node1 is online, which rejoined at +12.00 s" in v.explanation


def test_cascading_stays_on_node2_while_node1_is_down() -> None:
    v = check_policy(ctx(history(replace={"heal": [], "rejoin": [], "redundant": []})))
    assert v.valid is True and v.measured == "node2"


def test_rotating_group_stays_after_reintegration() -> None:
    v = check_policy(ctx(history(replace={"rejoin": [ev(12, CLUSTER_NODE_JOINED, "node1")]}), policy="rotating"))
    assert v.valid is True and v.measured == "node2"


def test_rotating_group_that_moved_back_is_caught() -> None:
    v = check_policy(ctx(policy="rotating"))
    assert v.valid is False and v.measured == "node1" and v.limit == "node2" and "moved from node2" in v.explanation


def test_policy_without_topology_is_unknown() -> None:
    assert check_policy(Context(timeline=history())).valid == UNKNOWN


def test_a_dropped_connectivity_attribute_is_a_notification_but_a_zero_fail_count_is_not() -> None:
    dead_switch = [ev(3.2, NOTIFICATION, "node1", kind="attribute", attribute_name="reach-service",
                      attribute_value="0")]
    v = check_notification(ctx(history(replace={"notify": dead_switch})))
    assert v.valid is True and v.measured == pytest.approx(3.2) and "reach-service=0" in v.explanation
    cleared = [ev(3.2, NOTIFICATION, "node1", kind="attribute", attribute_name="fail-count-app-app",
                  attribute_value="0")]
    assert check_notification(ctx(history(replace={"notify": cleared}))).valid is False
