"""The checklist as a matrix: failure type × target, each cell PASS/FAIL/ERROR with its key measure and a link.

Rows are failure types in the catalogue's order; columns are where a fault struck — a node,
or a network, disk or group for faults that have no node. A fault aimed at one adapter of a
node (node1-service) sits in the node's column with the adapter named in the cell, so the
matrix stays a few columns wide however many networks the topology has.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from harness.case_result import CaseResult
from harness.checkers import Verdict, fmt_s
from harness.faults import FAULTS

KEY_VERDICT = {"fallover": "fallover", "stay": "outage", "outage": "detection", "planned": "outage"}
"""The measurement a cell shows, per expected outcome: what the case is mostly about."""


@dataclass(frozen=True)
class Cell:
    """One case in the matrix; ``anchor`` is its section's id on the page."""

    anchor: str
    status: str
    sub: str               # the rest of the target within the column (e.g. the network), or ""
    measure: str           # "fallover 4.4 s (SLA 15 s)"
    failing: tuple[str, ...] = ()   # asserted verdicts that failed (and "errors" when the case could not test)
    unknown: tuple[str, ...] = ()   # asserted verdicts that could not be judged (they do not pass either)
    was: str | None = None  # the status before re-judging, when it changed


@dataclass
class Matrix:
    columns: list[str]
    rows: list[tuple[str, list[list[Cell]]]] = field(default_factory=list)  # failure type → cells per column


def measure(result: CaseResult) -> str:
    """The cell's measurement against its SLA, from the case's key verdict (see KEY_VERDICT)."""
    e = result.expected
    name = KEY_VERDICT.get(e.outcome, "outage") if e else None
    v: Verdict | None = result.verdicts.get(name) if name else None
    if v is None:
        return "not measured"
    if not v.judged:
        return f"{v.name} not judged"
    if v.unit == "s" and isinstance(v.measured, (int, float)):
        limit = f" (SLA {fmt_s(float(v.limit))} s)" if isinstance(v.limit, (int, float)) else ""
        return f"{v.name} {fmt_s(float(v.measured))} s{limit}"
    if v.unit == "node" and v.measured is not None:
        return f"stayed on {v.measured}" if v.valid is True else f"moved to {v.measured}"
    return f"{v.name} {v.status}"


def place(result: CaseResult, nodes: Sequence[str]) -> tuple[str, str]:
    """(column, sub) for a case: its node if it has one, else its whole target label.

    >>> from harness.faults.base import Target
    >>> from harness.plan import Case
    >>> place(CaseResult(Case("adapter_down", Target(node="node1", network="service")), None, {}, None, ()), [])
    ('node1', 'service')
    """
    t = result.case.target
    if t.node:
        rest = "-".join(p for p in (t.network, t.disk, t.group) if p)
        return t.node, rest
    return t.label, ""


def build_matrix(items: Sequence[tuple[str, CaseResult, str | None]], nodes: Sequence[str]) -> Matrix:
    """``items``: (anchor, result, status before re-judging or None) per case, in run order."""
    placed = [(anchor, r, was, *place(r, nodes)) for anchor, r, was in items]
    seen = {col for *_, col, _ in placed}
    columns = [n for n in nodes if n in seen] + sorted(seen - set(nodes))
    catalogue = list(FAULTS)
    faults = sorted({r.case.fault for _, r, *_ in placed},
                    key=lambda f: (catalogue.index(f) if f in catalogue else len(catalogue), f))
    matrix = Matrix(columns)
    for fault in faults:
        cells: list[list[Cell]] = [[] for _ in columns]
        for anchor, r, was, col, sub in placed:
            if r.case.fault != fault:
                continue
            failing = tuple(v.name for v in r.failures if v.valid is False) + (("errors",) if r.errors else ())
            unknown = tuple(v.name for v in r.failures if v.valid is not False)
            cells[columns.index(col)].append(Cell(anchor, r.status, sub, measure(r), failing, unknown,
                                                  was if was is not None and was != r.status else None))
        matrix.rows.append((fault, [sorted(slot, key=lambda c: c.sub) for slot in cells]))
    return matrix
