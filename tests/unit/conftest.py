"""Fixtures that modules split by concept share: the fault checks' fake testbed and its switch
(test_fault_checks*.py), the OCF agent and a daemon for it to start (test_ocf_agent*.py).

None is autouse but `own_claims`: a module asks for `quick` with `pytestmark = pytest.mark.usefixtures("quick")`.
"""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest
from fake_testbed import FakeTestbed
from ocf_agent import DAEMON, Agent

from harness.faults import base


@pytest.fixture(autouse=True)
def own_claims(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests that run `fallover heal` or `restore` (in-process or as a child) claim a testbed of their
    own: a real session on this machine holding the default testbed must not turn their exit 2 into "in use"."""
    monkeypatch.setenv("FALLOVER_CLAIM_ROOT", str(tmp_path_factory.mktemp("claims")))


@pytest.fixture
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    """Verifications wait a moment for effects to show; a missing one need not be awaited for 5 s here."""
    monkeypatch.setattr(base, "SETTLE_S", 0.2)


@pytest.fixture
def tb(tmp_path: Path) -> FakeTestbed:
    return FakeTestbed(tmp_path)


@pytest.fixture
def switch(tb: FakeTestbed) -> dict[str, Any]:
    """The switch as the network faults see it: carrier per adapter, networks, rule tables."""
    return tb.net



@pytest.fixture
def agent(tmp_path):
    a = Agent(tmp_path)
    yield a
    a.kill_leftover()


@pytest.fixture
def daemon(tmp_path):
    """A start command's daemon; every process whose command line names it is killed afterwards."""
    path = tmp_path / "daemon.py"
    path.write_text(DAEMON)
    yield "/usr/bin/python3 %s" % path
    for _ in range(3):
        for pid in os.listdir("/proc"):
            try:
                cmd = Path("/proc/%s/cmdline" % pid).read_bytes()
            except OSError:
                continue
            if str(path).encode() in cmd and pid.isdigit():
                try:
                    os.kill(int(pid), signal.SIGKILL)
                except ProcessLookupError:
                    pass

