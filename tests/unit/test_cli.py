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
    bad.write_text(Path("testbeds/local.yaml").read_text().replace("policy: cascading", "policy: sticky")
                   .replace("name: local", "name: badcli"))  # its own names: other testbeds may come and go meanwhile
    state_root = tmp_path / "state"
    before = namespaces()
    r = run("up", "--testbed", str(bad), env={"FALLOVER_STATE_ROOT": str(state_root)})
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert str(bad) in r.stderr and "groups[0].policy" in r.stderr
    assert not state_root.exists() and not [n for n in namespaces() - before if n.startswith("fo-badcli")]


def test_exec_unknown_target_exits_2() -> None:
    r = run("exec", "node7", "--", "true")
    assert r.returncode == 2 and "node7" in r.stderr


def test_exec_options_between_the_target_and_the_command_count(tmp_path: Path) -> None:
    missing = tmp_path / "vms.yaml"
    r = run("exec", "node1", "--testbed", str(missing), "--", "true")  # once ran on the embedded testbed
    assert r.returncode == 2 and str(missing) in r.stderr, r.stderr
    r = run("exec", "node1", "--bogus", "--", "true")
    assert r.returncode == 2 and "'--bogus' before `--` is not an option of exec" in r.stderr, r.stderr


@pytest.mark.parametrize("args, needle", [
    (["inject", "meteor_strike"], "unknown fault 'meteor_strike'"),
    (["inject", "adapter_down", "--node", "node9", "--network", "service"], "unknown node 'node9'"),
    (["inject", "adapter_down", "--node", "node1", "--network", "wifi"], "unknown network 'wifi'"),
    (["inject", "adapter_down", "--node", "node1"], "needs --network"),
    (["inject", "packet_loss", "--node", "node1", "--network", "service", "--rate", "2"], "--rate"),
    (["inject", "partition", "--node", "node1", "--node", "node2", "--node", "node3"], "at least one node"),
])
def test_inject_refuses_bad_faults_and_targets_with_exit_2(tmp_path: Path, args: list[str], needle: str) -> None:
    state_root = tmp_path / "state"
    r = run(*args, env={"FALLOVER_STATE_ROOT": str(state_root)})
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not state_root.exists()  # nothing touched, not even a journal


@pytest.mark.parametrize("dry_run", [[], ["--dry-run"]])
def test_inject_on_a_testbed_whose_disk_is_not_mounted_fails_in_one_line_and_journals_nothing(
        tmp_path: Path, dry_run: list[str]) -> None:
    """A built testbed (up.json) whose FUSE disk layer is gone: disk_pull would do nothing, so it is refused."""
    state = tmp_path / "state" / "fo-local-unit"
    state.mkdir(parents=True)
    (state / "up.json").write_text("{}")
    r = run("inject", "disk_pull", "--disk", "shared", *dry_run,
            env={"FALLOVER_STATE_ROOT": str(tmp_path / "state"), "FALLOVER_INSTANCE": "unit"})
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().splitlines() == [
        "fallover: error: disk_pull on shared: disk shared is not attached (its FUSE layer is not mounted; "
        "is the testbed up?)"]
    assert sorted(p.name for p in state.iterdir()) == ["up.json"]  # no journal, no lock, nothing else


def test_heal_that_cannot_heal_an_entry_says_so_in_one_line_and_keeps_it(tmp_path: Path) -> None:
    from harness.faults.journal import Entry, Journal

    state = tmp_path / "state" / "fo-local-unit"
    journal = Journal(state / "faults.journal")
    journal.record(Entry(fault="meteor_strike", target={"node": "node3"}))
    r = run("heal", env={"FALLOVER_STATE_ROOT": str(tmp_path / "state"), "FALLOVER_INSTANCE": "unit"})
    assert r.returncode == 1, r.stderr
    assert r.stderr.strip().splitlines() == [
        f"fallover: heal failed: healing meteor_strike on node3 failed: unknown fault in journal {journal.path} "
        "(written by another version?); the journal keeps it for `fallover heal`"]
    assert [e.fault for e in journal.entries()] == ["meteor_strike"]


def test_plan_lists_the_cases_and_what_the_stack_cannot_do_with_the_reason() -> None:
    r = run("plan", "--testbed", "testbeds/local-keepalived.yaml")
    assert r.returncode == 0, r.stderr
    out = " ".join(r.stdout.split())  # rich wraps long lines
    assert "node_power_off-node1" in out and "app falls over from node1 to node2" in out
    assert "group_move-node2-app left out of the plan: it needs resource_manager" in out
    assert "corosync_kill-node1 left out of the plan: it needs pacemaker" in out
    assert "keepalived has no resource manager" in out


def test_inject_into_a_cluster_fallover_did_not_build_needs_allow_disruptive(tmp_path: Path) -> None:
    import yaml

    raw = yaml.safe_load(Path("testbeds/local-ssh.yaml").read_text())
    raw["name"], raw["groups"][0]["mount"] = "theirs", "/srv/app"
    raw["ssh"] = {"hosts": {n: {"host": f"10.78.9.{11 + i}"} for i, n in enumerate(("node1", "node2", "node3"))}}
    theirs = tmp_path / "theirs.yaml"
    theirs.write_text(yaml.safe_dump(raw))
    r = run("inject", "node_power_off", "--node", "node1", "--testbed", str(theirs))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [r.stderr.strip()]
    assert "--allow-disruptive" in r.stderr and str(theirs) in r.stderr
