"""The node-side copy and put-back scripts, run for real on this machine with a stand-in `fsfreeze`.

The stand-in only records its calls (a real freeze of a host filesystem is not for a unit test);
everything else — tar, base64, the guard in its own session, sha256sum — is the real thing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.backup.data import copy_out, pack, put_back, unpack
from harness.backup.manifest import digest
from harness.errors import FalloverError
from harness.result import Result
from harness.transport.nsenter import HostTransport


class Node:
    """A node that is this machine, with the stand-in fsfreeze first on its PATH."""

    def __init__(self, bin_dir: Path) -> None:
        self.env = {"PATH": f"{bin_dir}:{os.environ['PATH']}"}

    def run(self, cmd: list[str], *, timeout: float, check: bool = True, env: Mapping[str, str] | None = None,
            input: str | None = None) -> Result:
        return HostTransport("node1").run(cmd, timeout=timeout, check=check, env={**self.env, **(env or {})},
                                          input=input)


class Bed:
    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir

    def node(self, name: str) -> Node:
        return Node(self.bin_dir)


@pytest.fixture
def bed(tmp_path: Path) -> Bed:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    stub = bin_dir / "fsfreeze"
    # --freeze sleeps $FREEZE_SLEEP (a slow copy, as the guard sees it); every call is logged
    stub.write_text(f'#!/bin/sh\necho "$@" >> {tmp_path}/fsfreeze.log\n'
                    f'[ "$1" = --freeze ] && sleep "$(cat {tmp_path}/freeze_sleep 2>/dev/null || echo 0)"\nexit 0\n')
    stub.chmod(0o755)
    return Bed(bin_dir)


def filesystem(root: Path) -> Path:
    (root / "kv").mkdir(parents=True)
    for i in range(20):
        (root / "kv" / f"k{i}").write_text(f"value {i}")
    (root / ".fallover-kv").write_text("marker\n")
    (root / "lost+found").mkdir()
    (root / ".Filesystem_status").mkdir()
    (root / ".Filesystem_status" / "node1").write_text("monitor")
    return root


def calls(tmp_path: Path) -> list[str]:
    log = tmp_path / "fsfreeze.log"
    return log.read_text().splitlines() if log.exists() else []


def test_copy_freezes_copies_thaws_and_leaves_no_guard_behind(tmp_path: Path, bed: Bed) -> None:
    fs = filesystem(tmp_path / "mnt")
    copy = copy_out(bed, "node1", str(fs), guard_s=1)  # type: ignore[arg-type]
    assert calls(tmp_path) == [f"--freeze {fs}", f"--unfreeze {fs}"]
    assert copy.freeze_s is not None and copy.freeze_s >= 0
    files, _ = unpack(copy.archive, tmp_path / "out")
    assert files == 21 and (tmp_path / "out" / "kv" / "k7").read_text() == "value 7"
    assert not (tmp_path / "out" / "lost+found").exists() and not (tmp_path / "out" / ".Filesystem_status").exists()
    time.sleep(1.5)  # past the guard's time: a guard left behind would thaw (and log) once more
    assert calls(tmp_path) == [f"--freeze {fs}", f"--unfreeze {fs}"]


def test_nothing_of_the_guard_is_left_in_the_mountpoint_to_keep_it_busy(tmp_path: Path, bed: Bed) -> None:
    """The guard's `sleep` once outlived it with its working directory in the mountpoint: the next stop of the
    Filesystem resource could not unmount it."""
    fs = filesystem(tmp_path / "mnt")
    copy_out(bed, "node1", str(fs), guard_s=30)  # type: ignore[arg-type]
    inside = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and Path(os.readlink(proc / "cwd")).is_relative_to(fs):
                inside.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode())
        except OSError:
            continue  # gone meanwhile, or not ours to read
    assert inside == []


def test_a_copy_the_guard_had_to_thaw_is_refused_as_inconsistent(tmp_path: Path, bed: Bed) -> None:
    fs = filesystem(tmp_path / "mnt")
    (tmp_path / "freeze_sleep").write_text("2")  # the freeze lasts past the 1 s guard
    with pytest.raises(FalloverError, match="freeze guard thawed .* not a consistent copy"):
        copy_out(bed, "node1", str(fs), guard_s=1)  # type: ignore[arg-type]
    assert calls(tmp_path).count(f"--unfreeze {fs}") == 2  # the guard's, then ours


def test_put_back_replaces_the_data_keeps_the_clusters_own_and_checks_every_file(tmp_path: Path, bed: Bed) -> None:
    src = filesystem(tmp_path / "backup")
    sums = {p.relative_to(src).as_posix(): digest(p) for p in src.rglob("*")
            if p.is_file() and ".Filesystem_status" not in p.parts}
    for p in (src / ".Filesystem_status", src / "lost+found"):
        for f in p.iterdir():
            f.unlink()
        p.rmdir()
    target = filesystem(tmp_path / "mnt")
    (target / "kv" / "k3").write_text("corrupted")
    (target / "kv" / "k4").unlink()
    (target / "kv" / "written-after-the-backup").write_text("x")
    put_back(bed, "node1", str(target), pack(src), sums)  # type: ignore[arg-type]
    assert (target / "kv" / "k3").read_text() == "value 3" and (target / "kv" / "k4").read_text() == "value 4"
    assert not (target / "kv" / "written-after-the-backup").exists()  # a restore is to the backup point
    assert (target / ".Filesystem_status" / "node1").read_text() == "monitor" and (target / "lost+found").is_dir()


def test_put_back_fails_when_the_disk_does_not_hold_what_the_backup_holds(tmp_path: Path, bed: Bed) -> None:
    src = filesystem(tmp_path / "backup")
    sums = {"kv/k1": digest(src / "kv" / "k0")}  # what the manifest says is not what arrives
    with pytest.raises(FalloverError, match=r"do not match the backup: \./kv/k1: FAILED"):
        put_back(bed, "node1", str(filesystem(tmp_path / "mnt")), pack(src / "kv"), sums)  # type: ignore[arg-type]


def test_the_guard_thaws_the_filesystem_when_the_copy_is_killed(tmp_path: Path, bed: Bed) -> None:
    """A harness killed mid-freeze (its command's process group SIGKILLed, as a transport timeout does):
    the guard, in its own session, still thaws the filesystem."""
    import signal
    import subprocess

    from harness.backup.data import FREEZE_AND_COPY

    fs = filesystem(tmp_path / "mnt")
    (tmp_path / "freeze_sleep").write_text("30")  # the freeze call never returns before the kill
    env = {**os.environ, **bed.node("node1").env}
    proc = subprocess.Popen(["sh", "-c", FREEZE_AND_COPY, "sh", str(fs), "1"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while f"--freeze {fs}" not in calls(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 10
    while f"--unfreeze {fs}" not in calls(tmp_path) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert calls(tmp_path) == [f"--freeze {fs}", f"--unfreeze {fs}"]
