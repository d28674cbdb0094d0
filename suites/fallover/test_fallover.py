"""Every failure type of the topology's test plan, injected under load, judged against the declared SLAs.

One test per (fault, target): `test_fallover[node_power_off-node1]`. Each says what was
done, what a correct cluster does, and what was measured (detection, notification,
fallover, client-visible outage, lost writes, split brain, recovery, policy).

The quick daily check (issue 14: at most 10 min serial on 2 cores): a fault that strikes a node
runs once per role of that node — where the group runs, and one passive node. Its repetitions
on the other passive nodes (`harness.plan.repetitions`) are in `suites/matrix`.
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

FAMILIES = {"node", "network", "disk", "application", "cluster"}
REPETITIONS = "leave out"


def test_fallover(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
