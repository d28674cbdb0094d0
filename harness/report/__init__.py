"""Reports built from saved runs: the sign-off page, re-judging a saved run, the recovery runbook, the nightly trends.

>>> build(Path("reports/20261129-164613"))  # doctest: +SKIP
PosixPath('reports/20261129-164613/index.html')

The modules, one concept each: ``results`` reads a run back, ``rejudge`` judges it again with
other SLAs, ``milestones`` finds a case's six moments, ``matrix`` lays out the checklist,
``environment`` records what the run ran on, ``backup`` reads the backup suite's results,
``svg`` inlines plots, ``page`` renders, ``allure`` attaches evidence to allure results,
``runbook`` the recovery runbook, ``history`` and ``trends`` the nightly history and its page.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import FalloverError

if TYPE_CHECKING:
    from harness.report.backup import BackupCase
    from harness.report.rejudge import Rejudged
    from harness.report.results import RunResults
    from harness.topology import Topology

INDEX = "index.html"


def build(run_dir: Path, *, sla: Mapping[str, float] | None = None, out: Path | None = None,
          replot: bool = False) -> Path:
    """Write the run's page and return its path: ``index.html``, or with ``sla`` overrides a re-judged page.

    With ``sla`` (e.g. ``{"max_outage_s": 5}``) every case is judged again from its saved
    recording and the page (default ``rejudged-sla-outage-5.html``) marks each changed verdict;
    the run's own ``index.html`` is left as it was. ``replot`` redraws every case's timeline.svg
    from its recording first (for runs saved before the current plot).
    """
    if sla:
        return rejudge_page(run_dir, sla, out=out, replot=replot)[0]
    from harness.report.page import render, write
    from harness.report.results import load_run

    run = load_run(run_dir)
    page = write(render(run, topology=_topology(run), replot=replot), out or run_dir / INDEX)
    write_runbook(run_dir)
    return page


def write_runbook(run_dir: Path) -> Path | None:
    """``runbook.md`` beside the page (the same runbook the page shows), when the run recovered from anything."""
    from harness.report.page import runbook_of

    book, _ = runbook_of(run_dir)
    if book is None or not hasattr(book, "to_markdown"):
        return None
    path = run_dir / "runbook.md"
    path.write_text(book.to_markdown())
    return path


def rejudge_page(run_dir: Path, sla: Mapping[str, float], *, out: Path | None = None,
                 replot: bool = False) -> tuple[Path, list[Rejudged], list[BackupCase]]:
    """Judge the saved run again with ``sla`` overrides: the page's path, every case's re-judgement,
    and the backup suite's cases judged again (empty when it did not run)."""
    from harness.report.backup import load_backup
    from harness.report.page import render, write
    from harness.report.rejudge import rejudge_backup, rejudge_run, run_topology, slug, with_sla
    from harness.report.results import load_run

    run = load_run(run_dir)
    rejudged = rejudge_run(run, sla)
    recorded = run_topology(run)
    backup = rejudge_backup(run_dir, load_backup(run_dir) or [], recorded, with_sla(recorded, sla))
    html = render(run, topology=recorded, rejudged=rejudged, overrides=dict(sla), replot=replot,
                  backup=backup or None)
    return write(html, out or run_dir / f"rejudged-{slug(sla)}.html"), rejudged, backup


def _topology(run: RunResults) -> Topology | None:
    from harness.report.rejudge import run_topology

    try:
        return run_topology(run)
    except FalloverError:  # without a topology the page still shows everything saved
        return None
