"""Steps turn failures into evidence: the cluster's answer is a FAIL, a bug of ours an ERROR, Ctrl-C propagates."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.case_result import CaseResult
from harness.checkers import Verdict
from harness.errors import WaitTimeout
from harness.faults import Target
from harness.plan import Case
from harness.steps import Steps


def test_a_cluster_answer_is_one_line_and_the_case_goes_on(tmp_path: Path) -> None:
    steps = Steps(tmp_path / "harness-error.txt")
    with steps("operator recovery"):
        raise WaitTimeout("cluster settling", 30, "online=node2,node3\ndc=node2")
    s = steps.get("operator recovery")
    assert s is not None and not s.ok and not s.harness_error
    assert s.error == "timed out after 30s waiting for cluster settling; last seen: online=node2,node3 dc=node2"
    assert not (tmp_path / "harness-error.txt").exists()


def test_a_bug_of_ours_is_a_harness_error_with_its_traceback_in_a_file(tmp_path: Path) -> None:
    steps = Steps(tmp_path / "harness-error.txt")
    with steps("judge"):
        {}["missing"]  # noqa: B018 - the bug
    s = steps.get("judge")
    assert s is not None and s.harness_error
    assert s.error is not None and s.error.startswith("harness error KeyError: 'missing' at test_steps.py:")
    assert "Traceback" not in s.error and "Traceback" in (tmp_path / "harness-error.txt").read_text()


def test_ctrl_c_is_not_swallowed(tmp_path: Path) -> None:
    steps = Steps(tmp_path / "t.txt")
    with pytest.raises(KeyboardInterrupt):
        with steps("heal"):
            raise KeyboardInterrupt
    assert steps.failed("heal")


def result(tmp_path: Path, steps: Steps, verdicts: dict[str, Verdict]) -> CaseResult:
    return CaseResult(Case("node_power_off", Target(node="node1")), None, verdicts, tmp_path, tuple(verdicts),
                      steps=steps.done)


def test_status_pass_fail_error(tmp_path: Path) -> None:
    ok = Verdict("fallover", True, 1.0, 15, "s", "fine")
    bad = Verdict("fallover", False, None, 15, "s", "never")
    assert result(tmp_path, Steps(), {"fallover": ok}).status == "PASS"
    assert result(tmp_path, Steps(), {"fallover": bad}).status == "FAIL"
    steps = Steps()
    with steps("inject"):
        raise WaitTimeout("the node to freeze", 5)
    r = result(tmp_path, steps, {"fallover": ok})
    assert r.status == "ERROR" and r.errors == ["inject: timed out after 5s waiting for the node to freeze"]
    r.save()
    assert (tmp_path / "report.txt").read_text().startswith("ERROR: node_power_off on node1")
    assert (tmp_path / "verdicts.json").exists() and (tmp_path / "timings.json").exists()
