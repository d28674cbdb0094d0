"""Disk faults beyond a pull, on the embedded cluster: read errors, write errors and a hang of the shared disk.

The shared disk is one disk for every node, so each is an outage until repaired, which a correct
cluster notices through its Filesystem monitor (OCF_CHECK_LEVEL=20 writes and reads back a status
file). The broken cluster has that monitor disabled: nothing notices the write errors, and the
detection verdict fails. About 4 minutes (the hang waits out the 20 s monitor timeout).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.faults import Target
from harness.plan import Case
from harness.runner import Runner
from harness.testbed.base import Testbed

pytestmark = pytest.mark.testbed

FS_MONITOR = '<op id="app-fs-monitor-2s" enabled="{}"/>'


@pytest.mark.parametrize("fault", ["disk_read_errors", "disk_write_errors"])
def test_a_disk_failing_in_one_direction_is_noticed_and_recovered(testbed: Testbed, tmp_path: Path,
                                                                   fault: str) -> None:
    result = Runner(testbed, tmp_path).run(Case(fault, Target(disk="shared")))
    assert result.status == "PASS", result.report()
    assert result.expected is not None and result.expected.outcome == "outage"


@pytest.mark.slow
def test_a_hung_disk_is_noticed_when_the_monitor_times_out(testbed: Testbed, tmp_path: Path) -> None:
    result = Runner(testbed, tmp_path).run(Case("disk_hang", Target(disk="shared")))
    report = result.report()
    assert result.status == "PASS", report
    detection = result.verdicts["detection"]
    assert detection.limit == 27 and detection.measured is not None and detection.measured > 5, report


def test_a_cluster_that_does_not_monitor_its_disk_misses_write_errors(testbed: Testbed, tmp_path: Path) -> None:
    node = testbed.topology.node_names[0]
    testbed.node(node).run(["cibadmin", "--modify", "--xml-text", FS_MONITOR.format("false")], timeout=30)
    try:
        result = Runner(testbed, tmp_path).run(Case("disk_write_errors", Target(disk="shared")))
    finally:
        testbed.node(node).run(["cibadmin", "--modify", "--xml-text", FS_MONITOR.format("true")], timeout=30)
    report = result.report()
    assert result.status == "FAIL", report
    assert result.verdicts["detection"].valid is False, report
