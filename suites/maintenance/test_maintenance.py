"""Planned operations under load: group moves, standby, maintenance mode, a rolling restart.

None of them may lose an acknowledged write, and clients may see at most the declared
outage; afterwards the cluster is fully redundant with every group where its policy puts it.
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

FAMILIES = {"planned"}


def test_maintenance(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
