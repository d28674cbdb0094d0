"""Cluster-consistency audits and the log pipeline on the embedded cluster, whole and deliberately broken.

On the whole cluster every check passes; a resource left unmanaged, a configuration changed in one
partition only (of a cluster without fencing, split in two), and a log read from the wrong place each
turn their check to a finding (or unknown). About 2 minutes (one testbed of its own).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.audits.cluster import audit_cluster
from harness.audits.logs import LogAudit
from harness.drivers import open_driver
from harness.faults import Nemesis
from harness.testbed.base import LogFile, Testbed
from harness.testbed.local import LocalTestbed
from harness.wait import wait_until
from own_testbed import separate_testbed

pytestmark = pytest.mark.testbed

PROP = "fallover-audit-probe"
BROKEN = Path(__file__).resolve().parent.parent / "data" / "broken"


def by_name(testbed: Testbed) -> dict[str, object]:
    result = audit_cluster(testbed, open_driver(testbed))
    return {c.name: c for c in result.checks} | {"_seconds": result.seconds}


def test_a_whole_cluster_passes_every_audit(cluster: object, testbed: Testbed) -> None:
    checks = by_name(testbed)
    assert all(c.valid is True for k, c in checks.items() if k != "_seconds"), checks  # type: ignore[union-attr]
    print(f"consistency audit: {checks['_seconds']} s")


@pytest.fixture
def unmanaged(cluster: object, testbed: Testbed) -> Iterator[None]:
    node = testbed.topology.node_names[0]
    argv = ["crm_resource", "--resource", "app-ip", "--meta", "--set-parameter", "is-managed", "--parameter-value"]
    testbed.node(node).run([*argv, "false"], timeout=30)
    try:
        yield
    finally:
        testbed.node(node).run([*argv, "true"], timeout=30)


def test_an_unmanaged_resource_is_a_finding(unmanaged: None, testbed: Testbed) -> None:
    c = by_name(testbed)["managed"]
    assert c.valid is False and "app-ip unmanaged" in c.detail, c  # type: ignore[attr-defined]


@pytest.fixture
def split_cluster() -> Iterator[LocalTestbed]:
    """The `nofence` cluster (fencing off, quorum ignored: deliberately broken) with node3 partitioned away: both
    sides run on, each with its own DC, and a change made on one side never reaches the other."""
    with separate_testbed(BROKEN / "nofence.yaml") as tb:
        driver = open_driver(tb)
        with Nemesis(tb).inject("partition", nodes=("node3",)):
            wait_until(lambda: (v := driver.view("node3")) is not None and v.online == ["node3"] and v.dc == "node3",
                       timeout=60, interval=0.5, what="node3 alone in a partition of its own, as its DC")
            tb.node("node1").run(["crm_attribute", "--type", "crm_config", "--name", PROP, "--update", "1"],
                                 timeout=30)
            yield tb


def test_a_configuration_changed_in_one_partition_only_is_a_finding(split_cluster: LocalTestbed) -> None:
    checks = by_name(split_cluster)
    cib, dc = checks["cib"], checks["dc"]
    assert cib.valid is False and "node3 differs" in cib.detail and PROP in cib.detail, cib  # type: ignore[attr-defined]
    # two partitions, each with exactly one DC of its own: that much is as CTS wants it
    assert dc.valid is True and "2 partition(s)" in dc.detail and "node3 with DC node3" in dc.detail, dc  # type: ignore[attr-defined]


def test_the_log_pipeline_works_and_a_log_read_from_the_wrong_place_is_unknown(cluster: object,
                                                                                testbed: Testbed) -> None:
    audit = LogAudit(testbed)
    audit.mark()
    t0 = time.monotonic()
    assert audit.check_pipeline() == []
    print(f"log pipeline check: {time.monotonic() - t0:.2f} s")
    assert audit.result().status == "ok"

    class Misread:  # the audit reads node2's corosync log where node1's should be
        def __init__(self, tb: Testbed) -> None:
            self.tb = tb

        def __getattr__(self, name: str) -> object:
            return getattr(self.tb, name)

        def read_log(self, log: LogFile, start: int) -> tuple[int, bytes]:
            if log.node == "node1" and log.path.endswith("corosync.log"):
                log = LogFile("node2", log.path, log.required)
            return self.tb.read_log(log, start)

        def log_size(self, log: LogFile) -> tuple[int, int]:
            if log.node == "node1" and log.path.endswith("corosync.log"):
                log = LogFile("node2", log.path, log.required)
            return self.tb.log_size(log)

    wrong = LogAudit(Misread(testbed))  # type: ignore[arg-type]
    wrong.mark()
    missed = wrong.check_pipeline(timeout=2)
    assert [m.split(": ")[0] for m in missed] == ["node1:/var/log/cluster/corosync.log"], missed
    assert wrong.result().status == "unknown"
