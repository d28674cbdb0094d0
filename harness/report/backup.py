"""The backup/restore results of a run, as the backup suite saved them (reports/<run-id>/backup/*.json).

The shape is agreed in /work/report-contract.md: "case", "status" and "verdicts" are required;
"title", "measures", "limits", "steps", "report" and "files" are shown when present. A file
that cannot be read is shown as an ERROR naming the file: a sign-off page must not look
cleaner than the evidence.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.checkers import Verdict
from harness.report.results import verdict_from_dict

BACKUP_DIR = "backup"
STATUSES = ("PASS", "FAIL", "ERROR")


@dataclass
class BackupCase:
    case: str
    status: str
    title: str = ""
    verdicts: dict[str, Verdict] = field(default_factory=dict)
    measures: dict[str, Any] = field(default_factory=dict)
    limits: dict[str, Any] = field(default_factory=dict)
    steps: list[dict[str, Any]] = field(default_factory=list)
    report: str = ""
    files: dict[str, str] = field(default_factory=dict)
    source: str = ""
    asserted: list[str] | None = None  # verdicts that decide the case (the others are information); None: all
    # when judged again (fallover report --sla …): changed verdicts, the status before, why not re-judged
    changes: dict[str, Any] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    was: str | None = None
    why_not: str | None = None


def _one(path: Path, run_dir: Path) -> BackupCase:
    rel = str(path.relative_to(run_dir))
    try:
        d = json.loads(path.read_text())
        if not isinstance(d, dict):
            raise TypeError("not a JSON object")
        status = str(d.get("status", "")).upper()
        if status not in STATUSES:
            raise ValueError(f"status {d.get('status')!r} is not one of {', '.join(STATUSES)}")
        verdicts = {str(n): verdict_from_dict({"name": n, **v}) for n, v in (d.get("verdicts") or {}).items()}
        return BackupCase(case=str(d.get("case") or path.stem), status=status, title=str(d.get("title") or ""),
                          verdicts=verdicts, measures=dict(d.get("measures") or {}), limits=dict(d.get("limits") or {}),
                          steps=list(d.get("steps") or []), report=str(d.get("report") or ""),
                          files={str(k): str(v) for k, v in (d.get("files") or {}).items()}, source=rel,
                          asserted=[str(a) for a in d["asserted"]] if isinstance(d.get("asserted"), list) else None)
    except (OSError, ValueError, TypeError) as e:
        return BackupCase(case=path.stem, status="ERROR", title=f"{rel} could not be read: {type(e).__name__}: {e}",
                          source=rel)


def load_backup(run_dir: Path) -> list[BackupCase] | None:
    """Every backup case of the run, by file name; None when the backup suite did not run in this run."""
    d = run_dir / BACKUP_DIR
    files = sorted(d.glob("*.json")) if d.is_dir() else []
    return [_one(f, run_dir) for f in files] if files else None
