"""CLI input errors: one line, exit status 2, nothing touched."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

FALLOVER = [sys.executable, "-m", "harness.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*FALLOVER, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def namespaces() -> set[str]:
    return set(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else set()


@pytest.mark.parametrize("args", [["frobnicate"], ["up", "--no-such-flag"], ["status", "--json", "extra"]])
def test_bad_flags_exit_2_with_one_line(args: list[str]) -> None:
    r = run(*args)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_bad_topology_exits_2_names_file_and_field_and_creates_nothing(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(Path("testbeds/local.yaml").read_text().replace("policy: cascading", "policy: sticky"))
    state_root = tmp_path / "state"
    before = namespaces()
    r = run("up", "--testbed", str(bad), env={"FALLOVER_STATE_ROOT": str(state_root)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert str(bad) in r.stderr and "groups[0].policy" in r.stderr
    assert not state_root.exists() and namespaces() == before


def test_exec_unknown_target_exits_2() -> None:
    r = run("exec", "node7", "--", "true")
    assert r.returncode == 2 and "node7" in r.stderr
