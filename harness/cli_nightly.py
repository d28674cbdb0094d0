"""`fallover nightly`: the command line of harness/nightly.py (suites, report, history, trends)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.nightly import DEFAULT_SUITES, REPO, Nightly, run


def add_nightly_command(sub: Any, testbed_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    p = sub.add_parser("nightly", help="run the acceptance suites, write the report, append reports/history.jsonl, "
                                       "render reports/trends.html; exit 1 on any failure")
    testbed_arg(p)
    p.add_argument("--suite", action="append", type=Path, default=None, metavar="PATH",
                   help=f"a suite directory or file (repeatable; default {' '.join(DEFAULT_SUITES)})")
    p.add_argument("-k", dest="selection", metavar="EXPR", help="only tests matching this pytest -k expression")
    p.add_argument("--reports", type=Path, default=REPO / "reports",
                   help="where runs, history.jsonl and trends.html go (default: the repository's reports/)")
    p.add_argument("pytest_args", nargs=argparse.REMAINDER,
                   help="after --: more pytest options, e.g. -- --users 5 --sla-outage 10")


def cmd_nightly(args: argparse.Namespace) -> int:
    extra = args.pytest_args[1:] if args.pytest_args[:1] == ["--"] else args.pytest_args
    suites = tuple(s.resolve() for s in args.suite) if args.suite else tuple(REPO / s for s in DEFAULT_SUITES)
    n = Nightly(testbed=args.testbed.resolve(), suites=suites, reports=args.reports.resolve(),
                selection=args.selection, pytest_args=tuple(extra))

    def log(msg: str) -> None:
        print(f"[nightly] {msg}", file=sys.stderr, flush=True)

    return run(n, log=log)


NIGHTLY_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"nightly": cmd_nightly}
