"""Cluster-consistency audits and the log pipeline on the embedded cluster, whole and deliberately broken.

On the whole cluster every check passes; a resource left unmanaged, a configuration changed on one
node only, and a log read from the wrong place each turn their check to a finding (or unknown).
About 1 minute.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.audits.cluster import audit_cluster
from harness.audits.logs import LogAudit
from harness.drivers import open_driver
from harness.testbed.base import LogFile, Testbed

pytestmark = pytest.mark.testbed

PROP = "fallover-audit-probe"


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
def diverged(cluster: object, testbed: Testbed) -> Iterator[str]:
    """A cluster property written into one node's CIB only (`--local`), as a node that missed an update."""
    node = testbed.topology.node_names[-1]
    xml = f'<cluster_property_set id="cib-bootstrap-options"><nvpair id="{PROP}" name="{PROP}" value="1"/>' \
          f'</cluster_property_set>'
    testbed.node(node).run(["cibadmin", "--modify", "--local", "--scope", "crm_config", "--xml-text", xml],
                           timeout=30)
    try:
        yield node
    finally:  # the cluster's own copy, pushed to every node again
        testbed.node(testbed.topology.node_names[0]).run(["cibadmin", "--sync"], timeout=30, check=False)
        testbed.node(node).run(["cibadmin", "--delete", "--local", "--xml-text", f'<nvpair id="{PROP}"/>'],
                               timeout=30, check=False)


def test_a_configuration_changed_on_one_node_only_is_a_finding(diverged: str, testbed: Testbed) -> None:
    c = by_name(testbed)["cib"]
    assert c.valid is False and f"{diverged} differs" in c.detail and PROP in c.detail, c  # type: ignore[attr-defined]


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
