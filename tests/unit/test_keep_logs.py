"""Which cases keep their node log lines in logs/: every case that did not pass; passing ones on --keep-logs."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.errors import FalloverError
from harness.judging import Judging


class Audit:
    def __init__(self, fail: bool = False) -> None:
        self.saved: list[Path] = []
        self.fail = fail

    def save_lines(self, where: Path) -> list[Path]:
        if self.fail:
            raise FalloverError("node2 does not answer")
        self.saved.append(where)
        return []


def _save(tmp_path: Path, *, passed: bool, keep: bool, audit: Any) -> list[str]:
    said: list[str] = []
    judging = SimpleNamespace(keep_logs=keep, log=said.append)
    Judging._save_logs(judging, SimpleNamespace(audit=audit, run_dir=tmp_path / "case"), passed)  # type: ignore[arg-type]
    return said


@pytest.mark.parametrize(("passed", "keep", "saved"), [(False, False, True), (False, True, True),
                                                      (True, False, False), (True, True, True)])
def test_logs_are_saved_for_failures_always_and_for_passes_on_request(tmp_path: Path, passed: bool, keep: bool,
                                                                      saved: bool) -> None:
    audit = Audit()
    assert _save(tmp_path, passed=passed, keep=keep, audit=audit) == []
    assert audit.saved == ([tmp_path / "case" / "logs"] if saved else [])


def test_a_case_without_an_audit_saves_nothing(tmp_path: Path) -> None:
    assert _save(tmp_path, passed=False, keep=True, audit=None) == []


def test_logs_that_cannot_be_read_are_said_not_raised(tmp_path: Path) -> None:
    said = _save(tmp_path, passed=False, keep=False, audit=Audit(fail=True))
    assert said == ["the node logs of case could not be saved: node2 does not answer"]
