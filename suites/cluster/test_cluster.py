"""Whole-cluster operations, single-daemon kills and partition shapes (issue 14), under load.

Kept out of suites/fallover, the quick daily check: each case here restarts the whole stack or
waits out a fencing. One test per (fault, target) of the plan whose fault names this suite:
`test_cluster[controld_kill-node1]`, `test_cluster[cluster_one_by_one-cluster]`, each with the outcome
the installed Pacemaker gives: what it documents, or for the subdaemon kills what its source says
(harness/faults/pcmk_source.py) where that differs (`pytest suites/cluster --collect-only -q` lists
them; `fallover plan` shows each expectation).
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

SUITE = "cluster"


def test_cluster(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
