"""`fallover nightly` without a cluster: history lines, trends, flaky cases, exit status, Ctrl-C."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.nightly import Nightly, SuiteRun, collect, run, run_pytest
from harness.report import history, trends
from harness.report.history import CaseRecord, RunRecord
from harness.topology import DEFAULT_TESTBED


def _record(run_id: str, code: str, cases: dict[str, CaseRecord]) -> RunRecord:
    passed = sum(c.status == "PASS" for c in cases.values())
    return RunRecord(run_id, "2026-11-29T21:00:00Z", code.split("+")[0], code, "+" in code, "testbeds/local.yaml",
                     ("suites/fallover",), None, 0 if passed == len(cases) else 1, 60.0,
                     {"passed": passed, "failed": len(cases) - passed}, cases, sla={"max_fallover_s": 15.0})


def test_history_append_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "history.jsonl"
    a = _record("20261129-210000", "abc", {"node_power_off-node1": CaseRecord("PASS", "node_power_off", 4.1, 4.4)})
    b = _record("20261129-220000", "abc", {"node_power_off-node1": CaseRecord("FAIL", "node_power_off", 9.0, None)})
    history.append(path, a)
    history.append(path, b)
    with open(path, "a") as f:
        f.write('{"run_id": "x"}\n{torn\n')
    records, problems = history.read(path)
    assert records == [a, b]
    assert len(path.read_text().splitlines()) == 4  # one line per run, appended
    assert problems[0].startswith("history.jsonl:3: ") and "missing" in problems[0] and "time" in problems[0]
    assert problems[1].startswith("history.jsonl:4: ")
    assert records[1].pass_rate == 0.0 and records[0].pass_rate == 1.0


def test_trends_of_two_runs_have_two_points_per_failure_type(tmp_path: Path) -> None:
    cases = lambda f1, o1: {
        "node_power_off-node1": CaseRecord("PASS", "node_power_off", f1, o1),
        "node_power_off-node2": CaseRecord("PASS", "node_power_off", 1.0, 1.5),
        "adapter_down-node1-service": CaseRecord("FAIL", "adapter_down", 5.0, 6.0),
        "suites/fallover/test_smoke.py::test_move": CaseRecord("PASS")}
    for r in (_record("20261129-210000", "abc", cases(4.0, 4.5)), _record("20261129-220000", "abc", cases(6.0, 7.0))):
        history.append(tmp_path / "history.jsonl", r)
    records, _ = history.read(tmp_path / "history.jsonl")
    series = history.series(records)
    assert sorted(series) == ["adapter_down", "node_power_off"]  # the smoke test is no failure type
    assert [(p.run_id, p.fallover_s, p.outage_s) for p in series["node_power_off"]] == [
        ("20261129-210000", 4.0, 4.5), ("20261129-220000", 6.0, 7.0)]  # the worst case of the type, per run
    page = trends.write(tmp_path).read_text()
    for fault in ("node_power_off", "adapter_down"):
        chart = re.search(rf'<div class="chart" id="trend-{fault}">(.*?)</div>', page, re.DOTALL)
        assert chart is not None
        assert chart.group(1).count("<circle") == 4  # two runs × (fallover, outage)
        assert chart.group(1).count("<polyline") == 2
    assert not re.search(r"(src|href)=[\"']?https?://|url\(\s*https?://|https?://", page)  # self-contained
    assert page.count('class="ax"') == 3 * 2  # pass rate + two failure types, two axes each


def test_flaky_means_passed_and_failed_on_the_same_code() -> None:
    runs = [_record("r1", "abc", {"a": CaseRecord("PASS"), "b": CaseRecord("PASS"), "c": CaseRecord("SKIP")}),
            _record("r2", "abc", {"a": CaseRecord("ERROR"), "b": CaseRecord("PASS"), "c": CaseRecord("FAIL")}),
            _record("r3", "def", {"a": CaseRecord("FAIL"), "b": CaseRecord("FAIL")}),
            _record("r4", "def+1234", {"b": CaseRecord("PASS")})]  # dirty tree: other code than def
    assert history.flaky(runs) == [history.Flaky("a", "abc", ("r1",), ("r2",))]
    page = trends.render(runs, [])
    assert "<td>a</td>" in page and "<code>abc</code>" in page


def _fake_suites(statuses: dict[str, str], exit_status: int, interrupted: bool = False):  # type: ignore[no-untyped-def]
    """What a pytest run leaves: a case directory per plan case, and junit.xml (one non-plan test too)."""
    def suites(n: Nightly, log) -> SuiteRun:  # type: ignore[no-untyped-def]
        n.run_dir.mkdir(parents=True)
        cases = []
        for name, status in statuses.items():
            (n.run_dir / name).mkdir()
            (n.run_dir / name / "verdicts.json").write_text(json.dumps({
                "case": name, "status": status,
                "verdicts": {"fallover": {"measured": 4.2}, "outage": {"measured": 5}}}))
            failure = "" if status == "PASS" else '<failure message="x"/>'
            cases.append(f'<testcase classname="test_fallover" name="test_fallover[{name}]">{failure}</testcase>')
        cases.append('<testcase classname="test_smoke" name="test_fence"><skipped/></testcase>')
        (n.run_dir / "junit.xml").write_text(f'<testsuites><testsuite>{"".join(cases)}</testsuite></testsuites>')
        return SuiteRun(exit_status, interrupted)
    return suites


def _nightly(tmp_path: Path, run_id: str) -> Nightly:
    return Nightly(testbed=DEFAULT_TESTBED, suites=(Path(__file__),), reports=tmp_path / "reports", run_id=run_id)


def test_nightly_exit_status_history_and_trends(tmp_path: Path) -> None:
    lines: list[str] = []
    ok = run(_nightly(tmp_path, "20261129-210000"), suites=_fake_suites({"node_power_off-node1": "PASS"}, 0),
             log=lines.append)
    bad = run(_nightly(tmp_path, "20261129-220000"),
              suites=_fake_suites({"node_power_off-node1": "PASS", "adapter_down-node1-service": "ERROR"}, 1),
              log=lines.append)
    assert (ok, bad) == (0, 1)
    records, problems = history.read(tmp_path / "reports" / "history.jsonl")
    assert problems == [] and [r.run_id for r in records] == ["20261129-210000", "20261129-220000"]
    second = records[1]
    assert second.cases["adapter_down-node1-service"] == CaseRecord("ERROR", "adapter_down", 4.2, 5.0)
    assert second.cases["test_smoke::test_fence"].status == "SKIP"
    assert second.tests == {"passed": 1, "failed": 0, "error": 1, "skipped": 1}
    assert second.sla["max_outage_s"] > 0 and second.git and second.exit_status == 1
    assert (tmp_path / "reports" / "trends.html").exists()
    assert (tmp_path / "reports" / "20261129-220000" / "runbook.md").exists()
    assert any("not passed: adapter_down-node1-service" in line for line in lines)


def test_nightly_fails_when_pytest_passes_but_a_case_did_not(tmp_path: Path) -> None:
    assert run(_nightly(tmp_path, "a"), suites=_fake_suites({"disk_pull-shared": "FAIL"}, 0)) == 1


def test_nightly_interrupted_and_empty_and_bad_input(tmp_path: Path) -> None:
    assert run(_nightly(tmp_path, "a"), suites=_fake_suites({"x-node1": "PASS"}, 2, interrupted=True)) == 130
    (r,) = history.read(tmp_path / "reports" / "history.jsonl")[0]
    assert r.interrupted
    assert run(_nightly(tmp_path, "b"), suites=_fake_suites({}, 5)) == 1  # nothing selected: a failure, no line
    assert run(_nightly(tmp_path, "c"), suites=_fake_suites({}, 4)) == 2  # pytest usage error
    assert len(history.read(tmp_path / "reports" / "history.jsonl")[0]) == 1
    with pytest.raises(UsageError, match="exists already"):
        run(_nightly(tmp_path, "a"), suites=_fake_suites({}, 0))
    bad = Nightly(testbed=tmp_path / "nope.yaml", reports=tmp_path / "reports", run_id="d")
    with pytest.raises(UsageError, match="nope.yaml"):
        run(bad, suites=_fake_suites({}, 0))
    assert not (tmp_path / "reports" / "d").exists()  # bad input touches nothing


def test_collect_reads_a_run_without_junit(tmp_path: Path) -> None:
    (tmp_path / "node_hang-node1").mkdir()
    (tmp_path / "node_hang-node1" / "verdicts.json").write_text('{"status": "PASS", "fault": "node_hang"}')
    tests, cases = collect(tmp_path)
    assert tests["passed"] == 1 and cases["node_hang-node1"] == CaseRecord("PASS", "node_hang")


class _Child(Nightly):
    """A nightly whose 'pytest' is a script: it says it started, and on SIGINT it 'heals' and exits 2."""

    def pytest_argv(self) -> list[str]:
        script = ("import signal, sys, time, pathlib\n"
                  f"d = pathlib.Path({str(self.run_dir)!r})\n"
                  "def stop(*_):\n"  # 'heals' until the test has pressed Ctrl-C a second time
                  "    open(d / 'sigints', 'a').write('x')\n"
                  "    end = time.monotonic() + 30\n"
                  "    while not (d / 'pressed-twice').exists() and time.monotonic() < end: time.sleep(0.02)\n"
                  "    (d / 'healed').write_text('yes'); sys.exit(2)\n"
                  "signal.signal(signal.SIGINT, stop)\n"
                  "(d / 'started').write_text('yes')\n"
                  "time.sleep(60)\n")
        return [sys.executable, "-c", script]


@pytest.fixture
def ctrl_c_works() -> Iterator[None]:
    """Ctrl-C raises KeyboardInterrupt here, whatever this process inherited (a background job of a
    script starts with SIGINT ignored, and then Python installs no handler of its own)."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


@pytest.mark.usefixtures("ctrl_c_works")
def test_ctrl_c_reaches_the_suite_once_and_waits_for_its_heal(tmp_path: Path) -> None:
    n = _Child(testbed=DEFAULT_TESTBED, reports=tmp_path, run_id="r")
    lines: list[str] = []

    def press_ctrl_c_twice() -> None:
        deadline = time.monotonic() + 30
        while not (n.run_dir / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        for _ in range(2):  # the second one arrives while the child is still healing
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)
        (n.run_dir / "pressed-twice").write_text("yes")

    presser = threading.Thread(target=press_ctrl_c_twice)
    presser.start()
    done = run_pytest(n, lines.append)
    presser.join()
    assert done == SuiteRun(2, interrupted=True)
    assert (n.run_dir / "healed").read_text() == "yes"  # it was left to finish its heal
    assert (n.run_dir / "sigints").read_text() == "x"  # a second SIGINT would interrupt the heal
    assert lines[0].startswith("stopping the suite") and "still healing" in lines[1]


class _Disposition(Nightly):
    """A nightly whose 'pytest' only says whether Ctrl-C would reach it as KeyboardInterrupt."""

    def pytest_argv(self) -> list[str]:
        return [sys.executable, "-c", "import signal, sys; "
                "sys.exit(0 if signal.getsignal(signal.SIGINT) is signal.default_int_handler else 3)"]


def test_the_suite_can_be_stopped_even_when_nightly_was_started_with_sigint_ignored(tmp_path: Path) -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # as in `fallover nightly … &` from a script
    try:
        done = run_pytest(_Disposition(testbed=DEFAULT_TESTBED, reports=tmp_path, run_id="r"), lambda _: None)
    finally:
        signal.signal(signal.SIGINT, before)
    assert done == SuiteRun(0, interrupted=False)


def test_progress_lines_show_while_a_test_runs(pytester: pytest.Pytester) -> None:
    """The plugin's [testbed]/[fallover] lines are written past pytest's capture, so nightly's log shows them live."""
    pytester.makepyfile("""
        import pytest
        from harness.pytest_plugin import live_line

        @pytest.fixture
        def step(pytestconfig):
            live_line(pytestconfig, "[fallover] injecting under load")
            pytestconfig.pluginmanager.get_plugin("terminalreporter").write_line("[captured] swallowed")

        def test_case(step):
            pass
    """)
    result = pytester.runpytest_subprocess("-vv", "-p", "no:cacheprovider")  # capture as in a real run
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "[fallover] injecting under load" in out.splitlines()  # on a line of its own
    assert "[captured] swallowed" not in out  # what the plugin did before: lost in the capture
