"""Smoke: neither the declared cluster nor the running one has a single point of failure the audit calls an error."""

from __future__ import annotations

import warnings
from collections.abc import Callable

import pytest

from harness.audits.spof import LIVE_CHECKS, Finding, SpofWarning, audit_declared, audit_live
from harness.drivers.pacemaker import PacemakerDriver
from harness.testbed.base import Testbed
from harness.topology import Topology, load_topology


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # Declared findings are known from the topology file alone, so they become one test each at
    # collection; live ones would need the cluster up while collecting, so tests are per check name.
    if "declared_id" in metafunc.fixturenames:
        ids = [f.id for f in audit_declared(load_topology(metafunc.config.getoption("--testbed")))]
        metafunc.parametrize("declared_id", ids, ids=ids)
    if "live_check" in metafunc.fixturenames:
        metafunc.parametrize("live_check", LIVE_CHECKS, ids=LIVE_CHECKS)


def judge(findings: list[Finding], record_property: Callable[[str, object], None]) -> None:
    """Fail with every error's detail; report warnings (pytest's summary, junit properties) without failing."""
    for f in findings:
        record_property(f.id, str(f))
        if not f.ok and f.severity == "warning":
            warnings.warn(SpofWarning(f.detail), stacklevel=2)
    errors = [f.detail for f in findings if f.failed]
    if errors:
        pytest.fail("\n".join(errors), pytrace=False)


def test_declared_spof(declared_id: str, topology: Topology,
                       record_property: Callable[[str, object], None]) -> None:
    found = [f for f in audit_declared(topology) if f.id == declared_id]
    assert found, f"{declared_id}: no such finding for {topology.source}"
    judge(found, record_property)


@pytest.mark.testbed
def test_live_spof(live_check: str, testbed: Testbed, cluster: PacemakerDriver,
                   record_property: Callable[[str, object], None]) -> None:
    found = audit_live(testbed, cluster, checks=[live_check])
    assert found, f"{live_check}: the audit returned no finding at all"
    judge(found, record_property)
