"""Allure: every case's evidence attached to its allure result, and allure's own HTML where its CLI is installed.

allure-pytest writes results only with ``--alluredir``; without it (or without allure-pytest)
attaching is a no-op. Each file is attached when the case wrote it — a case that stopped early
has fewer, and says why in its report.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

ATTACHMENTS: tuple[tuple[str, str, str], ...] = (  # (file in the case dir, attachment name, kind)
    ("verdicts.json", "verdicts", "JSON"),
    ("timeline.json", "timeline", "JSON"),
    ("timeline.svg", "plot", "SVG"),
    ("cluster-before.txt", "cluster status before", "TEXT"),
    ("cluster-after.txt", "cluster status after", "TEXT"),
    ("log-findings.txt", "node log lines: unexpected errors", "TEXT"),
    ("log-expected.txt", "node log lines: expected errors, each with its reason", "TEXT"),
    ("log-unreadable.txt", "node logs that could not be read", "TEXT"),
    ("load.jsonl.stdout", "locust statistics", "TEXT"),
    ("probe.jsonl", "probe log", "TEXT"),
    ("load.jsonl", "load log", "TEXT"),
    ("arp.jsonl", "ARP log", "TEXT"),
    ("timings.json", "step timings", "JSON"),
    ("consistency.json", "cluster consistency audit", "JSON"),
    ("recovery.json", "recovery steps as run (the runbook's record)", "JSON"),
    ("harness-error.txt", "harness error (traceback)", "TEXT"),
    ("evidence-errors.txt", "evidence that could not be written", "TEXT"),
)


def attach_case(report_text: str, case_dir: Path, allure: Any = None) -> list[str]:
    """Attach the report and every evidence file present; returns the attachment names (for tests and logs)."""
    if allure is None:
        try:
            import allure as allure_mod
        except ImportError:
            return []
        allure = allure_mod
    kinds = allure.attachment_type
    allure.attach(report_text, name="report", attachment_type=kinds.TEXT)
    names = ["report"]
    for filename, name, kind in ATTACHMENTS:
        path = case_dir / filename
        if path.is_file():
            extension = "jsonl" if filename.endswith(".jsonl") else None
            allure.attach.file(str(path), name=name, attachment_type=getattr(kinds, kind), extension=extension)
            names.append(name)
    for path in sorted((case_dir / "logs").glob("*")):  # a case that did not pass: every node log line since the mark
        if path.is_file():
            allure.attach.file(str(path), name=f"node log {path.name}", attachment_type=kinds.TEXT)
            names.append(f"node log {path.name}")
    return names


def results_dir(run_dir: Path, recorded: str | None) -> Path | None:
    """Where this run's allure results are: the --alluredir the run recorded, else <run>/allure-results."""
    for candidate in (Path(recorded) if recorded else None, run_dir / "allure-results"):
        if candidate is not None and candidate.is_dir() and any(candidate.iterdir()):
            return candidate
    return None


def generate(results: Path, out: Path, *, timeout: float = 300) -> str:
    """``allure generate`` into ``out``; returns one line saying what happened (no CLI is not an error)."""
    cli = shutil.which("allure")
    if cli is None:
        return f"allure command line not installed: allure's HTML not built (the results are in {results})"
    try:
        r = subprocess.run([cli, "generate", str(results), "-o", str(out), "--clean"], capture_output=True,
                           text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"allure generate timed out after {timeout:g} s"
    if r.returncode != 0:
        tail = (r.stderr or r.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return f"allure generate exited {r.returncode}: {tail[0]}"
    return f"allure report: {out / 'index.html'}"
