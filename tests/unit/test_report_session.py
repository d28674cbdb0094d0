"""The page is written at the end of a pytest session that ran cases, also when they failed or errored."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

HERE = Path(__file__).parent

SUITE = """
import pytest
from harness.topology import load_topology
from checker_history import history
from report_run import writes, write_case

FAMILIES = {"node"}

@pytest.fixture
def whole_cluster(fallover_case):
    if fallover_case.target.node == "node2":
        raise RuntimeError("could not make the cluster whole")  # an ERROR before anything was recorded

def test_fallover(fallover_case, run_dir, whole_cluster):
    if fallover_case.target.node == "node1":
        result = write_case(run_dir, load_topology(run_dir / "topology.yaml"), history(), writes())
        assert result.passed
    else:
        assert False, "the cluster did something wrong"
"""


def test_session_end_writes_the_page_with_passed_failed_and_errored_cases(pytester: pytest.Pytester,
                                                                          tmp_path: Path) -> None:
    pytester.syspathinsert(HERE)
    pytester.makepyfile(test_suite=SUITE)
    run_dir = tmp_path / "run"
    r = pytester.runpytest("--faults", "node_power_off", "--run-dir", str(run_dir), "-p", "no:cacheprovider")
    r.assert_outcomes(passed=1, failed=1, errors=1)
    assert f"fallover: sign-off report {run_dir / 'index.html'}" in r.stdout.str()
    html = (run_dir / "index.html").read_text()
    assert 'href="#case-node_power_off-node1"' in html
    assert "test_fallover[node_power_off-node2]" in html and "could not make the cluster whole" in html
    assert "test_fallover[node_power_off-node3]" in html  # failed without case evidence: listed, not lost
    rows = json.loads((run_dir / "pytest-outcomes.json").read_text())
    assert sorted(row["outcome"] for row in rows) == ["error", "failed", "passed"]


def test_no_page_for_a_session_without_cases(pytester: pytest.Pytester, tmp_path: Path) -> None:
    pytester.makepyfile(test_plain="def test_x():\n    pass\n")
    run_dir = tmp_path / "run"
    pytester.runpytest("--run-dir", str(run_dir), "-p", "no:cacheprovider").assert_outcomes(passed=1)
    assert not run_dir.exists()
