"""Fixtures the fault-check modules share (test_fault_checks*.py): a fake testbed and its switch.

None is autouse: a module asks for `quick` with `pytestmark = pytest.mark.usefixtures("quick")`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fake_testbed import FakeTestbed

from harness.faults import base


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

