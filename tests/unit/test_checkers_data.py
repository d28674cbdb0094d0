"""Checkers judged on literal histories (requests, lost writes, split brain, redundancy, policy)."""

from __future__ import annotations

from checker_history import *  # noqa: F401,F403  (the helpers and the names they use)




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


def test_a_verify_read_without_any_answer_is_unknown_not_lost() -> None:
    """A read that timed out after its retries is no evidence about the write (a slow emulated guest)."""
    rs = [req(1, key="a", value="1"), req(2, key="b", value="2"),
          req(30, "verify", key="a", value="1"), req(30, "verify", ok=False, key="b", error="TimeoutError: timed out")]
    v = check_lost_writes(ctx(requests=rs))
    assert v.valid == UNKNOWN and "1 of 2 acknowledged writes could not be read back" in v.explanation
    assert "b: TimeoutError: timed out" in v.explanation
    with_lost = rs + [req(3, key="c", value="3"), req(31, "verify", ok=False, key="c", status=404, error="missing")]
    v = check_lost_writes(ctx(requests=with_lost))
    assert v.valid is False and v.measured == 1 and "(1 more could not be read back: no answer)" in v.explanation


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


def test_a_mac_of_no_node_while_the_fault_corrupts_packets_is_the_fault_not_a_second_owner() -> None:
    """ARP has no checksum: on the VMs one answer of node1's in 192 arrived with a bit flipped in its MAC."""
    garbled = "52:54:f5:0a:41:01"
    stay = {"takeover": [], "rejoin": [], "heal": [ev(10, FAULT_HEALED, "node1", fault="packet_corrupt",
                                                       target="node1-service")],
            "fault": [ev(0, FAULT_INJECTED, "node1", fault="packet_corrupt", target="node1-service", family="network")],
            "setup": [ev(-5, CLUSTER_GROUP_STARTED, "node1", group="app"), ev(-4, CLUSTER_REDUNDANT)]}
    answers = [ev(-1 + i * 0.2, ARP_REPLY, "node1", ip=VIP, mac=MAC1) for i in range(80)]  # -1 s to +15 s
    hit = [ev(1.1, ARP_REPLY, ip=VIP, mac=garbled)]  # no node has that MAC: its Event.node is None
    stayed = probe(-2, 20, True, "node1")
    v = check_split_brain(ctx(history(replace=stay, extra=answers + hit, samples=stayed),
                              expect_fallover=False, expected_node="node1"))
    assert v.valid is True, v.explanation
    assert "1 more from a MAC of no node while the fault corrupted packets" in v.explanation
    late = [ev(12.1, ARP_REPLY, ip=VIP, mac=garbled)]  # after the heal: an address conflict, and it counts
    v = check_split_brain(ctx(history(replace=stay, extra=answers + late, samples=stayed),
                              expect_fallover=False, expected_node="node1"))
    assert v.valid is False and garbled in v.explanation and "node1" in v.explanation


def test_group_split_event_is_caught() -> None:
    v = check_split_brain(ctx(history(extra=[ev(3.5, CLUSTER_GROUP_SPLIT, group="app", nodes=["node1", "node2"])])))
    assert v.valid is False and "active on node1+node2" in v.explanation


def test_interleaved_probe_answers_are_caught() -> None:
    flip = probe(-2, 0, True, "node1") + probe(0, 0.1, True, "node2") + probe(0.1, 0.2, True, "node1") \
        + probe(0.2, 2, True, "node2")
    v = check_split_brain(ctx(history(samples=flip)))
    assert v.valid is False and "probe answered by node1, then node2, then node1" in v.explanation


def _start(t: float, node: str, rsc: str = "app-fs", rc: int = 0) -> Event:
    return ev(t, NOTIFICATION, node, kind="resource", rsc=rsc, task="start", rc=rc, node=node)


def test_a_takeover_begun_while_the_owner_still_serves_is_caught() -> None:
    """The nofence cluster cut node1 off and started app-fs on node2 while node1 still served; the mount
    failed there ("probably corrupted filesystem"), so no double mount was ever seen: still split brain."""
    never_moved = probe(-2, 20, True, "node1")
    v = check_split_brain(ctx(history(replace={"takeover": [], "rejoin": []}, samples=never_moved,
                                      extra=[_start(3.0, "node2", rc=1)])))
    assert v.valid is False, v.explanation
    assert "app-fs started on node2 at +3.00 s, rc=1 while node1 still served (answered at +3.02 s)" in v.explanation


def test_a_handover_and_a_move_back_are_no_takeover_beside_the_owner() -> None:
    """The clean history: node2 starts the group after node1 stopped answering (fenced), node1 starts it
    again before it answers again (failback); a restart in place is on the same node."""
    starts = [_start(3.9, "node2"), _start(13.85, "node1"), _start(16.0, "node1", rsc="app-app")]
    v = check_split_brain(ctx(history(extra=starts)))
    assert v.valid is True, v.explanation
    other = [ev(3.9, NOTIFICATION, "node2", kind="resource", rsc="reach-service", task="start", rc=0, node="node3")]
    assert check_split_brain(ctx(history(extra=other))).valid is True  # not a member of the group


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


def test_lost_writes_on_a_takeover_without_shared_storage_are_not_judged_but_counted() -> None:
    rs = [req(1, key="a", value="1"), req(2, key="b", value="2"), req(30, "verify", key="a", value="1"),
          req(31, "verify", ok=False, key="b", status=404, error="HTTP 404: no such key")]
    v = check_lost_writes(ctx(requests=rs, shared_storage=False, expect_fallover=True))
    assert v.valid is True and v.judged is False
    assert "no shared disk" in v.explanation and "1 of 2 lost" in v.explanation
    stayed = check_lost_writes(ctx(requests=rs, shared_storage=False, expect_fallover=False))
    assert stayed.valid is False and stayed.measured == 1  # no takeover: nothing excuses a lost write
