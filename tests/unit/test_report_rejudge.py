"""Re-judging a saved run: a tighter SLA flips a verdict and it is marked; the same SLA changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from report_run import make_run

from harness.cli import main
from harness.errors import UsageError
from harness.report import build, rejudge_page
from harness.report.rejudge import parse_overrides, rejudge_run
from harness.report.results import load_run


def test_a_tighter_outage_sla_flips_the_verdict_and_marks_it_changed(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    page, judged, backup = rejudge_page(run_dir, {"max_outage_s": 3.0})
    assert backup == []  # the backup suite did not run
    [case] = judged
    assert case.before.status == "PASS" and case.after.status == "FAIL"
    assert set(case.changes) == {"outage"}
    change = case.changes["outage"]
    assert (change.before.status, change.after.status) == ("pass", "fail")
    assert change.after.limit == 3.0 and change.before.limit == 15.0
    assert case.drift == []  # judged again at the run's own SLA, nothing differs: the checkers are pure
    html = page.read_text()
    assert page.name == "rejudged-sla-outage-3.html"
    assert "changed: was pass" in html and "changed: was PASS" in html
    assert "(was PASS)" in html  # the matrix cell
    assert "outage 4.2 s (limit 3 s)" in html
    assert not (run_dir / "index.html").exists()  # the run's own page is not replaced by a re-judgement


def test_the_recorded_sla_changes_nothing_even_without_a_saved_expectation(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    for case in run_dir.glob("*/timeline.json"):  # as saved before the expectation was recorded
        saved = json.loads(case.read_text())
        del saved["meta"]["expectation"]
        case.write_text(json.dumps(saved))
    judged = rejudge_run(load_run(run_dir), {})
    assert len(judged) == 2
    assert all(not j.changes and not j.drift and j.why_not is None for j in judged)
    assert [j.after.status for j in judged] == [j.before.status for j in judged]


def test_a_looser_sla_clears_a_failed_verdict_and_keeps_the_log_audit_as_recorded(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    judged = {j.record.name: j for j in rejudge_run(load_run(run_dir), {"max_outage_s": 25.0})}
    failing = judged["partition-node1"]
    assert failing.changes["outage"].after.status == "pass"
    assert failing.after.status == "FAIL"
    assert "outage" not in [v.name for v in failing.after.failures]
    assert "logs" in [v.name for v in failing.after.failures]  # not a checker's: kept as recorded


def test_overrides_by_short_or_full_name_and_bad_ones() -> None:
    assert parse_overrides(["outage=5", "max_recovery_s=20"]) == {"max_outage_s": 5.0, "max_recovery_s": 20.0}
    for bad in ("outage", "meteor=3", "outage=soon", "outage=0"):
        with pytest.raises(UsageError):
            parse_overrides([bad])


def test_cli_report_rejudges_and_prints_what_changed(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    assert main(["report", str(run_dir), "--sla-outage", "3", "--no-allure"]) == 0
    out = capsys.readouterr().out
    assert "node_power_off-node1: PASS → FAIL" in out and "outage: pass → fail" in out
    assert (run_dir / "rejudged-sla-outage-3.html").is_file()
    assert main(["report", "--reports", str(tmp_path), "--no-allure"]) == 0  # the newest run by default
    assert (run_dir / "index.html").is_file()


def test_cli_report_bad_input_is_one_line_exit_2_and_writes_nothing(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    before = sorted(p.name for p in run_dir.iterdir())
    for argv in (["report", str(run_dir), "--sla", "meteor=3"], ["report", str(tmp_path / "nope")],
                 ["report", str(run_dir), "--sla-outage", "-1"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("fallover: error:")
    assert sorted(p.name for p in run_dir.iterdir()) == before


def test_replot_redraws_the_saved_plots(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    svg = run_dir / "node_power_off-node1" / "timeline.svg"
    svg.write_text('<svg xmlns="http://www.w3.org/2000/svg"><text>old style</text></svg>')
    build(run_dir, replot=True)
    assert "old style" not in svg.read_text() and "milestone-fault" in svg.read_text()


def test_backup_cases_are_judged_again_by_the_backup_checkers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    import harness.checkers.backup as backup_checkers
    from harness.checkers import Verdict

    run_dir, _ = make_run(tmp_path, failing=False)
    (run_dir / "backup" / "backup_restore_data").mkdir(parents=True)
    (run_dir / "backup" / "backup_restore_data" / "history.json").write_text("{}")
    (run_dir / "backup" / "backup_restore_data.json").write_text(json.dumps({
        "case": "backup_restore_data", "status": "PASS", "asserted": ["rpo"],
        "verdicts": {"rpo": {"name": "rpo", "valid": True, "measured": 2.0, "limit": 10.0, "unit": "s",
                             "explanation": "rpo 2 s (limit 10 s)"},
                     "backup_time": {"name": "backup_time", "valid": True, "measured": 1.0, "limit": 60.0,
                                     "unit": "s", "explanation": "backup took 1 s"}}}))

    def judge_saved(case_dir: Path, topology):  # the backup checkers' own re-judge, as a pure function
        limit = topology.sla.max_rpo_s
        return {"rpo": Verdict("rpo", 2.0 <= limit, 2.0, limit, "s", f"rpo 2 s (limit {limit:g} s)"),
                "backup_time": Verdict("backup_time", True, 1.0, 60.0, "s", "backup took 1 s")}

    monkeypatch.setattr(backup_checkers, "judge_saved", judge_saved, raising=False)
    assert main(["report", str(run_dir), "--sla-rpo", "1", "--no-allure"]) == 0
    assert "backup backup_restore_data: PASS → FAIL" in capsys.readouterr().out
    html = (run_dir / "rejudged-sla-rpo-1.html").read_text()
    section = html[html.index('id="backup-backup_restore_data"'):html.index('id="environment"')]
    assert "changed: was PASS" in section and "rpo 2 s (limit 1 s)" in section
