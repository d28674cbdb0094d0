"""One user of a testbed at a time (harness/testbed/claim.py): a second gets one line naming the holder and
exit 2; a holder that dies, even by SIGKILL, leaves no claim behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness.errors import UsageError
from harness.testbed.claim import claim, claim_path
from harness.topology import load_topology

TOPOLOGY = load_topology("testbeds/local.yaml")
HOLD = """
import sys, time
from pathlib import Path
from harness.testbed.claim import claim
from harness.topology import load_topology
with claim(load_topology("testbeds/local.yaml"), "pytest suites/fallover -k power", instance="unit",
           root=Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


@pytest.fixture
def holder(tmp_path: Path):  # type: ignore[no-untyped-def]
    """Another process holding the claim of testbed local, instance unit, under tmp_path."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None and p.stdout.readline() == "held\n"
    yield p
    p.kill()
    p.wait()


def test_a_second_claim_is_refused_naming_the_holder(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with pytest.raises(UsageError) as e, claim(TOPOLOGY, "fallover up", instance="unit", root=tmp_path):
        pass
    msg = str(e.value)
    assert f"PID {holder.pid} (`pytest suites/fallover -k power`) since " in msg
    assert msg.startswith("testbed local (fo-local-unit) is in use by ") and "\n" not in msg


def test_another_instance_is_not_held(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    with claim(TOPOLOGY, "fallover up", instance="gw1", root=tmp_path) as path:
        assert path.name == "fo-local-gw1.claim"


def test_a_killed_holder_leaves_no_claim(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    with claim(TOPOLOGY, "fallover heal", instance="unit", root=tmp_path) as path:
        assert path.read_text().split("\n")[0] == str(os.getpid())


def test_release_removes_the_claim_and_a_nested_claim_is_the_same_one(tmp_path: Path) -> None:
    root = tmp_path / "claims"
    with claim(TOPOLOGY, "fallover up", instance="unit", root=root) as outer:
        with claim(TOPOLOGY, "fallover status", instance="unit", root=root) as inner:
            assert inner == outer
        assert outer.read_text().endswith("\nfallover up\n")  # the inner one's end released nothing
    assert not root.exists()
    assert claim_path(TOPOLOGY, "unit", root) == outer


def test_what_a_holder_starts_works_under_its_claim(tmp_path: Path) -> None:
    """A test that runs `fallover backup` in its session's testbed, or nightly's pytest, is not refused."""
    with claim(TOPOLOGY, "pytest tests", instance="unit", root=tmp_path):
        child = subprocess.run([sys.executable, "-c", HOLD.replace("time.sleep(120)", "pass"), str(tmp_path)],
                               capture_output=True, text=True, timeout=60)
        assert child.returncode == 0 and child.stdout == "held\n", child.stderr
        assert (tmp_path / "fo-local-unit.claim").exists()  # the child's end released nothing
    assert not (tmp_path / "fo-local-unit.claim").exists()


@pytest.mark.parametrize("args", [["heal"], ["inject", "node_power_off", "--node", "node1", "--duration", "1"],
                                  ["down"], ["up"]])
def test_commands_that_change_the_testbed_refuse_a_busy_one(tmp_path: Path, holder: subprocess.Popen[str],
                                                            args: list[str]) -> None:
    state = tmp_path / "state"
    r = subprocess.run([sys.executable, "-m", "harness.cli", *args], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FALLOVER_CLAIM_ROOT": str(tmp_path), "FALLOVER_INSTANCE": "unit",
                            "FALLOVER_STATE_ROOT": str(state)})
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and f"is in use by PID {holder.pid} " in r.stderr
    assert not state.exists()  # nothing touched


def test_a_dry_run_and_a_look_take_no_claim(tmp_path: Path, holder: subprocess.Popen[str]) -> None:
    r = subprocess.run([sys.executable, "-m", "harness.cli", "inject", "node_power_off", "--node", "node1",
                        "--dry-run"], capture_output=True, text=True, timeout=60,
                       env={**os.environ, "FALLOVER_CLAIM_ROOT": str(tmp_path), "FALLOVER_INSTANCE": "unit",
                            "FALLOVER_STATE_ROOT": str(tmp_path / "state")})
    assert r.returncode == 0 and "would inject node_power_off on node1" in r.stderr, r.stderr  # rich: stderr
