"""A Filesystem stop that met its own cancelled monitor: explained only by the whole signature in the node's log."""

from __future__ import annotations

import pytest

from harness.audits.logs import LogLine
from harness.audits.unmount_race import UnmountAfterCancel

MNT = "/var/lib/fallover/fo-local/mnt/app"
BUSY = f"Dec 01 19:39:08  Filesystem(app-fs)[17400]:    ERROR: Couldn't unmount {MNT}; trying cleanup with TERM"
# node1's pacemaker.log in app_hang-app (make run, 2026-12-01 19:39), the lines that matter, as logged
CANCEL = ("Dec 01 19:39:08.685 node1 pacemaker-execd     [50] (services_action_cancel) \tinfo: Terminating in-flight "
          "op app-fs_monitor_2000[17206] early because it was cancelled")
STOP = "Dec 01 19:39:08.689 node1 pacemaker-execd     [50] (log_execute) \tinfo: executing - rsc:app-fs action:stop call_id:188"
NOBODY = (f"Dec 01 19:39:09  Filesystem(app-fs)[17400]:    INFO: No processes on {MNT} were signalled. "
          "force_unmount is set to 'true'")
UNMOUNTED = f"Dec 01 19:39:10  Filesystem(app-fs)[17400]:    INFO: unmounted {MNT} successfully"
ENDED = ("Dec 01 19:39:10.681 node1 pacemaker-execd     [50] (log_finished) \tinfo: app-fs stop (call 188, PID 17400) "
         f"exited with status 0 (Couldn't unmount {MNT}; trying cleanup with TERM) (execution time 1.988s after "
         "being queued 1ms)")
RACE = [CANCEL, STOP,
        f"Dec 01 19:39:08  Filesystem(app-fs)[17400]:    INFO: Running stop for /run/fallover-disks/shared.dev on {MNT}",
        BUSY, NOBODY, UNMOUNTED, ENDED]


def explain(lines: list[str], node: str = "node1") -> str | None:
    logged = [LogLine("node1", "pacemaker.log", line) for line in lines]
    return UnmountAfterCancel(logged).explain(LogLine(node, "pacemaker.log", BUSY))


def test_the_stop_right_after_its_monitor_was_killed_is_explained() -> None:
    why = explain(RACE)
    assert why is not None and "SIGKILLed its in-flight Filesystem monitor" in why


@pytest.mark.parametrize("change", [
    pytest.param(lambda ls: [ln for ln in ls if ln != CANCEL], id="no monitor was cancelled"),
    pytest.param(lambda ls: [ln.replace("app-fs_monitor", "app-ip_monitor") for ln in ls], id="another resource's"),
    pytest.param(lambda ls: [ln.replace("19:39:08.685", "19:39:06.685") for ln in ls], id="the cancel 2 s before"),
    pytest.param(lambda ls: [ln.replace("with status 0", "with status 1") for ln in ls], id="the stop failed"),
    pytest.param(lambda ls: [ln for ln in ls if ln != UNMOUNTED], id="never unmounted"),
    pytest.param(lambda ls: [ln for ln in ls if ln != NOBODY], id="not said nothing was signalled"),
    pytest.param(lambda ls: ls[:4] + [f"Dec 01 19:39:09  Filesystem(app-fs)[17400]:    INFO: sending signal TERM to: "
                                      "root 901 1 0 19:30 ? S 0:00 kvapp"] + ls[4:], id="a process was signalled"),
    pytest.param(lambda ls: ls[:5] + [BUSY.replace("TERM", "KILL")] + ls[5:], id="it escalated to KILL"),
    pytest.param(lambda ls: [ln.replace("call_id:188", "call_id:187") for ln in ls], id="another stop began then"),
    pytest.param(lambda ls: [ln.replace("[17400]", "[17401]", 1) if "Running stop" not in ln else ln for ln in ls],
                 id="another agent's lines"),
])
def test_anything_less_than_the_whole_signature_stays_a_finding(change) -> None:
    assert explain(change(RACE)) is None


def test_the_same_lines_on_another_node_explain_nothing_there() -> None:
    assert explain(RACE, node="node2") is None
