"""The outcome of one backup case — PASS, FAIL or ERROR — and its evidence files.

Besides the case directory (history.json, timeline.json, load.jsonl, report.txt, verdicts.json
and the backup itself), each case writes `reports/<run-id>/backup/<case>.json` in the shape the
HTML report reads (/work/report-contract.md, section 2).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from harness.checkers import Verdict
from harness.checkers.backup import BackupHistory, RefusalHistory
from harness.outcome import Judged
from harness.steps import Step

SETUP_STEPS = ("make the cluster whole", "start the recording", "warm up")
"""Steps before the backup: their failure means the case never tested backup and restore."""
MEASURES = {"backup_s": ("backup_time", "max_backup_s"), "restore_s": ("restore_time", "max_restore_s"),
            "rpo_s": ("rpo", "max_rpo_s"), "recovery_s": ("redundancy_restored", "max_recovery_s")}
"""The contract's measure names → the verdict that measures it and its SLA field."""


@dataclass
class BackupCaseResult(Judged):
    case: str
    title: str
    verdicts: dict[str, Verdict]
    asserted: tuple[str, ...]
    run_dir: Path
    """reports/<run-id>/backup/<case>/"""
    history: BackupHistory | RefusalHistory
    steps: list[Step] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    info: list[str] = field(default_factory=list)
    """Lines for the report that are not verdicts (sizes, nodes, what the restore did)."""
    setup_steps: ClassVar[tuple[str, ...]] = SETUP_STEPS

    def measures(self) -> dict[str, float]:
        out = {}
        for key, (verdict, _) in MEASURES.items():
            v = self.verdicts.get(verdict)
            if v is not None and isinstance(v.measured, (int, float)):
                out[key] = float(v.measured)
        return out

    def limits(self) -> dict[str, float]:
        return {key: float(v.limit) for key, (verdict, _) in MEASURES.items()
                if (v := self.verdicts.get(verdict)) is not None and isinstance(v.limit, (int, float))}

    def report(self) -> str:
        lines = [f"{self.status}: {self.case}: {self.title}"]
        lines += [f"  [  ERROR] {e}" for e in self.errors]
        lines += self.verdict_lines()
        lines += [f"  {line}" for line in self.info]
        lines.append(f"  evidence: {self.run_dir}")
        return "\n".join(lines)

    def to_contract(self) -> dict[str, Any]:
        """reports/<run-id>/backup/<case>.json, as /work/report-contract.md section 2 has it."""
        run_root = self.run_dir.parent.parent
        files = {name: str((self.run_dir / rel).relative_to(run_root))
                 for name, rel in (("manifest", "backup/MANIFEST.sha256"), ("backup", "backup/backup.json"),
                                   ("cib", "backup/cluster/cib.xml"), ("history", "history.json"),
                                   ("timeline", "timeline.json"), ("load", "load.jsonl"), ("report", "report.txt"))
                 if (self.run_dir / rel).exists()}
        return {"case": self.case, "title": self.title, "status": self.status, "measures": self.measures(),
                "limits": self.limits(), "verdicts": {n: asdict(v) for n, v in self.verdicts.items()},
                "asserted": list(self.asserted), "steps": [s.to_dict() for s in self.steps],
                "report": self.report(), "files": files}

    def save(self) -> None:
        """Every file on its own, whatever happened; the contract file last (it names the others)."""
        d = self.run_dir
        d.mkdir(parents=True, exist_ok=True)
        (d / "history.json").write_text(json.dumps(self.history.to_dict(), indent=1))
        (d / "verdicts.json").write_text(json.dumps(
            {"case": self.case, "status": self.status, "asserted": list(self.asserted), "timings": self.timings,
             "errors": self.errors, "verdicts": {n: asdict(v) for n, v in self.verdicts.items()},
             "steps": [s.to_dict() for s in self.steps]}, indent=1, default=str))
        (d / "report.txt").write_text(self.report() + "\n")
        (d.parent / f"{self.case}.json").write_text(json.dumps(self.to_contract(), indent=1, default=str))
