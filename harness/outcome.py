"""PASS, FAIL or ERROR: the one rule that judges every kind of case (a fault case, a backup case).

ERROR wins over FAIL: a case whose harness failed, or whose setup never got the cluster to the
point the case tests, says nothing about the cluster, so no verdict of it can make it a FAIL.
Otherwise an asserted verdict that is not true (false, or unknown: could not be judged) fails it.
Both result classes mix this in, so the rule and the report's verdict marks cannot drift apart.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from harness.checkers import UNKNOWN, Verdict
from harness.steps import Step

Status = Literal["PASS", "FAIL", "ERROR"]


class Judged:
    """The status of a case from its steps and its asserted verdicts (mixed into a dataclass)."""

    setup_steps: ClassVar[tuple[str, ...]] = ()
    """Steps before the case tests anything: their failure makes it an ERROR, not a FAIL."""
    steps: list[Step]
    verdicts: dict[str, Verdict]
    asserted: tuple[str, ...]

    @property
    def errors(self) -> list[str]:
        """Why the case is an ERROR (empty when it is not): harness errors and failed setup steps."""
        return [f"{s.name}: {s.error}" for s in self.steps
                if not s.ok and (s.harness_error or s.name in self.setup_steps)]

    @property
    def failures(self) -> list[Verdict]:
        return [v for n, v in self.verdicts.items() if n in self.asserted and v.valid is not True]

    def failed_otherwise(self) -> bool:
        """A failure that is not a verdict (a fault case's extra findings); none by default."""
        return False

    @property
    def status(self) -> Status:
        if self.errors:
            return "ERROR"
        return "FAIL" if self.failures or self.failed_otherwise() else "PASS"

    @property
    def passed(self) -> bool:
        return self.status == "PASS"

    def verdict_lines(self) -> list[str]:
        """One report line per verdict, marked as judged; a verdict that is not asserted is `info`."""
        lines = []
        for name, v in self.verdicts.items():
            mark = ("FAIL" if v.valid is False else "UNKNOWN" if v.valid == UNKNOWN
                    else "ok" if v.judged else "n/a") if name in self.asserted else "info"
            lines.append(f"  [{mark:>7}] {name}: {v.explanation}")
        return lines
