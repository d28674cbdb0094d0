"""A node's departure as a peer's own log stamped it: the node's log clock, the lines, the detection they give."""

from __future__ import annotations

import calendar
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from checker_history import BASE, ctx, ev, history
from fake_testbed import FakeTestbed

from harness.audits.departures import Departure, LogClock, departures, first_per_node, log_clock
from harness.audits.logs import LogLine
from harness.checkers.detection import check_detection
from harness.judging import Judging
from harness.timeline import CLUSTER_LOGGED_LOSS, CLUSTER_NODE_LOST, FAULT_INJECTED, Timeline

LEFT = ("{stamp} node3 pacemaker-controld  [886] (peer_update_callback) \tinfo: Node node1 is no longer a peer | "
        "DC=true old=0x4000000 new=0000000")
LOST = "{stamp} node2 pacemaker-fenced    [880] (update_peer_state_iter) \tnotice: Node node1 state is now lost | x"


def _syslog(t: float, shift: float = 0.0) -> str:
    """``t`` (epoch) as a node whose clock is ``shift`` s ahead prints it in its logs."""
    tm = time.gmtime(t + shift)
    return time.strftime("%b %d %H:%M:%S", tm) + f".{int(round((t + shift) % 1 * 1000)):03d}"


def _clocked(tb: FakeTestbed, shift: float) -> None:
    """Every node answers `date` with its clock ``shift`` s ahead of the harness's (e.g. a time zone)."""
    def shell(node: str, cmd: str) -> tuple[int, str]:
        assert "date" in cmd and "LC_ALL=C" in cmd
        now = time.time() + shift
        return 0, time.strftime("%Y %b %d %H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1e9):09d}\n"
    tb.shell = shell


@pytest.mark.parametrize("shift", [0.0, -0.98, 3600.0])  # the same host; a drifted guest; a node an hour east
def test_a_nodes_log_clock_is_its_offset_time_zone_included(tmp_path: Path, shift: float) -> None:
    tb = FakeTestbed(tmp_path)
    _clocked(tb, shift)
    clock = log_clock(tb, "node3")
    assert clock is not None and clock.offset == pytest.approx(shift, abs=0.05) and clock.err < 0.05
    assert clock.year == time.gmtime(time.time() + shift).tm_year
    assert len([c for n, c in tb.commands if n == "node3"]) == 3  # the best of three round trips


@pytest.mark.parametrize("answer", [(1, ""), (0, "date: invalid date\n"), (0, "2026 Foo 99 25:00:00.1\n")])
def test_a_node_that_cannot_say_its_time_has_no_clock(tmp_path: Path, answer: tuple[int, str]) -> None:
    tb = FakeTestbed(tmp_path)
    tb.shell = lambda node, cmd: answer
    assert log_clock(tb, "node1") is None


def test_lines_are_stamped_on_the_harnesss_clock_and_a_node_without_a_clock_is_left_out() -> None:
    t = calendar.timegm((2026, 12, 1, 4, 27, 49, 0, 0, 0)) + 0.544
    lines = [LogLine("node3", "pacemaker.log", LEFT.format(stamp=_syslog(t, -0.98))),
             LogLine("node2", "pacemaker.log", LOST.format(stamp=_syslog(t + 0.3, 0.2))),
             LogLine("node1", "pacemaker.log", LOST.format(stamp=_syslog(t)).replace(" node2 ", " node1 ")),
             LogLine("node3", "pacemaker.log", "Dec 01 04:27:50.000 node3 pacemaker-controld [1] (x) info: hello")]
    clocks = {"node3": LogClock(-0.98, 0.01, 2026), "node1": LogClock(0.0, 0.01, 2026)}
    found = departures(lines, clocks)
    assert [(d.node, d.seen_from, d.what) for d in found] == [("node1", "node3", "is no longer a peer")]
    assert found[0].wall == pytest.approx(t, abs=0.002)  # node3's stamp minus its clock's lead
    clocks["node2"] = LogClock(0.2, 0.01, 2026)
    assert [d.seen_from for d in first_per_node(departures(lines, clocks))] == ["node3"]  # node2's 0.3 s later


ASKED = ("{stamp} node3 pacemaker-controld  [434] (handle_shutdown_request) \tinfo: Creating shutdown request for "
         "node1 (state=S_IDLE)")
ATTR = ("{stamp} node2 pacemaker-attrd     [433] (update_attr_on_host) \tnotice: Setting shutdown[node1]: {change} "
        "| from node3 with no write delay")


def test_a_node_asking_to_leave_is_a_departure_its_own_log_and_the_clearing_are_not() -> None:
    """node_stop: the DC's shutdown request and the peers' attribute (VM logs of 2026-12-01), not the node's own."""
    t = calendar.timegm((2026, 12, 1, 12, 20, 0, 0, 0, 0)) + 0.66
    lines = [LogLine("node3", "pacemaker.log", ASKED.format(stamp=_syslog(t))),
             LogLine("node2", "pacemaker.log", ATTR.format(stamp=_syslog(t + 0.5), change="(unset) -> 1796127600")),
             LogLine("node2", "pacemaker.log", ATTR.format(stamp=_syslog(t + 90), change="1796127600 -> (unset)")),
             LogLine("node1", "pacemaker.log", ASKED.format(stamp=_syslog(t)).replace(" node3 ", " node1 "))]
    clocks = {n: LogClock(0.0, 0.01, 2026) for n in ("node1", "node2", "node3")}
    found = departures(lines, clocks)
    assert [(d.node, d.seen_from, d.what) for d in found] == [("node1", "node3", "asked to leave the cluster"),
                                                              ("node1", "node2", "asked to leave the cluster")]
    assert [d.wall for d in first_per_node(found)] == [pytest.approx(t, abs=0.002)]


def _judging(tb: FakeTestbed) -> Any:
    return SimpleNamespace(topology=tb.topology, testbed=tb, log=lambda msg: None)


def test_the_judge_puts_departures_in_the_timeline_at_the_late_end_of_the_clock(tmp_path: Path) -> None:
    tb = FakeTestbed(tmp_path)
    _clocked(tb, -0.98)
    t = time.time() - 60
    audit = SimpleNamespace(new_lines=lambda: iter([LogLine("node3", "pacemaker.log",
                                                            LEFT.format(stamp=_syslog(t, -0.98)))]))
    c = SimpleNamespace(audit=audit, timeline=Timeline(), run_dir=tmp_path, fault_mono=1.0)
    Judging._logged_departures(_judging(tb), c)  # type: ignore[arg-type]
    loss, = c.timeline.of(CLUSTER_LOGGED_LOSS)
    assert loss.node == "node1" and loss.data["seen_from"] == "node3" and "no longer a peer" in loss.data["line"]
    assert loss.wall == pytest.approx(t + loss.data["clock_err_s"], abs=0.05) and loss.data["clock_err_s"] >= 0
    assert set(c.timeline.meta["log_clocks"]) == set(tb.topology.node_names)


def test_the_judge_skips_a_powered_off_node_and_survives_unreadable_logs(tmp_path: Path) -> None:
    tb = FakeTestbed(tmp_path)
    _clocked(tb, 0.0)
    tb.powered.discard("node1")

    def unreadable() -> Any:
        raise OSError("connection reset")
    said: list[str] = []
    c = SimpleNamespace(audit=SimpleNamespace(new_lines=unreadable), timeline=Timeline(), run_dir=tmp_path,
                        fault_mono=1.0)
    Judging._logged_departures(SimpleNamespace(topology=tb.topology, testbed=tb, log=said.append), c)  # type: ignore[arg-type]
    assert "node1" not in c.timeline.meta["log_clocks"] and not any(n == "node1" for n, _ in tb.commands)
    assert not c.timeline.of(CLUSTER_LOGGED_LOSS) and "connection reset" in said[0]


def _slow_poller(logged: float | None) -> Timeline:
    """A pacemaker_kill on node1 whose poller saw the loss at 9.63 s; its peer logged it at ``logged``."""
    detect = [ev(9.63, CLUSTER_NODE_LOST, "node1")]
    if logged is not None:
        detect.append(ev(logged, CLUSTER_LOGGED_LOSS, "node1", seen_from="node3", what="is no longer a peer",
                         line="...", clock_err_s=0.03))
    return history(replace={"fault": [ev(0, FAULT_INJECTED, "node1", fault="pacemaker_kill", target="node1")],
                            "detect": detect, "notify": []})


def test_detection_takes_the_peers_log_over_a_slow_poller() -> None:
    v = check_detection(ctx(_slow_poller(1.4), max_detection_s=10))
    assert v.valid is True and v.measured == pytest.approx(1.4)
    assert "node1 is no longer a peer in node3's log (its clock read to ±0.03 s)" in v.explanation
    assert check_detection(ctx(_slow_poller(None), max_detection_s=10)).measured == pytest.approx(9.63)


def test_a_logged_loss_is_no_detection_on_a_stack_without_membership_nor_of_another_node() -> None:
    assert check_detection(ctx(_slow_poller(1.4), max_detection_s=10, membership=False)).valid is False
    other = history(replace={"detect": [ev(1.0, CLUSTER_LOGGED_LOSS, "node3", seen_from="node2")], "notify": [],
                             "takeover": []})
    assert check_detection(ctx(other)).valid is False


def test_a_burst_of_lines_is_one_departure_and_a_later_one_another() -> None:
    d = [Departure(BASE + x, "node1", "node2", "state is now lost", "", 0.0) for x in (0, 0.4, 0.9, 1.7, 30)]
    assert [x.wall - BASE for x in first_per_node(d)] == [0, 30]
