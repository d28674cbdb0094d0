"""The nightly history: one line per run in reports/history.jsonl, and what trends and flakiness are read from it.

A nightly run is judged against the runs before it: did fallover time creep up, which cases
pass on one night and fail on the next *on the same code* (flaky: a defect of the cluster or
of the harness, to be found at its cause). So each run leaves one self-describing JSON line —
when, which code (git revision, and a digest of uncommitted changes), which testbed, and per
case its status and key measures — appended and fsynced, never rewritten.

>>> r = RunRecord("20260101-000000", "2026-01-01T00:00:00Z", "abc", "abc", False, "local.yaml", ("suites/fallover",),
...               None, 1, 60.0, {"passed": 1, "failed": 1},
...               {"node_power_off-node1": CaseRecord("PASS", "node_power_off", 4.2, 4.6)})
>>> RunRecord.from_dict(json.loads(r.to_json())) == r
True
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PASSING = ("PASS",)
FAILING = ("FAIL", "ERROR")


@dataclass(frozen=True)
class CaseRecord:
    """One case of one run: PASS/FAIL/ERROR/SKIP, its failure type (None for a test that is no plan case)
    and its key measures in seconds (None when not measured)."""

    status: str
    fault: str | None = None
    fallover_s: float | None = None
    outage_s: float | None = None
    detection_s: float | None = None


@dataclass(frozen=True)
class RunRecord:
    """One nightly run. ``code`` names the code that ran: the git revision, plus a digest of the
    uncommitted changes when the tree was dirty (two dirty runs of one revision may differ)."""

    run_id: str
    time: str
    git: str
    code: str
    dirty: bool
    testbed: str
    suites: tuple[str, ...]
    selection: str | None
    exit_status: int
    wall_s: float
    tests: dict[str, int]
    cases: dict[str, CaseRecord] = field(default_factory=dict)
    interrupted: bool = False
    sla: dict[str, float] = field(default_factory=dict)  # the topology's sla.* of this run (limits on the trend)

    @property
    def pass_rate(self) -> float | None:
        """Passed / (passed + failed + errors) of the pytest tests; None when none ran."""
        judged = sum(self.tests.get(k, 0) for k in ("passed", "failed", "error"))
        return self.tests.get("passed", 0) / judged if judged else None

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunRecord:
        """ValueError naming the field when a line is not a run record."""
        if not isinstance(d, dict):
            raise ValueError("not a JSON object")  # noqa: TRY004 — one error type for every bad line
        try:
            cases = {str(k): CaseRecord(**v) for k, v in (d.get("cases") or {}).items()}
        except TypeError as e:
            raise ValueError(f"cases: {e}") from None
        try:
            return cls(**{**d, "suites": tuple(d.get("suites") or ()), "cases": cases})
        except TypeError as e:
            raise ValueError(str(e).replace("__init__() ", "")) from None


def read_json(path: Path) -> dict[str, Any] | None:
    """A saved JSON object (verdicts.json, timeline.json…), or None when it is missing, torn or not an object."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def append(path: Path, record: RunRecord) -> None:
    """One line, fsynced: a crash later in the night never costs an earlier run's line."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(record.to_json() + "\n")
        f.flush()
        os.fsync(f.fileno())


def read(path: Path) -> tuple[list[RunRecord], list[str]]:
    """Every run in the file, oldest first, and one line per unreadable line (``history.jsonl:7: …``).

    A torn or foreign line is reported, never fatal: one bad night must not hide the others.
    """
    if not path.exists():
        return [], []
    records, problems = [], []
    for no, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(RunRecord.from_dict(json.loads(line)))
        except ValueError as e:  # json.JSONDecodeError is a ValueError
            problems.append(f"{path.name}:{no}: {' '.join(str(e).split())[:200]}")
    return records, problems


@dataclass(frozen=True)
class Flaky:
    """A case that passed in some runs and failed in others on the same code."""

    case: str
    code: str
    passed_in: tuple[str, ...]
    failed_in: tuple[str, ...]


def flaky(records: Iterable[RunRecord]) -> list[Flaky]:
    """Cases with both outcomes on one ``code``; sorted by case, then code.

    >>> runs = [RunRecord(i, "", "r1", "r1", False, "", (), None, 0, 0.0, {}, {"c": CaseRecord(s)})
    ...         for i, s in (("a", "PASS"), ("b", "FAIL"))]
    >>> flaky(runs)
    [Flaky(case='c', code='r1', passed_in=('a',), failed_in=('b',))]
    """
    seen: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
    for r in records:
        for name, c in r.cases.items():
            passed, failed = seen.setdefault((name, r.code), ([], []))
            if c.status in PASSING:
                passed.append(r.run_id)
            elif c.status in FAILING:
                failed.append(r.run_id)
    return [Flaky(case, code, tuple(p), tuple(f)) for (case, code), (p, f) in sorted(seen.items()) if p and f]


@dataclass(frozen=True)
class Point:
    """One failure type in one run: the worst of its cases (what an SLA is judged on), and each case's value."""

    run_id: str
    fallover_s: float | None
    outage_s: float | None
    cases: tuple[tuple[str, str, float | None, float | None], ...]  # (case, status, fallover_s, outage_s)


def series(records: Iterable[RunRecord]) -> dict[str, list[Point]]:
    """Per failure type, one point per run that exercised it (oldest first)."""
    out: dict[str, list[Point]] = {}
    for r in records:
        by_fault: dict[str, list[tuple[str, CaseRecord]]] = {}
        for name, c in sorted(r.cases.items()):
            if c.fault:
                by_fault.setdefault(c.fault, []).append((name, c))
        for fault, cases in sorted(by_fault.items()):
            out.setdefault(fault, []).append(Point(
                r.run_id, _worst(c.fallover_s for _, c in cases), _worst(c.outage_s for _, c in cases),
                tuple((n, c.status, c.fallover_s, c.outage_s) for n, c in cases)))
    return out


def _worst(values: Iterable[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None
