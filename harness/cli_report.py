"""`fallover report [RUN]`: rebuild a run's sign-off page from its saved results, or judge it again with other SLAs."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from harness.errors import UsageError
from harness.topology import Sla

REPORTS = Path(__file__).resolve().parent.parent / "reports"


def add_report_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from harness.report.rejudge import short_name

    p = sub.add_parser("report", help="rebuild a run's HTML report from its saved results; --sla… judges it again")
    p.add_argument("run", nargs="?", help="a run id under reports/ or a run directory (default: the newest run)")
    p.add_argument("--reports", type=Path, default=REPORTS, help="where run directories are (default: reports/)")
    p.add_argument("--sla", action="append", default=[], metavar="NAME=SECONDS",
                   help="judge the saved run again with this SLA (repeatable), e.g. outage=5 or max_recovery_s=20")
    for field in Sla.model_fields:
        p.add_argument(f"--sla-{short_name(field).replace('_', '-')}", type=float, default=None, metavar="SECONDS",
                       dest=f"sla_{field}", help=f"the same as --sla {short_name(field)}=SECONDS")
    p.add_argument("--out", type=Path, default=None, help="write the page here (default: in the run directory)")
    p.add_argument("--replot", action="store_true",
                   help="redraw every case's timeline.svg from its recording (runs saved before the current plot)")
    p.add_argument("--no-allure", action="store_true", help="do not build allure's HTML even where allure is installed")


def find_run(arg: str | None, reports: Path) -> Path:
    """RUN as given (a directory, or a run id under ``reports``), else the newest run; bad input: UsageError."""
    from harness.report.results import newest_run

    if arg is None:
        run = newest_run(reports)
        if run is None:
            raise UsageError(f"report: no run in {reports} (run a suite first, or name a run directory)")
        return run
    for candidate in (Path(arg), reports / arg):
        if candidate.is_dir() and (list(candidate.glob("run-*.json")) or list(candidate.glob("*/verdicts.json"))):
            return candidate
    raise UsageError(f"report: {arg}: not a run directory (no run-*.json or */verdicts.json in it, nor in "
                     f"{reports / arg})")


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import build, rejudge_page
    from harness.report.rejudge import parse_overrides, short_name

    overrides = parse_overrides(args.sla)
    overrides |= {f: v for f in Sla.model_fields if (v := getattr(args, f"sla_{f}")) is not None}
    for field, v in overrides.items():
        if not v > 0:
            raise UsageError(f"--sla-{short_name(field)}: a limit must be more than 0 seconds, not {v:g}")
    run_dir = find_run(args.run, args.reports)
    if args.out is not None and not args.out.parent.is_dir():
        raise UsageError(f"--out {args.out}: directory {args.out.parent} does not exist")
    if not overrides:
        print(f"report: {build(run_dir, out=args.out, replot=args.replot)}")
    else:
        page, judged, backup = rejudge_page(run_dir, overrides, out=args.out, replot=args.replot)
        _print_changes(judged, backup)
        print(f"re-judged report: {page}")
    if not args.no_allure:
        _allure(run_dir)
    return 0


def _print_changes(judged: list, backup: list) -> None:  # type: ignore[type-arg]
    for b in backup:
        if b.changes:
            print(f"backup {b.case}: {b.was} → {b.status}" if b.was else f"backup {b.case}: still {b.status}")
            for c in b.changes.values():
                print(f"  {c.name}: {c.before.status} → {c.after.status}: {c.after.explanation}")
    changed = [r for r in judged if r.changes]
    for r in changed:
        head = f"{r.record.name}: {r.before.status} → {r.after.status}" if r.status_changed \
            else f"{r.record.name}: still {r.after.status}"
        print(head)
        for c in r.changes.values():
            print(f"  {c.name}: {c.before.status} → {c.after.status}: {c.after.explanation}")
        if r.drift:
            print(f"  (at the run's own SLA, {', '.join(r.drift)} also differ: the checkers changed since the run)")
    for r in judged:
        if r.why_not:
            print(f"{r.record.name}: not re-judged: {r.why_not}")
    print(f"{len(changed)} of {len(judged)} case(s) have a changed verdict, "
          f"{sum(r.status_changed for r in judged)} a changed result")


def _allure(run_dir: Path) -> None:
    import json

    from harness.report.allure import generate, results_dir

    recorded = None
    for f in sorted(run_dir.glob("run-*.json")):
        try:
            recorded = recorded or json.loads(f.read_text()).get("alluredir")
        except (OSError, ValueError):
            continue
    results = results_dir(run_dir, recorded)
    if results is not None:
        print(generate(results, run_dir / "allure-report"), file=sys.stderr)


REPORT_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"report": cmd_report}
