"""The recovery record (harness/oplog.py) and the runbook built from saved case directories."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest
from fake_testbed import FakeTestbed

from harness import oplog
from harness.faults import Nemesis
from harness.oplog import OpLog, is_check, recorded
from harness.report.runbook import build
from harness.transport.base import run_process
from harness.wait import wait_until


def _verdicts(d: Path, status: str, restored: bool, fault: str | None = None) -> None:
    d.mkdir(parents=True, exist_ok=True)
    v = {"case": d.name, "status": status,
         "verdicts": {"redundancy_restored": {"valid": restored, "explanation": "redundant again at +9 s"
                                              if restored else "still missing node2 at the end"}}}
    if fault:
        v["fault"] = fault
    (d / "verdicts.json").write_text(json.dumps(v))


class PoweredTestbed(FakeTestbed):
    """The fake, with power that powers: a node powered off is not running until powered on."""

    def power_off(self, node: str) -> None:
        super().power_off(node)
        self.powered.discard(node)

    def power_on(self, node: str) -> None:
        super().power_on(node)
        self.powered.add(node)


def _record_power_off_recovery(tmp_path: Path, case_dir: Path) -> OpLog:
    """A real heal through the nemesis on the fake testbed, then real commands on this host."""
    tb = PoweredTestbed(tmp_path / "state")
    nemesis = Nemesis(tb)
    nemesis.start("node_power_off", node="node1")
    assert "node1" not in tb.powered
    log = OpLog()
    with log.phase("heal"):
        nemesis.heal_all()
    with log.phase("operator recovery"):
        log.note("starting node2 (it was powered off)")
        for _ in range(2):
            run_process("host", ["cat", "/dev/null"], timeout=10)
        run_process("host", ["sh", "-c", "exit 3"], timeout=10, check=False)
        looks = iter(range(3))
        wait_until(lambda: next(looks) == 2 and run_process("host", ["true"], timeout=10).ok, timeout=10,
                   interval=0.01, what="the cluster whole")
    log.save(case_dir / "recovery.json")
    return log


def test_recovery_record_holds_the_heal_actions_commands_and_waits(tmp_path: Path) -> None:
    case = tmp_path / "run" / "node_power_off-node1"
    case.mkdir(parents=True)
    log = _record_power_off_recovery(tmp_path, case)
    heal, recover = log.phases
    kinds = [(e.kind, e.text, e.depth) for e in heal.entries]
    assert kinds[0] == ("action", "heal node_power_off on node1", 0)
    assert ("action", "power on node1", 1) in kinds
    assert any(k == "wait" and "node1 running" in t and d == 1 for k, t, d in kinds)
    cat = next(e for e in recover.entries if e.text == "cat /dev/null")
    assert (cat.kind, cat.node, cat.polls, cat.ok) == ("check", "host", 2, True)  # repeated: one step, twice
    failed = next(e for e in recover.entries if e.text == "sh -c 'exit 3'")
    assert (failed.kind, failed.ok, failed.detail) == ("command", False, "exit 3")
    wait = next(e for e in recover.entries if e.kind == "wait")
    assert (wait.text, wait.polls, wait.ok) == ("the cluster whole", 3, True)
    assert "1 command polled" in wait.detail  # the `true` inside the wait is folded into it
    assert [p.name for p in OpLog.load(case / "recovery.json")] == ["heal", "operator recovery"]


def test_nothing_is_recorded_outside_a_phase_or_in_another_thread(tmp_path: Path) -> None:
    log = OpLog()
    run_process("host", ["true"], timeout=10)  # no phase open: not recorded anywhere
    tb = FakeTestbed(tmp_path)
    assert recorded(tb) is tb
    with log.phase("heal"):
        t = threading.Thread(target=lambda: run_process("host", ["true"], timeout=10))
        t.start()
        t.join()  # the poller's thread runs commands too: they are not the operator's steps
        run_process("host", ["false"], timeout=10, check=False)
    assert [e.text for e in log.phases[0].entries] == ["false"]


def test_a_failed_phase_and_action_say_so() -> None:
    log = OpLog()
    with pytest.raises(RuntimeError), log.phase("heal"), oplog.action("heal disk_pull on shared"):
        raise RuntimeError("remount failed")
    phase = log.phases[0]
    assert (phase.ok, phase.error) == (False, "remount failed")
    assert phase.entries[0].ok is False and "remount failed" in phase.entries[0].detail


def test_read_only_commands_are_checks() -> None:
    assert is_check(("crm_mon", "--one-shot", "--inactive"))
    assert is_check(("/bin/sh", "-c", "pidof corosync"))
    assert not is_check(("crm_resource", "--cleanup"))
    assert not is_check(("ip", "link", "set", "service", "up"))
    assert not is_check(("crm_attribute", "--update", "x"))


def test_runbook_from_saved_case_dirs(tmp_path: Path) -> None:
    run = tmp_path / "20261129-210000"
    proven = run / "node_power_off-node1"
    proven.mkdir(parents=True)
    _record_power_off_recovery(tmp_path, proven)
    _verdicts(proven, "FAIL", restored=True, fault="node_power_off")
    unproven = run / "node_power_off-node2"  # not restored: it must not be the one shown
    unproven.mkdir()
    (unproven / "recovery.json").write_text((proven / "recovery.json").read_text())
    _verdicts(unproven, "PASS", restored=False)
    _verdicts(run / "disk_pull-shared", "ERROR", restored=False)  # no recovery.json: listed as missing
    (run / "adapter_down-node1-service").mkdir()
    (run / "adapter_down-node1-service" / "recovery.json").write_text("{torn")

    rb = build(run)
    assert rb.run_id == "20261129-210000"
    (p,) = rb.procedures
    assert (p.failure_type, p.from_case, p.restored, p.status) == \
        ("node_power_off", "node_power_off-node1", True, "FAIL")
    assert p.other_cases[0].startswith("node_power_off-node2 (PASS, ")
    assert "on other verdicts" in p.note
    assert [s.phase for s in p.steps][:1] == ["heal"] and p.total_s is not None and p.total_s > 0
    cleanup = next(s for s in p.steps if s.command == "sh -c 'exit 3'")
    assert (cleanup.kind, cleanup.ok, cleanup.node) == ("command", False, "host")
    assert any(m.startswith("disk_pull: no case recorded its recovery") for m in rb.missing)
    assert any(m.startswith("adapter_down: ") and "unreadable" in m for m in rb.missing)
    md = rb.to_markdown()
    assert "## node_power_off" in md and "proven; from case `node_power_off-node1`" in md
    assert "power on node1" in md and "`cat /dev/null`" in md and "**FAILED**" in md
    assert "for “the cluster whole” (reached, 3 looks)" in md


def test_runbook_without_a_restored_case_warns(tmp_path: Path) -> None:
    run = tmp_path / "r"
    case = run / "node_power_off-node1"
    case.mkdir(parents=True)
    _record_power_off_recovery(tmp_path, case)
    _verdicts(case, "FAIL", restored=False)
    (p,) = build(run).procedures
    assert p.restored is False and p.note.startswith("WARNING: the cluster was not seen fully redundant")
    assert "NOT proven" in build(run).to_markdown()
