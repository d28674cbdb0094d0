"""The fuller matrix: each failure type of the daily suite repeated on the other nodes of the same role.

`suites/fallover` runs each failure type once per role of the node it strikes: on the node the
group runs on (node1) and on one passive node (node2). The same fault on the other passive nodes
(node3 here) gives the same expected outcome for the same reason; those repetitions run here, so
that the daily check stays within its budget (issue 14: 10 min, a median of 10 s per case) and
the full per-node matrix is still one command away. `harness.plan.repetitions` decides which
cases these are: `test_matrix[node_power_off-node3]`, `test_matrix[packet_loss-node3-standby]`, ….
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

FAMILIES = {"node", "network", "disk", "application", "cluster"}
REPETITIONS = "only"


def test_matrix(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
