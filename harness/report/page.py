"""The run's sign-off page: what each part of the HTML shows, gathered from the saved run, then rendered.

One self-contained file (inline CSS and SVG, nothing fetched), because it is mailed, archived
and opened from disk years after the cluster it describes is gone. Every part is built from
the run directory only; a part that cannot be built says why on the page instead of breaking it.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from harness.case_result import CaseResult
from harness.checkers.recorded import context_of
from harness.report.backup import BackupCase, load_backup
from harness.report.environment import stack_versions
from harness.report.matrix import build_matrix
from harness.report.milestones import Milestone, event_row, milestones
from harness.report.rejudge import Change, Rejudged
from harness.report.results import CaseRecord, RunResults
from harness.report.svg import inline_svg
from harness.topology import Topology

TEMPLATES = Path(__file__).parent / "templates"
EVENT_ROWS = 2000
"""Raw events shown per case (a case has a few hundred); the rest are in timeline.json, and the page says so."""
EVIDENCE = ("report.txt", "verdicts.json", "timeline.json", "timeline.svg", "timings.json", "cluster-before.txt",
            "cluster-after.txt", "log-findings.txt", "log-expected.txt", "log-unreadable.txt", "load.jsonl",
            "load.jsonl.stdout", "probe.jsonl", "arp.jsonl", "recovery.json", "consistency.json", "harness-error.txt",
            "evidence-errors.txt")


@dataclass
class CaseView:
    """One case as the page shows it."""

    anchor: str
    record: CaseRecord
    result: CaseResult
    was: str | None = None                   # status before re-judging, when it changed
    changes: dict[str, Change] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    why_not: str | None = None
    plot: Markup | None = None
    plot_note: str = ""
    marks: list[dict[str, str]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    events_cut: int = 0
    files: list[tuple[str, str]] = field(default_factory=list)  # (name, size)


def anchor(name: str) -> str:
    return "case-" + "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _marks(case: CaseRecord, result: CaseResult, topology: Topology | None) -> tuple[list[Milestone], float]:
    if case.timeline is None:
        return [], 0.0
    ctx = context_of(case.timeline, (), topology, load=case.file("load.jsonl") is not None)
    return milestones(ctx, result.verdicts), ctx.origin


def _plot(case: CaseRecord, result: CaseResult, changed: bool, topology: Topology | None, n: int,
          replot: bool) -> tuple[Markup | None, str]:
    """The case's plot as inline SVG: the saved one, or redrawn when re-judging changed its verdict (or asked)."""
    path = case.file("timeline.svg")
    note = ""
    if (changed or replot) and case.timeline is not None:
        from harness.plots import plot_timeline
        from harness.timeline import load_requests

        load = case.file("load.jsonl")
        requests = load_requests(load) if load else []
        marks, _ = _marks(case, result, topology)
        subtitle = f"expected: {result.expected.describe()}" if result.expected else None
        if replot:
            path = plot_timeline(case.timeline, requests, case.dir / "timeline.svg", title=result.case.id,
                                 status=result.status, subtitle=subtitle, milestones=marks)
        else:  # a re-judged picture is not the run's evidence: it never replaces timeline.svg
            with tempfile.TemporaryDirectory() as tmp:
                drawn = plot_timeline(case.timeline, requests, Path(tmp) / "plot.svg", title=result.case.id,
                                      status=result.status, subtitle=subtitle, milestones=marks)
                return Markup(inline_svg(drawn.read_text(), f"p{n}")), "redrawn with the re-judged verdict"
    if path is None:
        return None, "no plot was saved for this case"
    try:
        return Markup(inline_svg(path.read_text(errors="replace"), f"p{n}")), note
    except OSError as e:
        return None, f"timeline.svg could not be read: {e}"


def case_view(n: int, case: CaseRecord, rejudged: Rejudged | None, topology: Topology | None,
              replot: bool = False) -> CaseView:
    result = rejudged.after if rejudged else case.result
    changed = bool(rejudged and rejudged.status_changed)
    view = CaseView(anchor(case.name), case, result,
                    was=rejudged.before.status if changed and rejudged else None,
                    changes=rejudged.changes if rejudged else {}, drift=rejudged.drift if rejudged else [],
                    why_not=rejudged.why_not if rejudged else None)
    try:
        view.plot, view.plot_note = _plot(case, result, changed, topology, n, replot)
    except Exception as e:  # noqa: BLE001 — a picture is evidence, never a reason to lose the page
        view.plot_note = f"the plot could not be drawn: {type(e).__name__}: {e}"
    try:
        marks, origin = _marks(case, result, topology)
    except Exception as e:  # noqa: BLE001
        marks, origin = [], 0.0
        view.plot_note += f"; milestones could not be computed: {type(e).__name__}: {e}"
    view.marks = [{"name": m.name, "t": m.rel(origin), "detail": m.detail} for m in marks]
    if case.timeline is not None:
        events = case.timeline.sorted_events()
        view.events = [event_row(e, origin) for e in events[:EVENT_ROWS]]
        view.events_cut = max(0, len(events) - EVENT_ROWS)
    view.files = [(name, _size(case.dir / name)) for name in EVIDENCE if (case.dir / name).is_file()]
    view.files += [(f"logs/{p.name}", _size(p)) for p in sorted((case.dir / "logs").glob("*")) if p.is_file()]
    return view


def _size(path: Path) -> str:
    n = float(path.stat().st_size)
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


def runbook_of(run_dir: Path) -> tuple[Any | None, str]:
    """The nightly engineer's runbook (harness.report.runbook.build), or why there is none."""
    try:
        from harness.report import runbook
    except ImportError:
        return None, "no runbook recorded (this harness has no runbook builder)"
    build = getattr(runbook, "build", None)
    if build is None:
        return None, "no runbook recorded (harness.report.runbook has no build())"
    try:
        book = build(run_dir)
    except Exception as e:  # noqa: BLE001 — one line on the page, not a broken report
        return None, f"the runbook could not be built: {type(e).__name__}: {e}"
    if book is None or not getattr(book, "procedures", None):
        return None, "no runbook recorded: no failure in this run was recovered from"
    return book, ""


def overall(counts: dict[str, int]) -> str:
    """The run's result for the sign-off: any ERROR makes it incomplete, any FAIL a failure."""
    if not sum(counts.values()):
        return "NO CASES"
    return "ERROR" if counts.get("ERROR") else "FAIL" if counts.get("FAIL") else "PASS"


def environment() -> Environment:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True, undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["basename"] = os.path.basename
    return env


def render(run: RunResults, *, topology: Topology | None, rejudged: list[Rejudged] | None = None,
           overrides: dict[str, float] | None = None, replot: bool = False,
           backup: list[BackupCase] | None = None) -> str:
    """The whole page as one string (see ``write`` for the file)."""
    by_name = {r.record.name: r for r in rejudged or []}
    views = [case_view(i, c, by_name.get(c.name), topology, replot) for i, c in enumerate(run.cases)]
    counts = {"PASS": 0, "FAIL": 0, "ERROR": 0}
    for v in views:
        counts[v.result.status] += 1
    nodes = topology.node_names if topology is not None else []
    matrix = build_matrix([(v.anchor, v.result, v.was) for v in views], nodes)
    book, book_note = runbook_of(run.run_dir)
    if backup is None:
        backup = load_backup(run.run_dir)
    html = environment().get_template("index.html.j2").render(
        run=run, views=views, counts=counts, result=overall(counts), matrix=matrix,
        runbook=book, runbook_note=book_note, backup=backup,
        env=run.environment, versions=stack_versions(run.environment), topology_text=run.topology_text,
        overrides=overrides or {}, rejudged=rejudged is not None,
        changed=sum(1 for r in rejudged or [] if r.changes) + sum(1 for b in backup or [] if b.changes), built=time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        outcomes=_outcomes(run.run_dir))
    # nothing on the page may name a scheme a browser would fetch; a URL in a log line stays readable
    return html.replace("://", "&#58;//")


def _outcomes(run_dir: Path) -> list[dict[str, Any]]:
    """pytest's outcomes of tests that left no case evidence (e.g. an ERROR before the recording began)."""
    import json

    path = run_dir / "pytest-outcomes.json"
    try:
        rows = json.loads(path.read_text()) if path.is_file() else []
    except (OSError, ValueError):
        return [{"nodeid": "pytest-outcomes.json", "outcome": "unreadable", "message": ""}]
    cases = {d.name.split(".")[0] for d in run_dir.iterdir() if d.is_dir()}
    return [r for r in rows if isinstance(r, dict) and _param_id(str(r.get("nodeid", ""))) not in cases]


def _param_id(nodeid: str) -> str:
    """``test_fallover[step02-node_stop-node1]`` → ``node_stop-node1``: the case directory the test wrote."""
    pid = nodeid.rpartition("[")[2].rstrip("]")
    head, _, rest = pid.partition("-")
    return rest if head.startswith("step") and head[4:].isdigit() else pid


def write(html: str, path: Path) -> Path:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(html)
    tmp.replace(path)
    return path
