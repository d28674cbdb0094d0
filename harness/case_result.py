"""The outcome of one case — PASS, FAIL or ERROR — and the evidence files that carry it.

PASS: every asserted verdict holds. FAIL: the cluster did something wrong (a verdict is
false or could not be judged, or a step after the inject got an answer from the cluster
that breaks the case). ERROR: the case could not be judged as a test of the cluster — the
cluster could not be made whole before the fault, the fault did not take effect, or the
harness itself failed. A reader must be able to tell the three apart from the report alone.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from harness.checkers import Verdict
from harness.outcome import Judged
from harness.plan import Case, Expected
from harness.steps import Step

if TYPE_CHECKING:
    from harness.topology import Topology

SETUP_STEPS = ("make the cluster whole", "start the recording", "baseline", "inject")
"""Steps before the fault is in effect: their failure means the case never tested the cluster."""


@dataclass
class CaseResult(Judged):
    case: Case
    expected: Expected | None
    verdicts: dict[str, Verdict]
    run_dir: Path
    asserted: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    extra_findings: list[str] = field(default_factory=list)
    steps: list[Step] = field(default_factory=list)
    diagnosis: dict[str, list[str]] = field(default_factory=dict)  # step → the cluster's account
    counts: dict[str, int] = field(default_factory=dict)
    setup_steps: ClassVar[tuple[str, ...]] = SETUP_STEPS

    def failed_otherwise(self) -> bool:
        """A step after the inject got an answer that breaks the case (see the module docstring)."""
        return bool(self.extra_findings)

    def report(self) -> str:
        """What was done, what was expected, what was measured, and why it failed: an engineer's report."""
        expected = self.expected.describe() if self.expected else "(not derived: the case stopped before)"
        lines = [f"{self.status}: {self.case.fault} on {self.case.target.label} under load; expected: {expected}"]
        lines += [f"  [  ERROR] {e}" for e in self.errors]
        lines += self.verdict_lines()
        lines += [f"  [   FAIL] {f}" for f in self.extra_findings]
        for step, why in self.diagnosis.items():
            lines.append(f"  why, as the cluster reported it when '{step}' ran out:")
            lines += [f"    - {d}" for d in why] or ["    - (it reported nothing out of the ordinary)"]
        noisy = {k: v for k, v in self.counts.items() if v}
        if noisy:
            lines.append("  recording errors: " + ", ".join(f"{k}={v}" for k, v in sorted(noisy.items())))
        lines.append(f"  evidence: {self.run_dir}")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {"case": self.case.id, "status": self.status, "passed": self.passed, "fault": self.case.fault,
                "target": self.case.target.to_dict(), "target_label": self.case.target.label,
                "trigger": self.case.trigger,
                "expected": asdict(self.expected) if self.expected else None,
                "asserted": list(self.asserted), "timings": self.timings, "errors": self.errors,
                "verdicts": {n: asdict(v) for n, v in self.verdicts.items()},
                "extra_findings": self.extra_findings, "diagnosis": self.diagnosis, "counts": self.counts,
                "steps": [s.to_dict() for s in self.steps]}

    def save(self) -> None:
        """verdicts.json, report.txt and timings.json: written whatever happened, each on its own."""
        d = self.run_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "verdicts.json").write_text(json.dumps(self.to_dict(), indent=1, default=str))
        (d / "report.txt").write_text(self.report() + "\n")
        (d / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in self.timings.items()}))


def new_case_dir(run_root: Path, case_id: str) -> Path:
    """A fresh directory for one run of a case: `<case>`, or `<case>.2`, … when the case ran before."""
    d = run_root / case_id
    i = 1
    while d.exists():
        i += 1
        d = run_root / f"{case_id}.{i}"
    d.mkdir(parents=True)
    return d


def save_evidence(result: CaseResult, timeline: Any, requests: list[Any], recovery: Any,
                  topology: Topology | None = None) -> None:
    """Each piece of evidence on its own: one that cannot be written never costs the others.

    ``timeline`` and ``recovery`` (the operator's steps, an OpLog; None: none recorded) are saved by
    their own ``save(path)``. The plot is titled with the case and its status and shows the case's
    milestones, taken from the same recording and verdicts (``topology``: as the checkers had it)."""
    d = result.run_dir
    problems = []
    writers = [("timeline.json", lambda: timeline.save(d / "timeline.json")), ("verdicts", result.save)]
    if recovery is not None:
        writers.append(("recovery.json", lambda: recovery.save(d / "recovery.json")))
    for what, write in writers:
        try:
            write()
        except Exception as e:  # noqa: BLE001 — see the docstring
            problems.append(f"{what}: {type(e).__name__}: {e}")
    try:
        from harness.checkers.recorded import context_of
        from harness.plots import plot_timeline
        from harness.report.milestones import milestones

        marks = milestones(context_of(timeline, requests, topology), result.verdicts)
        plot_timeline(timeline, requests, d / "timeline.svg", title=result.case.id, status=result.status,
                      subtitle=f"expected: {result.expected.describe()}" if result.expected else None,
                      milestones=marks)
    except Exception as e:  # noqa: BLE001 — a plot is evidence, never a reason to lose the verdicts
        problems.append(f"timeline.svg: {type(e).__name__}: {e}")
    if problems:
        (d / "evidence-errors.txt").write_text("\n".join(problems) + "\n")
