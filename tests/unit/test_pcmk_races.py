"""Pacemaker's races recognised in node logs (harness/audits/pcmk_races.py), on lines from a live run."""

from harness.audits.logs import LogLine
from harness.audits.pcmk_races import stale_transition

DC = "node3"
LEFT = ("Nov 30 03:39:54.967 node3 pacemaker-controld  [51] (peer_update_callback) \tinfo: Node node1 is no longer a "
        "peer | DC=true old=0x4000000 new=0000000")
STOP = ("Nov 30 03:39:55.003 node3 pacemaker-controld  [51] (execute_rsc_action) \tnotice: Initiating stop operation "
        "app-app_stop_0 on node1 | action 39")
FENCE = ("Nov 30 03:40:21.647 node3 pacemaker-controld  [51] (controld_execute_fence_action) \tnotice: Requesting "
         "fencing (off) of node node1 | action=1 timeout=15000")


def lines(*raw: str) -> list[LogLine]:
    return [LogLine(DC, "pacemaker.log", r) for r in raw]


def test_a_stop_sent_to_a_lost_controller_before_any_fence_is_named_as_the_race() -> None:
    [why] = stale_transition(lines(LEFT, STOP, FENCE))
    assert why.startswith("Pacemaker race (seen in node3's log): after node1's controller left, the DC sent a stop "
                          "of app-app_stop_0 to it")
    assert "timeout plus cluster-delay" in why


def test_a_fence_asked_first_is_the_documented_path_not_the_race() -> None:
    assert stale_transition(lines(LEFT, FENCE, STOP)) == []


def test_an_operation_on_a_node_whose_controller_is_there_is_not_the_race() -> None:
    assert stale_transition(lines(STOP)) == []
    assert stale_transition(lines(LEFT.replace("node1", "node2"), STOP)) == []


def test_a_peer_lost_in_another_nodes_log_is_not_the_race() -> None:
    """A partition (the nofence cluster, 2026-11-30): node1 lost node3, while node2, with node3 on its
    side, rightly sent node3 a start. Only a DC's own loss of the peer makes the race."""
    lost_by_node1 = LogLine("node1", "pacemaker.log", "Nov 30 07:07:50.1 node1 pacemaker-controld  [51] "
                            "(peer_update_callback) \tinfo: Node node3 is no longer a peer | DC=true")
    start_by_node2 = LogLine("node2", "pacemaker.log", "Nov 30 07:08:00.1 node2 pacemaker-controld  [49] "
                             "(execute_rsc_action) \tnotice: Initiating start operation app-fs_start_0 on node3 | action 25")
    assert stale_transition([lost_by_node1, start_by_node2]) == []
    lost_by_node2 = LogLine("node2", lost_by_node1.file, lost_by_node1.line.replace(" node1 ", " node2 "))
    assert len(stale_transition([lost_by_node2, start_by_node2])) == 1
