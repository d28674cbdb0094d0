"""The cases that wait out a cluster timeout: a fence device that hangs, a disk whose I/O hangs.

A hung device is only noticed when the cluster gives up on it (the fence timeout, the Filesystem
monitor's timeout), so each of these takes a minute or more; the daily `suites/fallover` leaves
them out. `test_slow[disk_hang-shared]`, `test_slow[fence_hang-node1]`.
"""

from __future__ import annotations

from harness.plan import Case
from harness.pytest_plugin import assert_case
from harness.runner import Runner

SUITE = "slow"


def test_slow(fallover_case: Case, runner: Runner) -> None:
    result = runner.run(fallover_case)
    assert_case(result)
