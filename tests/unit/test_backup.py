"""Backup directories and their manifest: a changed byte is refused naming the file, before anything is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
from fake_testbed import FakeTestbed

from harness.backup.manifest import (
    CIB,
    MANIFEST,
    META,
    BackupMeta,
    GroupData,
    verify,
    write_manifest,
    write_meta,
)
from harness.backup.procedure import check_backup, restore
from harness.errors import BackupRefused
from harness.topology import DEFAULT_TESTBED, load_topology


def make_backup(root: Path, topology: str = "local") -> Path:
    """A backup directory as `fallover backup` writes it: data, configuration, description, manifest."""
    kv = root / "data" / "app" / "kv"
    kv.mkdir(parents=True)
    for i in range(5):
        (kv / f"run-1-{i}").write_text(f"value-{i}")
    (root / "data" / "app" / ".fallover-kv").write_text("fallover kv store\n")
    (root / "cluster").mkdir()
    (root / CIB).write_text('<cib epoch="5"><configuration><resources/></configuration><status/></cib>')
    write_meta(root, BackupMeta(topology=topology, stack="pacemaker", created_wall=1.0, config=CIB,
                                groups={"app": GroupData("node1", "/mnt/app", 6, 58, point_wall=1.0, freeze_s=0.1)}))
    write_manifest(root)
    return root


def flip_one_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def test_manifest_covers_every_file_and_sha256sum_can_check_it(tmp_path: Path) -> None:
    root = make_backup(tmp_path / "b")
    lines = (root / MANIFEST).read_text().splitlines()
    assert {line.split("  ", 1)[1] for line in lines} == {
        META, CIB, "data/app/.fallover-kv", *(f"data/app/kv/run-1-{i}" for i in range(5))}
    assert verify(root)["data/app/kv/run-1-0"] == lines[[l.endswith("run-1-0") for l in lines].index(True)][:64]
    r = subprocess.run(["sha256sum", "--strict", "-c", MANIFEST], cwd=root, capture_output=True, text=True,
                       check=False)
    assert r.returncode == 0, r.stdout + r.stderr  # the format an operator checks by hand


@pytest.mark.parametrize("victim", ["data/app/kv/run-1-3", META, CIB])
def test_one_changed_byte_is_refused_naming_the_file(tmp_path: Path, victim: str) -> None:
    root = make_backup(tmp_path / "b")
    flip_one_byte(root / victim)
    with pytest.raises(BackupRefused) as e:
        verify(root)
    assert str(e.value).startswith(f"{root / victim}: checksum mismatch"), e.value
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("damage, needle", [
    (lambda r: (r / "data/app/kv/run-1-2").unlink(), "data/app/kv/run-1-2: missing"),
    (lambda r: (r / "data/app/kv/intruder").write_text("x"), "data/app/kv/intruder: not in the manifest"),
    (lambda r: (r / MANIFEST).unlink(), f"{MANIFEST}: no manifest"),
    (lambda r: (r / MANIFEST).write_text("nonsense\n"), f"{MANIFEST}:1: not a manifest line"),
    (lambda r: (r / MANIFEST).write_text(f"{'0' * 64}  ../../etc/passwd\n"), f"{MANIFEST}:1: not a manifest line"),
])
def test_incomplete_or_altered_backups_are_refused(tmp_path: Path, damage, needle: str) -> None:  # type: ignore[no-untyped-def]
    root = make_backup(tmp_path / "b")
    damage(root)
    with pytest.raises(BackupRefused, match=needle.replace(".", r"\.")):
        verify(root)


def test_another_clusters_backup_is_refused(tmp_path: Path) -> None:
    root = make_backup(tmp_path / "b", topology="prod-db")
    with pytest.raises(BackupRefused, match=r"backup\.json: a backup of cluster 'prod-db', not of 'local'"):
        check_backup(root, load_topology(DEFAULT_TESTBED))


def test_restore_of_a_changed_backup_touches_nothing(tmp_path: Path) -> None:
    tb = FakeTestbed(tmp_path / "state")
    root = make_backup(tmp_path / "b")
    flip_one_byte(root / "data/app/kv/run-1-4")
    driver = mock.Mock()
    with pytest.raises(BackupRefused, match="run-1-4: checksum mismatch"):
        restore(tb, driver, root)
    assert tb.commands == [] and driver.mock_calls == []


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **env}, check=False)


def test_cli_restore_refuses_a_changed_byte_with_one_line_and_exit_2(tmp_path: Path) -> None:
    root = make_backup(tmp_path / "b")
    flip_one_byte(root / "data/app/kv/run-1-1")
    state = tmp_path / "state"
    r = cli("restore", str(root), env={"FALLOVER_STATE_ROOT": str(state)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert f"{root}/data/app/kv/run-1-1: checksum mismatch" in r.stderr
    assert not state.exists()  # the testbed was not even opened


def test_cli_backup_refuses_a_directory_in_use_and_restore_a_missing_one(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "keep").write_text("mine")
    state = {"FALLOVER_STATE_ROOT": str(tmp_path / "state")}
    r = cli("backup", str(used), env=state)
    assert r.returncode == 2 and f"{used}: exists and is not an empty directory" in r.stderr
    assert (used / "keep").read_text() == "mine"
    r = cli("restore", str(tmp_path / "nowhere"), env=state)
    assert r.returncode == 2 and "nowhere: no such backup directory" in r.stderr
    r = cli("restore", str(make_backup(tmp_path / "b")), "--only", "everything", env=state)
    assert r.returncode == 2 and "--only" in r.stderr


def test_backup_description_must_be_ours(tmp_path: Path) -> None:
    root = make_backup(tmp_path / "b")
    raw = json.loads((root / META).read_text())
    raw["format"] = 99
    (root / META).write_text(json.dumps(raw))
    write_manifest(root)  # a consistent, but foreign, backup
    with pytest.raises(BackupRefused, match="format 99"):
        check_backup(root, load_topology(DEFAULT_TESTBED))
