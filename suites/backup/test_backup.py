"""Backup and restore under load: a consistent backup, a loss, a restore, and the cluster whole again.

`test_backup_restore[data]`: the application's files are destroyed; `[config]`: the cluster
configuration is erased. Each is restored from a backup taken under load (`fallover backup`'s
procedure), then judged: every write acknowledged before the backup point is back with its
value, the configuration equals the saved one, the cluster is fully redundant, and backup time,
restore time (RTO) and data-loss window (RPO) are within `sla.max_backup_s`, `max_restore_s`
and `max_rpo_s`. `test_changed_byte_refused`: `fallover restore` of a backup with one changed
byte exits 2 naming the file, and touches nothing. Each case's results land in
`reports/<run-id>/backup/<case>.json` (and its evidence beside it).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.backup.case import BackupCase
from harness.backup.procedure import NEEDS
from harness.pytest_plugin import assert_case, load_users
from harness.testbed.base import Testbed

pytestmark = pytest.mark.testbed


@pytest.fixture
def backup_case(testbed: Testbed, run_dir: Path, pytestconfig: pytest.Config) -> BackupCase:
    case = BackupCase(testbed, run_dir, users=load_users(testbed, pytestconfig),
                      log=_logger(pytestconfig))
    lacks = {n: why for n in NEEDS if (why := case.driver.capabilities().get(n)) is not None}
    if lacks:  # said, with the reason, in the summary: never a silent skip
        pytest.skip(f"backup and restore need {', '.join(lacks)}: {'; '.join(lacks.values())}")
    return case


def _logger(config: pytest.Config):  # type: ignore[no-untyped-def]
    reporter = config.pluginmanager.get_plugin("terminalreporter")

    def log(msg: str) -> None:
        if reporter is not None and config.getoption("verbose") > 1:
            reporter.write_line(f"[backup] {msg}")

    return log


@pytest.mark.disruptive
@pytest.mark.parametrize("kind", ["data", "config"])
def test_backup_restore(kind: str, backup_case: BackupCase) -> None:
    assert_case(backup_case.run(kind))  # type: ignore[arg-type]


def test_changed_byte_refused(backup_case: BackupCase) -> None:
    assert_case(backup_case.run_refusal())
