"""The log audit over a testbed's log files: findings, expected lines with their reasons, and unknown for a log it could not read."""

from __future__ import annotations

from pathlib import Path

import pytest
from host_logs import HostLogs
from log_lines import T0, active_twice, attrd_updater, corosync_kill_case, syslog

from harness.audits.logs import LogAudit, LogLine
from harness.audits.noise import disruptions_from
from harness.checkers import UNKNOWN
from harness.topology import DEFAULT_TESTBED, load_topology

TOPO = load_topology(DEFAULT_TESTBED)
CASE = disruptions_from(corosync_kill_case(), TOPO)


def write(tb: HostLogs, node: str, rel: str, text: str) -> Path:
    path = tb.layout.node_dir(node) / "var" / "log" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)
    return path


@pytest.fixture
def tb(tmp_path: Path) -> HostLogs:
    tb = HostLogs(TOPO, tmp_path)
    for node in TOPO.node_names:
        write(tb, node, "pacemaker/pacemaker.log", "")
        write(tb, node, "cluster/corosync.log", "")
    return tb


def test_result_sorts_every_bad_line_into_findings_or_expected_with_a_reason(tb: HostLogs,
                                                                              tmp_path: Path) -> None:
    audit = LogAudit(tb)
    audit.mark()
    rlimit = f"{syslog(T0)} [14] node1 corosync error   [QB    ] Denied connection, is not ready (14-57-36)"
    write(tb, "node1", "pacemaker/pacemaker.log", f"{attrd_updater(T0 + 1.2)}\n{active_twice(T0 + 2)}\n")
    write(tb, "node1", "cluster/corosync.log", rlimit + "\n")
    res = audit.result(CASE, faults=["corosync_kill"])
    assert res.status == "findings"
    assert res.findings == [LogLine("node1", "pacemaker.log", active_twice(T0 + 2))]
    assert [ln.line for ln, _ in res.expected] == [attrd_updater(T0 + 1.2), rlimit]
    (_, why_noise), (_, why_harmless) = res.expected
    assert why_noise.startswith("corosync_kill injected on node1") and "found no listener" in why_noise
    assert why_harmless.startswith("harmless: pacemakerd connected a moment before corosync")
    v = res.verdict()
    assert (v.valid, v.measured) == (False, 1)
    assert "Resource app-fs is active on 2 nodes" in v.explanation
    saved = {p.name for p in res.save(tmp_path)}
    assert saved == {"log-findings.txt", "log-expected.txt"}
    assert res.verdict("logs", tmp_path).explanation.endswith(f"(all in {tmp_path / 'log-findings.txt'})")
    assert "because corosync_kill injected on node1" in (tmp_path / "log-expected.txt").read_text()


def test_every_line_since_the_mark_is_saved_per_log_for_a_failing_case(tb: HostLogs, tmp_path: Path) -> None:
    write(tb, "node1", "pacemaker/pacemaker.log", "before the mark\n")
    audit = LogAudit(tb)
    audit.mark()
    write(tb, "node1", "pacemaker/pacemaker.log", "info: Requesting fencing (off) of node1\nhalf a line")
    write(tb, "node3", "cluster/corosync.log", "notice: A new membership was formed\n")
    assert sorted(p.name for p in audit.save_lines(tmp_path / "logs")) == ["node1-pacemaker.log", "node3-corosync.log"]
    assert (tmp_path / "logs" / "node1-pacemaker.log").read_text() == "info: Requesting fencing (off) of node1\n"


def test_a_fault_consequence_is_expected_only_for_its_fault(tb: HostLogs) -> None:
    audit = LogAudit(tb)
    audit.mark()
    eio = f"{syslog(T0, ms=False)}  Filesystem(app-fs)[259]:    ERROR: Failed to write status file /mnt/x: EIO"
    write(tb, "node2", "pacemaker/pacemaker.log", eio + "\n")
    ok = audit.result([], faults=["disk_pull"])
    assert (ok.status, ok.expected[0][1].split(":")[0]) == ("ok", "disk_pull")
    assert audit.result([], faults=["app_kill"]).findings == [LogLine("node2", "pacemaker.log", eio)]


def test_corosyncs_own_scheduling_warning_is_expected_only_where_a_fault_stopped_or_starved_it(tb: HostLogs) -> None:
    audit = LogAudit(tb)
    audit.mark()
    stall = (f"{syslog(T0)} [18] node1 corosync warning [MAIN  ] Corosync main process was not scheduled "
             "(@1796008206163) for 811.9772 ms (threshold is 800.0000 ms). Consider token timeout increase.")
    write(tb, "node1", "cluster/corosync.log", stall + "\n")
    assert [audit.result([], faults=[f]).status for f in ("corosync_pause_short", "cpu_overload")] == ["ok", "ok"]
    assert audit.result([], faults=["app_kill"]).findings == [LogLine("node1", "corosync.log", stall)]


def test_a_corosync_starting_after_a_power_off_is_known_behind_the_nuls_of_the_crashed_boot(tb: HostLogs) -> None:
    """heartbeat_loss-node1 on the VMs (2026-12-01): node1's corosync.log held 4 KiB of NULs where the fenced
    boot's tail had been, then "Corosync Cluster Engine 3.1.7 starting up" on the same line: the start was not
    recognised and the starting corosync's scheduling warning failed the case."""
    audit = LogAudit(tb)
    audit.mark()
    start = f"{syslog(T0)} [254] node1 corosync notice  [MAIN  ] Corosync Cluster Engine 3.1.7 starting up"
    stall = (f"{syslog(T0 + 2)} [254] node1 corosync warning [MAIN  ] Corosync main process was not scheduled "
             "(@1796154409592) for 2436.9634 ms (threshold is 2400.0000 ms). Consider token timeout increase.")
    write(tb, "node1", "cluster/corosync.log", "\0" * 4096 + start + "\n" + stall + "\n")
    res = audit.result([], faults=["heartbeat_loss"])
    assert res.status == "ok" and "still starting" in res.expected[0][1]


def test_half_a_line_of_the_crashed_boot_before_the_nuls_does_not_hide_the_next_boots_start(tb: HostLogs) -> None:
    """partition-node1 on the VMs (2026-12-01): the fenced boot had written "… [255] node1" of its last line
    before the NULs; with the NULs dropped, the start line was glued to it and not recognised."""
    audit = LogAudit(tb)
    audit.mark()
    start = "Dec 01 21:43:37.548 [254] node1 corosync notice  [MAIN  ] Corosync Cluster Engine 3.1.7 starting up"
    stall = ("Dec 01 21:43:40.556 [254] node1 corosync warning [MAIN  ] Corosync main process was not scheduled "
             "(@1796161420556) for 2961.4500 ms (threshold is 2400.0000 ms). Consider token timeout increase.")
    write(tb, "node1", "cluster/corosync.log", "Dec 01 21:42:01.380 [255] node1" + "\0" * 3000 + start + "\n" + stall + "\n")
    res = audit.result([], faults=["partition"])
    assert res.status == "ok" and "still starting" in res.expected[0][1], res.explanation
    assert start in [ln.line for ln in audit.read().lines]


def test_a_filesystem_stop_that_met_its_cancelled_monitor_is_expected_and_a_busy_mount_alone_is_not(
        tb: HostLogs) -> None:
    """app_hang-app, make run 2026-12-01: the stop began 4 ms after Pacemaker SIGKILLed the in-flight
    OCF_CHECK_LEVEL=20 monitor, found the mount busy, signalled nobody and unmounted: the stop succeeded, and
    the case failed its log audit on the agent's ERROR line."""
    from test_unmount_race import BUSY, RACE

    audit = LogAudit(tb)
    audit.mark()
    write(tb, "node1", "pacemaker/pacemaker.log", "".join(line + "\n" for line in RACE))
    res = audit.result([], faults=["app_hang"])
    assert res.status == "ok", res.explanation
    assert [(ln.line, why.startswith("harmless: the stop began right after")) for ln, why in res.expected] \
        == [(BUSY, True)]
    audit.mark()
    write(tb, "node1", "pacemaker/pacemaker.log", BUSY + "\n")
    assert audit.result([], faults=["app_hang"]).findings == [LogLine("node1", "pacemaker.log", BUSY)]


def test_quiet_logs_are_ok(tb: HostLogs) -> None:
    audit = LogAudit(tb)
    audit.mark()
    write(tb, "node3", "cluster/app-app.log", "2026-11-25T15:40:04 fallover-app[404] node3 monitor: not running\n")
    res = audit.result()
    assert (res.status, res.lines_read, res.files_read) == ("ok", 1, 7)
    assert res.verdict().valid is True


def test_a_missing_pacemaker_log_is_unknown_and_named(tb: HostLogs) -> None:
    audit = LogAudit(tb)
    audit.mark()
    log = tb.layout.node_dir("node2") / "var/log/pacemaker/pacemaker.log"
    log.unlink()
    res = audit.result()
    assert res.status == "unknown"
    assert res.unreadable == ["node2:/var/log/pacemaker/pacemaker.log: missing"]
    assert "node2:/var/log/pacemaker/pacemaker.log" in res.explanation
    assert res.verdict().valid == UNKNOWN


def test_a_wrong_path_never_audits_clean(tmp_path: Path) -> None:
    audit = LogAudit(HostLogs(TOPO, tmp_path / "nowhere"))
    audit.mark()
    res = audit.result()
    assert res.status == "unknown" and len(res.unreadable) == 2 * len(TOPO.node_names)


def test_an_app_log_gone_since_the_mark_is_unknown_one_never_written_is_not(tb: HostLogs) -> None:
    app = write(tb, "node1", "cluster/app-app.log", "x\n")
    audit = LogAudit(tb)
    audit.mark()
    assert audit.result().status == "ok"  # node2 and node3 have no app log: legitimately absent
    app.unlink()
    res = audit.result()
    assert res.unreadable == ["node1:/var/log/cluster/app-app.log: present at the mark, gone at the end"]


def test_an_unreadable_log_is_unknown_and_findings_still_win(tb: HostLogs) -> None:
    audit = LogAudit(tb)
    audit.mark()
    log = tb.layout.node_dir("node3") / "var/log/cluster/corosync.log"
    log.unlink()
    log.mkdir()  # a directory where the log should be: open() fails with EISDIR
    res = audit.result()
    name = "node3:/var/log/cluster/corosync.log"
    assert res.status == "unknown" and res.unreadable == [f"{name}: Is a directory"]
    write(tb, "node1", "pacemaker/pacemaker.log", active_twice(T0) + "\n")
    res = audit.result()
    assert res.status == "findings" and f"also could not read {name}" in res.explanation
