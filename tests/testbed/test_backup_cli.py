"""`fallover backup` and `fallover restore` on the embedded cluster, as a user runs them (about 30 s).

The full acceptance, under load and with the data or the configuration lost, is suites/backup.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from harness.drivers import open_driver
from harness.load import REPO
from harness.testbed.base import Testbed

pytestmark = pytest.mark.testbed


def fallover(testbed: Testbed, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args, "--testbed", str(testbed.topology.source)],
                          capture_output=True, text=True, timeout=300, cwd=REPO,
                          env={**os.environ, "PYTHONPATH": str(REPO)}, check=False)


def kv(testbed: Testbed, key: str, value: str | None = None) -> str:
    """PUT (with a value) or GET a key of the sample application, from the client."""
    g = testbed.topology.groups[0]
    url = f"http://{g.service_ip}:{g.application.port}/kv/{key}"
    put = ["-X", "PUT", "--data-binary", value] if value is not None else []
    return testbed.client().run(["curl", "-s", "-f", "-m", "5", *put, url], timeout=15).stdout


def test_backup_restore_and_a_changed_byte_refused(testbed: Testbed, tmp_path: Path) -> None:
    testbed.up()
    key = f"clitest-{uuid.uuid4().hex[:8]}"
    kv(testbed, key, "before")
    r = fallover(testbed, "backup", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "backup of local" in r.stdout and "writes held" in r.stdout and "freezing" in r.stderr
    kv(testbed, key, "after")  # written after the backup: a restore goes back to the backup point

    shutil.copytree(tmp_path / "b", tmp_path / "changed")
    victim = tmp_path / "changed" / "data" / "app" / "kv" / key
    victim.write_bytes(b"bef0re")
    r = fallover(testbed, "restore", str(tmp_path / "changed"))
    assert r.returncode == 2 and r.stderr.strip() == r.stderr.strip().splitlines()[0], r.stderr
    assert f"{victim}: checksum mismatch" in r.stderr
    assert kv(testbed, key) == "after"  # nothing was touched

    r = fallover(testbed, "restore", str(tmp_path / "b"))
    assert r.returncode == 0, r.stderr
    assert "left as it is" in r.stderr and "match the backup" in r.stderr and "RTO" in r.stdout
    assert kv(testbed, key) == "before"
    state = open_driver(testbed).state()
    assert state is not None and state.group_node("app") is not None
    testbed.node(state.group_node("app") or "").run(
        ["rm", "-f", f"{testbed.mountpoint('app')}/kv/{key}"], timeout=10)
