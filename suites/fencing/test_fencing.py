"""Fencing failures: a node that must be fenced while its fence device fails (or one level of it does).

One test per case of the plan's fencing family: `test_fencing[fence_fail-node1]`. With no
successful fence the group must not move (the `fencing` verdict: no takeover before a successful
fence); with two levels declared (`cluster.fencing_topology`) and the first broken, the second
fences and the group falls over. A hung fence device waits out the fence timeout: that case is
in suites/slow.
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

FAMILIES = {"fencing"}


def test_fencing(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
