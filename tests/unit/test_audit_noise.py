"""The log audit's expected noise, by construction: disruptions from hand-built timelines, real-looking log lines."""

from __future__ import annotations

import time

import pytest
from log_lines import (T0, active_twice, attrd_updater, broken_pipe, corosync_kill_case, healed, injected, mark, pcmk,
                       syslog, timeline)

from harness.audits.noise import (
    DISRUPTS,
    END_MARGIN_S,
    NOISE,
    START_MARGIN_S,
    WHOLE_NODE,
    Disruption,
    daemon_of,
    disruptions_from,
    explain,
    line_span,
)
from harness.faults import FAULTS
from harness.timeline import (
    CLUSTER_NODE_JOINED,
    CLUSTER_NODE_LOST,
    FAULT_INJECTED,
    FENCED,
)
from harness.topology import DEFAULT_TESTBED, load_topology

TOPO = load_topology(DEFAULT_TESTBED)


# -- timestamps and daemons -----------------------------------------------------------------------

def test_every_line_format_has_its_time_widened_to_its_resolution() -> None:
    t = T0 + 0.123
    assert line_span(pcmk(t, "node1", "pacemaker-controld", "f", "error", "x"), T0) == \
        pytest.approx((t, t + 0.001), abs=1e-6)
    agent = f"{syslog(T0, ms=False)}  Filesystem(app-fs)[259]:    ERROR: Failed to write status file"
    assert line_span(agent, T0) == (T0, T0 + 1)
    corosync = f"{syslog(t)} [14] node1 corosync error   [KNET  ] rx: could not decrypt packet"
    assert line_span(corosync, T0) == pytest.approx((t, t + 0.001), abs=1e-6)
    app = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(T0)) + " kvapp[593] node1 ERROR put: EIO: x"
    assert line_span(app, T0) == (T0, T0 + 1)
    assert line_span("Traceback (most recent call last):", T0) is None
    assert line_span("Foo 25 15:34:05.123 node1 x", T0) is None


def test_syslog_stamps_take_the_year_nearest_the_mark_across_new_year() -> None:
    new_year = time.mktime((2027, 1, 1, 0, 0, 5, 0, 0, -1))
    old = line_span("Dec 31 23:59:59.900 node1 pacemakerd [1] (f) \terror: x", new_year)
    assert old is not None and old[0] == pytest.approx(new_year - 5.1)
    eve = time.mktime((2026, 12, 31, 23, 59, 50, 0, 0, -1))
    new = line_span("Jan  1 00:00:01.000 node1 pacemakerd [1] (f) \terror: x", eve)
    assert new is not None and new[0] == pytest.approx(eve + 11)


def test_the_daemon_of_every_format() -> None:
    assert daemon_of(attrd_updater(T0)) == "attrd_updater"
    assert daemon_of(active_twice(T0)) == "pacemaker-schedulerd"
    assert daemon_of("Nov 25 15:34:05.123 node1 pacemaker-schedulerd[44] (f) \terror: x") == "pacemaker-schedulerd"
    assert daemon_of("Nov 25 15:34:05  Filesystem(app-fs)[259]:    ERROR: x") == "resource-agent"
    assert daemon_of("Nov 25 15:33:57.864 [14] node1 corosync error   [KNET  ] x") == "corosync"
    assert daemon_of("2026-11-25T15:34:05 fallover-app[404] node1 monitor: ERROR x") == "fallover-app"
    assert daemon_of("Traceback (most recent call last):") is None


# -- disruptions from a timeline ----------------------------------------------------------------------

def test_every_fault_says_what_it_disrupts_and_why() -> None:
    assert set(DISRUPTS) == set(FAULTS)
    for fault, effect in DISRUPTS.items():
        assert len(effect.reason) > 20, f"{fault}: say why"
        assert (effect.scope == "none") == (not effect.daemons), fault
    for rule in NOISE:
        assert len(rule.reason) > 20, f"{rule.regex.pattern}: say why"


def test_a_killed_corosync_disrupts_its_node_from_injection_to_the_end_of_recovery() -> None:
    found = disruptions_from(corosync_kill_case(), TOPO)
    assert {d.node for d in found} == {"node1"}
    assert all(d.daemons == WHOLE_NODE for d in found)
    fault = next(d for d in found if d.why.startswith("corosync_kill injected on node1"))
    fence = next(d for d in found if d.why.startswith("node1 fenced"))
    assert fault.start_wall == T0 - START_MARGIN_S
    assert fault.end_wall == fence.end_wall == T0 + 14 + END_MARGIN_S  # heal at +8, recovery until +14
    # the loss the fence answered started it: up to the detection SLA before the poller saw it
    assert fence.start_wall == T0 + 2.3 - TOPO.sla.max_detection_s
    assert fence.why.endswith("held through the recovery")


def test_a_rolling_restart_disrupts_every_node_and_a_standby_nothing() -> None:
    tl = timeline(injected(0, "rolling_restart"), healed(30, "rolling_restart"))
    found = disruptions_from(tl, TOPO)
    assert sorted(d.node for d in found) == TOPO.node_names
    assert {(d.start_wall, d.end_wall) for d in found} == {(T0 - START_MARGIN_S, T0 + 30 + END_MARGIN_S)}
    for fault, kw in [("node_standby", {"node": "node1"}), ("group_move", {"target": "app-node2"}),
                      ("adapter_down", {"node": "node1", "target": "node1-service"}),
                      ("disk_pull", {"target": "shared"})]:
        assert disruptions_from(timeline(injected(0, fault, **kw), healed(8, fault, **kw)), TOPO) == [], fault


def test_a_partition_disrupts_the_cut_off_side_only() -> None:
    tl = timeline(injected(0, "partition", target="node1+node2", nodes=["node1", "node2"]),
                  healed(8, "partition", target="node1+node2"))
    assert sorted(d.node for d in disruptions_from(tl, TOPO)) == ["node1", "node2"]


def test_a_fence_during_a_disk_fault_disrupts_the_fenced_node_until_it_rejoins() -> None:
    tl = timeline(injected(0, "disk_pull", target="shared"),
                  (6, FENCED, "node1", {"action": "off", "outcome": "OK"}),
                  (9, CLUSTER_NODE_JOINED, "node1", {}), healed(10, "disk_pull", target="shared"))
    [d] = disruptions_from(tl, TOPO)
    assert (d.node, d.start_wall, d.end_wall) == ("node1", T0 + 6 - START_MARGIN_S, T0 + 9 + END_MARGIN_S)


def test_windows_without_an_end_stay_open() -> None:
    assert [d.end_wall for d in disruptions_from(timeline(injected(0, "node_stop", "node2")), TOPO)] == [None]
    fenced = timeline((1, FENCED, "node3", {"action": "off", "outcome": "OK"}))
    assert [d.end_wall for d in disruptions_from(fenced, TOPO)] == [None]
    unfinished = timeline(injected(0, "node_stop", "node2"), healed(8, "node_stop", "node2"),
                          mark(8, "recovery start"))
    assert [d.end_wall for d in disruptions_from(unfinished, TOPO)] == [None]


def test_a_recovery_that_ended_before_a_disruption_does_not_stretch_it() -> None:
    tl = timeline(mark(0, "recovery start"), mark(5, "recovery end"),
                  (9, FENCED, "node2", {"action": "off", "outcome": "OK"}), (12, CLUSTER_NODE_JOINED, "node2", {}))
    [d] = disruptions_from(tl, TOPO)
    assert (d.start_wall, d.end_wall) == (T0 + 9 - START_MARGIN_S, T0 + 12 + END_MARGIN_S)
    assert not d.why.endswith("held through the recovery")


def test_an_unexplained_loss_or_a_failed_fence_disrupts_nothing() -> None:
    tl = timeline((1, CLUSTER_NODE_LOST, "node3", {}), (2, FENCED, "node2", {"action": "off", "outcome": "ERROR"}),
                  (5, CLUSTER_NODE_JOINED, "node3", {}))
    assert disruptions_from(tl, TOPO) == []


def test_an_unknown_fault_is_an_error_not_a_silent_pass() -> None:
    tl = timeline((0, FAULT_INJECTED, "node1", {"fault": "no_such_fault", "target": "node1", "nodes": ["node1"]}))
    with pytest.raises(KeyError, match="no_such_fault"):
        disruptions_from(tl, TOPO)


# -- which lines are expected -----------------------------------------------------------------------

CASE = disruptions_from(corosync_kill_case(), TOPO)


def test_the_dying_nodes_attrd_updater_is_expected_with_its_reason() -> None:
    why = explain("node1", attrd_updater(T0 + 1.2), CASE, near=T0)
    assert why is not None
    assert why.startswith("corosync_kill injected on node1") and "found no listener" in why


@pytest.mark.parametrize(("node", "offset", "disruptions"), [
    ("node1", 1.2, []),              # no disruption at all
    ("node2", 1.2, CASE),            # the wrong node: node2's stack was never disrupted
    ("node1", -3.0, CASE),           # before the injection
    ("node1", 14 + END_MARGIN_S + 1, CASE),  # after the recovery and its margin
])
def test_the_same_line_is_flagged_without_a_matching_disruption(node: str, offset: float,
                                                                disruptions: list[Disruption]) -> None:
    assert explain(node, attrd_updater(T0 + offset, node), disruptions, near=T0) is None


def test_a_restarting_fencers_broken_pipe_is_expected_during_a_rolling_restart_only() -> None:
    rolling = disruptions_from(timeline(injected(0, "rolling_restart"), healed(30, "rolling_restart")), TOPO)
    assert explain("node2", broken_pipe(T0 + 12.5), rolling, near=T0) is not None
    assert explain("node2", broken_pipe(T0 + 12.5), [], near=T0) is None
    assert explain("node2", broken_pipe(T0 + 12.5), CASE, near=T0) is None  # node1's corosync_kill
    refused = pcmk(T0 + 12.5, "node2", "pacemaker-based", "handle_new_connection", "error",  # full suite, 2026-11-30
                   "Error in connection setup (/dev/shm/qb-2382-11332-9-vaACxy/qb): Operation not permitted (1)")
    assert explain("node2", refused, rolling, near=T0) is not None
    assert explain("node2", refused, [], near=T0) is None


def test_with_one_daemon_disrupted_its_peers_are_expected_and_unrelated_daemons_are_not() -> None:
    attrd = [Disruption("node1", frozenset({"pacemaker-attrd"}), T0, T0 + 10, "attrd restarted")]
    assert explain("node1", attrd_updater(T0 + 1), attrd, near=T0) is not None  # a client of attrd
    closed = pcmk(T0 + 1, "node1", "pacemaker-controld", "mainloop_gio_callback", "error",
                  "Connection to attrd closed")
    assert explain("node1", closed, attrd, near=T0) is not None                  # a peer talking to attrd
    assert explain("node1", broken_pipe(T0 + 1, "node1"), attrd, near=T0) is None  # the fencer's own IPC
    cpg = pcmk(T0 + 1, "node1", "pacemaker-based", "pcmk_cpg_dispatch", "error",
               "Connection to the CPG API failed: Library error (2)")
    assert explain("node1", cpg, attrd, near=T0) is None                          # corosync was not disrupted


def test_a_real_error_on_the_disrupted_node_inside_the_window_stays_flagged() -> None:
    assert explain("node1", active_twice(T0 + 2), CASE, near=T0) is None
    other = pcmk(T0 + 2, "node3", "pacemaker-controld", "do_lrm_invoke", "error",
                 "Cannot execute action: resource not found")
    assert explain("node3", other, CASE, near=T0) is None


def test_a_line_without_a_readable_time_is_never_expected_by_window() -> None:
    untimed = "node1 attrd_updater [812] (connect_and_send_attrd_request) \terror: Could not connect to attrd: " \
              "Connection refused"
    assert explain("node1", untimed, CASE, near=T0) is None


def test_the_measured_corosync_kill_noise_is_all_expected() -> None:
    # node1's pacemaker.log of a corosync_kill on the embedded testbed (2026-11-29), re-stamped
    measured = [(0.022, "pacemaker-controld", "crmd_cs_destroy", "crit", "Lost connection to cluster layer, "
                 "shutting down"),
                (0.030, "pacemaker-attrd", "pcmk_cpg_dispatch", "error", "Connection to the CPG API failed: "
                 "Library error (2)"),
                (0.034, "pacemakerd", "pcmk_child_exit", "error",
                 "pacemaker-controld[50] exited with status 102 (Not connected)"),
                (1.026, "pacemaker-attrd", "internal_ipc_get_reply", "error",
                 "cib_rw IPC provider disconnected while waiting for message 13"),
                (1.026, "pacemaker-execd", "crm_ipc_read", "error", "Connection to stonith-ng IPC failed"),
                (1.026, "pacemaker-execd", "mainloop_gio_callback", "error",
                 "Connection to stonith-ng closed |client=0x55864346b5c0 condition=17"),
                (1.034, "pacemakerd", "cluster_connect_cfg", "crit", "Could not connect to Corosync CFG: "
                 "CS_ERR_LIBRARY | rc=2")]
    for offset, daemon, func, level, msg in measured:
        line = pcmk(T0 + offset, "node1", daemon, func, level, msg)
        assert explain("node1", line, CASE, near=T0) is not None, line
        assert explain("node1", line, [], near=T0) is None, line


def test_a_cib_write_torn_by_a_power_cut_is_expected_at_the_nodes_next_start_only() -> None:
    # node1's pacemaker.log as it rejoined after partition-node1 (full suite, 2026-11-30); the same three
    # lines come from a wrong cib.xml.sig and a power cycle of node3 (2026-11-30, Pacemaker 2.1.5)
    torn = [pcmk(T0 + 10.2, "node1", "pacemaker-based", "pcmk__verify_digest", "error",
                 "Digest comparison failed: expected 88f45557800a6b87f7b29969177b8ab0, "
                 "calculated 7a9b7d82bf72c09b54cb1e6e6b60019c"),
            *(pcmk(T0 + 10.2, "node1", "pacemaker-based", "cib_rename", "error",
                   f"Archiving unusable file /var/lib/pacemaker/cib/{f} as /var/lib/pacemaker/cib/cib.auto.IIPZ3Y")
              for f in ("cib.xml", "cib.xml.sig"))]
    partition = disruptions_from(timeline(injected(0, "partition", target="node1", nodes=["node1"]),
                                          (3.4, FENCED, "node1", {"action": "off", "outcome": "OK"}),
                                          healed(8, "partition", target="node1"),
                                          (12, CLUSTER_NODE_JOINED, "node1", {})), TOPO)
    based = [Disruption("node1", frozenset({"pacemaker-based"}), T0, T0 + 15, "based_kill injected on node1")]
    attrd = [Disruption("node1", frozenset({"pacemaker-attrd"}), T0, T0 + 15, "attrd_kill injected on node1")]
    for line in torn:
        assert "cib.xml" in (explain("node1", line, partition, near=T0) or ""), line
        assert explain("node1", line, based, near=T0) is not None, line
        assert explain("node1", line, [], near=T0) is None, line        # no power cut: someone edited the CIB
        assert explain("node1", line, attrd, near=T0) is None, line     # the CIB manager kept running
        assert explain("node2", line.replace(" node1 ", " node2 "), partition, near=T0) is None, line
    # a torn file elsewhere (a backup, a user's file) is not the CIB manager's own write
    other = pcmk(T0 + 10.2, "node1", "pacemaker-based", "cib_rename", "error",
                 "Archiving unusable file /var/lib/pacemaker/cib/cib-3.raw as /var/lib/pacemaker/cib/cib.auto.X")
    assert explain("node1", other, partition, near=T0) is None


def test_a_controller_that_asks_attrd_before_it_listens_is_expected_only_where_attrd_restarted() -> None:
    # node2's pacemaker.log as it booted after partition-node2 on the VMs (2026-11-30): attrd was still waiting
    # for the CIB manager when the new controller sent its #feature-set
    line = pcmk(T0 + 10.2, "node2", "pacemaker-controld", "update_attrd", "error",
                "Could not update attribute #feature-set=3.16.1 for cluster node node2: Connection refused | rc=111")
    partition = disruptions_from(timeline(injected(0, "partition", target="node2", nodes=["node2"]),
                                          (3.4, FENCED, "node2", {"action": "off", "outcome": "OK"}),
                                          healed(8, "partition", target="node2"),
                                          (12, CLUSTER_NODE_JOINED, "node2", {})), TOPO)
    based = [Disruption("node2", frozenset({"pacemaker-based"}), T0, T0 + 15, "based_kill injected on node2")]
    assert "attribute manager" in (explain("node2", line, partition, near=T0) or "")
    assert explain("node2", line, [], near=T0) is None        # attrd refusing a running controller: a finding
    assert explain("node2", line, based, near=T0) is None     # attrd itself was never restarted
    assert explain("node1", line.replace(" node2 ", " node1 ", 1), partition, near=T0) is None
