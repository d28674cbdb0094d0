"""The takeover's steps read from Pacemaker and Corosync log lines (bench/vm.py prints them)."""

from __future__ import annotations

from harness.audits.pcmk_timing import merged, milestones, stamp

NODE2 = """\
Nov 30 05:43:41.007 [16] node2 corosync notice  [TOTEM ] A new membership (2.11) was formed. Members left: 1
Nov 30 05:43:41.011 node2 pacemaker-controld  [49] (update_peer_state_iter) \tnotice: Node node1 state is now lost | nodeid=1 previous=member source=pcmk__reap_unseen_nodes
Nov 30 05:43:41.151 node2 pacemaker-controld  [49] (controld_execute_fence_action) \tnotice: Requesting fencing (off) of node node1 | action=1 timeout=15000
Nov 30 05:43:41.555 node2 pacemaker-fenced    [45] (finalize_op) \tnotice: Operation 'off' targeting node1 by node3 for pacemaker-controld.49@node2: OK | id=6a41965b
Nov 30 05:43:42.001 node2 pacemaker-controld  [49] (execute_rsc_action) \tnotice: Initiating start operation app-fs_start_0 locally on node2 | action 12
Nov 30 05:43:46.743 node2 pacemaker-controld  [55] (log_executor_event) \tnotice: Result of start operation for app-fs on node2: ok | CIB update 49, graph action confirmed; call=65 key=app-fs_start_0 rc=0
Nov 30 05:43:47.000 node2 pacemaker-controld  [55] (throttle_check_thresholds) \tnotice: High CPU load detected: 3.500000
Nov 30 05:44:05.511 node2 pacemaker-controld  [49] (update_peer_state_iter) \tnotice: Node node1 state is now member | nodeid=1 previous=lost source=quorum_notification_cb
garbage line
"""
NODE3 = """\
Nov 30 05:43:41.007 [16] node3 corosync notice  [TOTEM ] A new membership (2.11) was formed. Members left: 1
Nov 30 05:43:41.035 node3 pacemaker-controld  [49] (do_state_transition) \tnotice: State transition S_ELECTION -> S_INTEGRATION | input=I_ELECTION_DC cause=C_FSA_INTERNAL origin=election_win_cb
"""


def test_each_step_in_time_order_with_each_nodes_clock_offset_applied() -> None:
    t0 = stamp("Nov 30 05:43:41.000 x", 2026)
    assert t0 is not None
    two = milestones("node2", NODE2.splitlines(), year=2026)
    three = milestones("node3", NODE3.splitlines(), year=2026, offset=1.0)  # node3's clock runs 1 s ahead
    steps = [(round(m.wall - t0, 3), m.what) for m in merged([two, three])]
    assert steps == [
        (-0.993, "membership 2.11: node id(s) 1 left"),  # node3's line, shifted by its offset; node2's is the same step
        (-0.965, "node3 won the election: new DC"),
        (0.151, "fence (off) of node1 requested"),
        (0.555, "fence (off) of node1 done by node3"),
        (1.001, "initiating app-fs_start_0 on node2"),
        (5.743, "start of app-fs on node2: ok"),
        (6.0, "node2: controller throttling (load 3.500000)"),
        (24.511, "node1 a cluster member again"),
    ]


def test_a_step_several_nodes_logged_is_shown_once_and_older_lines_are_left_out() -> None:
    t0 = stamp("Nov 30 05:43:41.100 x", 2026)
    two = milestones("node2", NODE2.splitlines(), year=2026, since=t0)
    assert not any("left" in m.what for m in two)  # 05:43:41.007 is before `since`
    three = milestones("node3", NODE3.splitlines(), year=2026)
    same = merged([milestones("node2", NODE2.splitlines(), year=2026), three])
    assert [m.what for m in same].count("membership 2.11: node id(s) 1 left") == 1
