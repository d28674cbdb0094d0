"""`fallover nightly`: run the acceptance suites, leave the report, one line of history and the trend page.

A nightly job is only useful if it compares: the same suites every night, each run's key
measures kept in reports/history.jsonl (never rewritten), and a trend page that shows
fallover time creeping up or a case that passes one night and fails the next on the same
code. It exits non-zero on any failure, so cron mails it and CI marks it red.

The suites run in a pytest child in its own session: a Ctrl-C (or SIGTERM from cron/systemd)
reaches it exactly once, as SIGINT, so the case in progress heals its fault through the
journal and saves its evidence (harness/runner.py) before the run stops. A second Ctrl-C does
not interrupt that heal: nightly says it is waiting, and waits. If nightly itself is killed,
the child gets SIGINT too (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.errors import UsageError
from harness.report import history, trends
from harness.report.history import CaseRecord, RunRecord
from harness.topology import Topology, load_topology

REPO = Path(__file__).resolve().parents[1]
DEFAULT_SUITES = ("suites/fallover",)
Log = Callable[[str], None]


@dataclass(frozen=True)
class Nightly:
    """One nightly run: which suites, on which testbed, where the reports go."""

    testbed: Path
    suites: tuple[Path, ...] = tuple(REPO / s for s in DEFAULT_SUITES)
    reports: Path = REPO / "reports"
    selection: str | None = None
    pytest_args: tuple[str, ...] = ()
    run_id: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))

    @property
    def run_dir(self) -> Path:
        return self.reports / self.run_id

    def pytest_argv(self) -> list[str]:
        """The pytest command line: the report lands in ``run_dir``, junit.xml beside it."""
        argv = [sys.executable, "-m", "pytest", *map(str, self.suites), "--testbed", str(self.testbed),
                "--run-dir", str(self.run_dir), "--junitxml", str(self.run_dir / "junit.xml"), "-vv"]
        if self.selection:
            argv += ["-k", self.selection]
        return argv + list(self.pytest_args)


@dataclass(frozen=True)
class SuiteRun:
    """What the pytest child ended with: its exit status, and whether we stopped it."""

    exit_status: int
    interrupted: bool = False


RunSuites = Callable[[Nightly, Log], SuiteRun]


def validate(n: Nightly) -> Topology:
    """Bad input stops here, before anything runs: one line naming the file (UsageError → exit 2)."""
    topo = load_topology(n.testbed)
    for s in n.suites:
        if not s.exists():
            raise UsageError(f"--suite {s}: no such file or directory")
    if n.run_dir.exists():
        raise UsageError(f"{n.run_dir}: exists already (a run id names one run)")
    return topo


def run_pytest(n: Nightly, log: Log) -> SuiteRun:
    """Run the suites as a child; Ctrl-C/SIGTERM become one SIGINT to it, then we wait for its clean stop."""
    n.run_dir.mkdir(parents=True, exist_ok=True)
    # preexec_fn is unsafe only with threads running; nightly starts none
    # unbuffered: each case's progress lines appear as they happen, also when the output goes to a log file
    proc = subprocess.Popen(n.pytest_argv(), cwd=REPO, start_new_session=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"}, preexec_fn=_sigint_with_parent)  # noqa: PLW1509
    interrupted = False
    while True:
        try:  # not proc.wait(): on Ctrl-C it waits 0.25 s more on its own before it lets us forward it
            while proc.poll() is None:
                time.sleep(0.2)
            return SuiteRun(proc.returncode, interrupted)
        except KeyboardInterrupt:
            if not interrupted:
                interrupted = True
                log("stopping the suite: the case in progress heals its fault and saves its evidence first")
                proc.send_signal(signal.SIGINT)
            else:
                log(f"still healing; waiting for pytest (pid {proc.pid}) to stop cleanly")


def _sigint_with_parent() -> None:
    """In the pytest child: SIGINT (a clean stop that heals) when nightly dies, however it dies.

    SIGINT is the child's own again: a nightly started as a background job of a script (`… &`, cron)
    inherits SIGINT ignored, and so would its pytest, which then could never be stopped cleanly."""
    import ctypes

    signal.signal(signal.SIGINT, signal.SIG_DFL)
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGINT)


def run(n: Nightly, *, suites: RunSuites = run_pytest, log: Log = lambda _: None) -> int:
    """The whole nightly: suites, report, history line, trend page. Returns the exit status."""
    topo = validate(n)
    started = datetime.now(UTC)
    t0 = time.monotonic()
    log(f"run {n.run_id}: {' '.join(n.pytest_argv()[1:])}")
    done = suites(n, log)
    wall = time.monotonic() - t0
    if done.exit_status == 4:  # pytest's usage error: it has said why; nothing ran
        return 2
    if done.exit_status == 5:
        log("no test was selected: nothing ran, no history written")
        return 1
    _report(n.run_dir, log)
    tests, cases = collect(n.run_dir)
    rev, dirty, code = code_version(REPO)
    record = RunRecord(n.run_id, started.strftime("%Y-%m-%dT%H:%M:%SZ"), rev, code, dirty, _shown(n.testbed),
                       tuple(_shown(s) for s in n.suites), n.selection, done.exit_status, round(wall, 1), tests,
                       cases, done.interrupted, {k: float(v) for k, v in topo.sla.model_dump().items()
                                             if isinstance(v, (int, float))})
    history.append(n.reports / "history.jsonl", record)
    page = trends.write(n.reports)
    failed = [name for name, c in cases.items() if c.status in history.FAILING]
    log(f"{tests.get('passed', 0)} passed, {tests.get('failed', 0)} failed, {tests.get('error', 0)} errors, "
        f"{tests.get('skipped', 0)} skipped in {wall:.0f} s" + (f"; not passed: {', '.join(failed)}" if failed else ""))
    log(f"evidence {n.run_dir}; history {n.reports / 'history.jsonl'}; trends {page}")
    if done.interrupted:
        return 130
    return 0 if done.exit_status == 0 and not failed else 1


def _report(run_dir: Path, log: Log) -> None:
    """The run's page and runbook, if the pytest session did not leave them (it writes both when it ran a case)."""
    if not (run_dir / "runbook.md").exists():
        try:
            from harness.report.runbook import build as build_runbook

            (run_dir / "runbook.md").write_text(build_runbook(run_dir).to_markdown())
        except OSError as e:
            log(f"runbook.md not written: {e}")
    if (run_dir / "index.html").exists():
        return
    from harness.report import build  # the sign-off page (harness/report/__init__.py)

    try:
        build(run_dir)
    except Exception as e:  # noqa: BLE001 — the page is evidence; the history line and the exit status matter more
        log(f"the HTML report could not be built: {type(e).__name__}: {e}")


def collect(run_dir: Path) -> tuple[dict[str, int], dict[str, CaseRecord]]:
    """Test counts and per-case records: plan cases from their verdicts.json, other tests from junit.xml.

    The counts follow the cases' own PASS/FAIL/ERROR (pytest's junit calls a case ERROR a failure).
    """
    cases: dict[str, CaseRecord] = {}
    for d in sorted(p for p in run_dir.iterdir() if (p / "verdicts.json").exists()) if run_dir.is_dir() else []:
        v = history.read_json(d / "verdicts.json") or {}
        verdicts = v.get("verdicts") or {}
        cases[d.name] = CaseRecord(v.get("status", "ERROR"), v.get("fault") or d.name.split("-", 1)[0],
                                   _measured(verdicts, "fallover"), _measured(verdicts, "outage"),
                                   _measured(verdicts, "detection"))
    seen: dict[str, int] = {}
    for test_id, status in _junit(run_dir / "junit.xml"):
        param = test_id.rpartition("[")[2].rstrip("]") if test_id.endswith("]") else ""
        k = seen[param] = seen.get(param, 0) + 1
        if param and (param if k == 1 else f"{param}.{k}") in cases:
            continue  # a plan case: its verdicts.json said more than junit can
        cases[test_id] = CaseRecord(status)
    tests = {"passed": 0, "failed": 0, "error": 0, "skipped": 0}
    for c in cases.values():
        tests[{"PASS": "passed", "FAIL": "failed", "ERROR": "error"}.get(c.status, "skipped")] += 1
    return tests, cases


def _measured(verdicts: dict, name: str) -> float | None:  # type: ignore[type-arg]
    m = (verdicts.get(name) or {}).get("measured")
    return float(m) if isinstance(m, (int, float)) else None


def _junit(path: Path) -> list[tuple[str, str]]:
    """(test id, PASS/FAIL/ERROR/SKIP) per test of a junit.xml; none when it is missing or torn."""
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError):
        return []
    out = []
    for tc in root.iter("testcase"):
        tags = {child.tag for child in tc}
        status = "ERROR" if "error" in tags else "FAIL" if "failure" in tags else "SKIP" if "skipped" in tags \
            else "PASS"
        out.append((f"{tc.get('classname', '')}::{tc.get('name', '')}", status))
    return out


def code_version(repo: Path) -> tuple[str, bool, str]:
    """(revision, dirty, code): ``code`` adds a digest of uncommitted changes, so "same code" is exact."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=30, check=False)
        return r.stdout if r.returncode == 0 else ""

    rev = git("rev-parse", "--short=12", "HEAD").strip() or "unknown"
    dirty = bool(git("status", "--porcelain", "--untracked-files=no").strip())
    code = f"{rev}+{hashlib.sha1(git('diff', 'HEAD').encode()).hexdigest()[:8]}" if dirty else rev
    return rev, dirty, code


def _shown(p: Path) -> str:
    """Paths inside the repository as the user types them (suites/fallover), others as they are."""
    try:
        return str(p.resolve().relative_to(REPO))
    except ValueError:
        return str(p)
