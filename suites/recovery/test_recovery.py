"""Recovery: after each failure the cluster is healed and reintegrated, and must be fully redundant again.

Fully redundant within the recovery SLA, with the group where its policy puts it
(cascading: back on the highest-priority node; rotating: where it is). And it really is
redundant: a second failure right after recovery (the node now running the group is
powered off) is handled like the first.
"""

from __future__ import annotations

from harness.faults import Target
from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

FAMILIES = {"node", "network", "disk", "application", "cluster"}
OUTCOMES = {"fallover", "outage"}  # the failures there is something to recover from
RECOVERY = ("lost_writes", "split_brain", "redundancy_restored", "policy")


def test_recovery(fallover_case: Case, runner: Runner) -> None:
    first = runner.run(fallover_case, asserted=RECOVERY)
    assert_case(first)
    state = runner.driver.state()
    assert state is not None, "no node answers after recovery"
    home = state.group_node(first.expected.group)
    assert home is not None, f"{first.expected.group} is not running after recovery: {state.summary()}"
    second = runner.run(Case("node_power_off", Target(node=home)))
    assert_case(second, "after recovering from the first failure, a second one was not handled:")
