"""A saved run read back from its directory: each case as a CaseResult with its timeline, and the run's records.

The report, `fallover report` and re-judging all start here, from files only (no cluster),
so a page can be rebuilt or a run judged again years later. A file that cannot be read
becomes a problem line on the page and an ERROR case, never a crash of the report.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.case_result import CaseResult
from harness.checkers import Verdict
from harness.faults.base import Target
from harness.outcome import Status
from harness.plan import Case, Expected
from harness.steps import Step
from harness.timeline import Timeline

CASE_FILES = ("verdicts.json", "timeline.json", "report.txt")
"""A directory holding any of these is a case (also one whose verdicts could not be written)."""


def _fields(cls: type, d: dict[str, Any]) -> dict[str, Any]:
    """Only the keys ``cls`` knows: files written by a newer or older harness still load."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in names}


def verdict_from_dict(d: dict[str, Any]) -> Verdict:
    return Verdict(**_fields(Verdict, d))


def _target(d: dict[str, Any] | None) -> Target:
    d = dict(d or {})
    if "nodes" in d:
        d["nodes"] = tuple(d["nodes"])
    return Target(**_fields(Target, d))


@dataclass
class CaseRecord:
    """One case directory: ``result`` rebuilt from verdicts.json, the timeline (None if unreadable)."""

    name: str
    dir: Path
    result: CaseResult
    timeline: Timeline | None
    problems: list[str] = field(default_factory=list)
    started_wall: float | None = None

    @property
    def status(self) -> Status:
        return self.result.status

    @property
    def fault(self) -> str:
        return self.result.case.fault

    @property
    def target_label(self) -> str:
        return self.result.case.target.label

    def file(self, name: str) -> Path | None:
        path = self.dir / name
        return path if path.is_file() else None

    def text(self, name: str, limit: int = 200_000) -> str | None:
        """A small evidence file's text (cut at ``limit`` characters, saying so), or None when absent."""
        path = self.file(name)
        if path is None:
            return None
        try:
            text = path.read_text(errors="replace")
        except OSError as e:
            return f"(could not read {name}: {e})"
        return text if len(text) <= limit else text[:limit] + f"\n… (cut: {len(text)} characters in {name})"


@dataclass
class RunResults:
    """A run directory read back: its cases in the order they ran, and what the run recorded about itself."""

    run_dir: Path
    cases: list[CaseRecord]
    meta: dict[str, Any]                  # run-<worker>.json merged; "workers": each file as written
    environment: dict[str, Any]           # environment.json (empty when not recorded)
    topology_text: str | None             # topology.yaml as copied at run start
    problems: list[str] = field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.run_dir.name

    def counts(self) -> dict[str, int]:
        out = {"PASS": 0, "FAIL": 0, "ERROR": 0}
        for c in self.cases:
            out[c.status] += 1
        return out


def _case(d: Path, problems: list[str]) -> CaseRecord:
    """Rebuild one case; what cannot be read is named in ``problems`` and the case shows as an ERROR."""
    saved: dict[str, Any] = {}
    mine: list[str] = []
    try:
        saved = json.loads((d / "verdicts.json").read_text())
    except (OSError, ValueError) as e:
        mine.append(f"{d.name}/verdicts.json: {type(e).__name__}: {e}")
    timeline = None
    try:
        timeline = Timeline.load(d / "timeline.json")
    except FileNotFoundError:
        pass
    except (OSError, ValueError, TypeError) as e:
        mine.append(f"{d.name}/timeline.json: {type(e).__name__}: {e}")
    meta = timeline.meta if timeline is not None else {}
    fault = saved.get("fault") or meta.get("fault") or d.name.split("-", 1)[0]
    target = saved.get("target") if "target" in saved else meta.get("target")
    expected = saved.get("expected") or meta.get("expected")
    case = Case(str(fault), _target(target), trigger=saved.get("trigger"))
    result = CaseResult(
        case=case, expected=Expected(**_fields(Expected, expected)) if expected else None,
        verdicts={n: verdict_from_dict(v) for n, v in (saved.get("verdicts") or {}).items()},
        run_dir=d, asserted=tuple(saved.get("asserted") or ()), timings=saved.get("timings") or {},
        extra_findings=list(saved.get("extra_findings") or []),
        steps=[Step(**_fields(Step, s)) for s in saved.get("steps") or []],
        diagnosis=saved.get("diagnosis") or {}, counts=saved.get("counts") or {})
    if mine and not saved:  # nothing judged could be read: the page must not show it as a pass
        result.steps.append(Step("read the saved verdicts", ok=False, error="; ".join(mine), harness_error=True))
    problems += mine
    started = meta.get("started_wall")
    return CaseRecord(d.name, d, result, timeline, mine, float(started) if isinstance(started, (int, float)) else None)


def load_run(run_dir: Path) -> RunResults:
    """Read a run directory (reports/<run-id>) back; never raises for a damaged file, only for a missing run."""
    if not run_dir.is_dir():
        raise FileNotFoundError(f"{run_dir}: no such run directory")
    problems: list[str] = []
    workers: dict[str, Any] = {}
    for f in sorted(run_dir.glob("run-*.json")):
        try:
            workers[f.stem.removeprefix("run-")] = json.loads(f.read_text())
        except (OSError, ValueError) as e:
            problems.append(f"{f.name}: {type(e).__name__}: {e}")
    meta: dict[str, Any] = {}
    for w in workers.values():
        meta.update({k: v for k, v in w.items() if k != "seed"})
    meta["workers"] = workers
    meta["seeds"] = {name: w.get("seed") for name, w in workers.items()}
    environment: dict[str, Any] = {}
    env_file = run_dir / "environment.json"
    if env_file.is_file():
        try:
            environment = json.loads(env_file.read_text())
        except (OSError, ValueError) as e:
            problems.append(f"environment.json: {type(e).__name__}: {e}")
    topo = run_dir / "topology.yaml"
    topology_text = topo.read_text(errors="replace") if topo.is_file() else None
    dirs = [d for d in sorted(run_dir.iterdir()) if d.is_dir() and any((d / f).is_file() for f in CASE_FILES)]
    cases = [_case(d, problems) for d in dirs]
    cases.sort(key=lambda c: (c.started_wall is None, c.started_wall or 0.0, c.name))
    return RunResults(run_dir, cases, meta, environment, topology_text, problems)


def has_evidence(run_dir: Path) -> bool:
    """Whether a run directory holds anything a page can show: a case, or backup results."""
    if not run_dir.is_dir():
        return False
    return any(d.is_dir() and (d.name == "backup" or any((d / f).is_file() for f in CASE_FILES))
               for d in run_dir.iterdir())


def newest_run(reports: Path) -> Path | None:
    """The most recent run directory under ``reports`` (run ids sort by time), or None."""
    runs = [d for d in reports.iterdir() if d.is_dir()] if reports.is_dir() else []
    stamped = [(max(f.stat().st_mtime for f in marks), d.name, d) for d in runs if (marks := list(d.glob("run-*.json")))]
    return max(stamped)[2] if stamped else None
