"""The steps of a case, each bounded and each turning its failure into a line of evidence, never a traceback.

A case is a sequence of steps (make whole, record, inject, wait for the outcome, heal,
recover, verify writes, audit, judge). When one fails, the case must still end with its
evidence saved and a verdict that says which step failed, which command, and what the
cluster answered. Two kinds of failure are kept apart because they mean different things
to the person signing a cluster off:

- a ``FalloverError`` (a command the cluster refused, a condition that never came, a heal
  that could not be done) is the *cluster's or testbed's answer*: evidence about the cluster;
- any other exception is a *bug of ours*: the case is an ERROR, never a cluster FAIL. Its
  traceback goes to a file beside the evidence, and the report gets one line.

Ctrl-C and SystemExit are not swallowed: the caller's ``finally`` still heals and saves.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from harness.errors import FalloverError


@dataclass
class Step:
    """One step as it happened: ``error`` is the one line a report shows when it failed."""

    name: str
    ok: bool = True
    seconds: float = 0.0
    error: str | None = None
    harness_error: bool = False
    detail: list[str] = field(default_factory=list)  # e.g. the cluster's diagnosis at a deadline

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Steps:
    """``with steps("heal"): nemesis.heal_all()`` — the body may fail; the case goes on.

    Tracebacks of harness errors are appended to ``traceback_file`` (created on the first one).
    """

    def __init__(self, traceback_file: Path | None = None) -> None:
        self.done: list[Step] = []
        self.traceback_file = traceback_file

    def __call__(self, name: str) -> _StepContext:
        return _StepContext(self, name)

    def get(self, name: str) -> Step | None:
        return next((s for s in reversed(self.done) if s.name == name), None)

    def failed(self, name: str) -> bool:
        s = self.get(name)
        return s is not None and not s.ok

    @property
    def failures(self) -> list[Step]:
        return [s for s in self.done if not s.ok]

    @property
    def harness_errors(self) -> list[Step]:
        return [s for s in self.done if s.harness_error]

    def fail(self, name: str, error: str, *, detail: list[str] | None = None) -> Step:
        """Record a step that failed without an exception (a deadline passed, a check said no)."""
        step = Step(name, ok=False, error=error, detail=list(detail or []))
        self.done.append(step)
        return step

    def _save_traceback(self, name: str, exc: BaseException) -> str | None:
        if self.traceback_file is None:
            return None
        text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        try:
            with open(self.traceback_file, "a") as f:
                f.write(f"--- step {name!r} ---\n{text}\n")
        except OSError:
            return None
        return self.traceback_file.name


class _StepContext:
    def __init__(self, steps: Steps, name: str) -> None:
        self.steps = steps
        self.step = Step(name)
        self._t0 = 0.0

    def __enter__(self) -> Step:
        self._t0 = time.monotonic()
        self.steps.done.append(self.step)
        return self.step

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> bool:
        step = self.step
        step.seconds = round(time.monotonic() - self._t0, 3)
        if exc is None:
            return False
        if not isinstance(exc, Exception):  # Ctrl-C, SystemExit: the caller's finally cleans up
            step.ok, step.error = False, f"interrupted ({type(exc).__name__})"
            return False
        step.ok = False
        if isinstance(exc, FalloverError):
            step.error = " ".join(str(exc).split())  # one line: multi-line stderr tails folded
        else:
            step.harness_error = True
            saved = self.steps._save_traceback(step.name, exc)
            where = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
            at = f" at {Path(where.filename).name}:{where.lineno}" if where else ""
            step.error = (f"harness error {type(exc).__name__}: {' '.join(str(exc).split())}{at}"
                          + (f" (traceback in {saved})" if saved else ""))
        return True
