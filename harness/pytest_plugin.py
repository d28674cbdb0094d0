"""fallover's pytest plugin: testbed options and the fixtures acceptance suites are written with."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.drivers.pacemaker import PacemakerDriver
from harness.testbed.base import Testbed
from harness.topology import DEFAULT_TESTBED, Topology, load_topology


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fallover", "fallover HA acceptance testing")
    group.addoption("--testbed", default=os.environ.get("FALLOVER_TESTBED", str(DEFAULT_TESTBED)),
                    help="topology/testbed YAML (default: the embedded testbeds/local.yaml)")
    group.addoption("--keep-testbed", action="store_true",
                    help="leave the testbed running after the session (faster reruns, debugging)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs root and the embedded testbed (real Pacemaker/Corosync)")


@pytest.fixture(scope="session")
def topology(pytestconfig: pytest.Config) -> Topology:
    """The declared cluster under test."""
    return load_topology(Path(pytestconfig.getoption("--testbed")))


@pytest.fixture(scope="session")
def testbed(topology: Topology, pytestconfig: pytest.Config) -> Iterator[Testbed]:
    """The cluster's machines, brought up once per session (one per xdist worker) and torn down after."""
    from harness.testbed import open_testbed

    tb = open_testbed(topology)
    reporter = pytestconfig.pluginmanager.get_plugin("terminalreporter")

    def progress(msg: str) -> None:
        if reporter is not None and pytestconfig.getoption("verbose") > 0:
            reporter.write_line(f"[testbed] {msg}")

    tb.up(progress=progress)
    try:
        yield tb
    finally:
        if not pytestconfig.getoption("--keep-testbed"):
            tb.down()


@pytest.fixture
def cluster(testbed: Testbed) -> PacemakerDriver:
    """The cluster driver, on a cluster that is whole again (nodes powered on, groups where they belong)."""
    testbed.up()
    return PacemakerDriver(testbed)
