"""The runner end to end: a node powered off under load, judged by the checkers; cascading vs rotating."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.faults import Target
from harness.plan import Case
from harness.probe import load_samples, outages
from harness.runner import Runner
from harness.testbed.base import Testbed
from harness.testbed.local import LocalTestbed
from own_testbed import separate_testbed

pytestmark = pytest.mark.testbed

ROTATING = Path(__file__).resolve().parents[2] / "testbeds" / "local-rotating.yaml"


def test_power_off_under_load_verdicts_match_the_probe(testbed: Testbed, tmp_path: Path) -> None:
    result = Runner(testbed, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert result.passed, result.report()
    # the checkers' outage is the probe's own longest run of failures, to the millisecond
    runs = outages(load_samples(result.run_dir / "probe.jsonl"))
    longest = max(end - start for start, end, _ in runs if end is not None)
    assert result.verdicts["outage"].measured == pytest.approx(longest, abs=0.001)
    # and the fallover ended when the takeover node answered: after the outage began, not before
    assert 0 < float(result.verdicts["fallover"].measured) <= longest + 0.5  # type: ignore[arg-type]
    assert {"timeline.json", "verdicts.json", "report.txt", "timeline.svg", "load.jsonl", "recovery.json"} <= \
        {p.name for p in result.run_dir.iterdir()}
    # the runbook of this run is what the heal and the recovery really did: power on, then waits until whole
    from harness.report.runbook import build

    (procedure,) = build(result.run_dir.parent).procedures
    assert procedure.restored and procedure.failure_type == "node_power_off", procedure
    done = [(s.phase, s.kind, s.description) for s in procedure.steps]
    assert ("heal", "action", "heal node_power_off on node1") in done, done
    assert ("heal", "action", "power on node1") in done, done
    assert any(p == "operator recovery" and k == "wait" and "reached" in d for p, k, d in done), done


@pytest.fixture
def rotating() -> Iterator[LocalTestbed]:
    with separate_testbed(ROTATING) as tb:
        yield tb


def test_a_rotating_group_stays_where_it_fell_over_to(rotating: LocalTestbed, tmp_path: Path) -> None:
    result = Runner(rotating, tmp_path).run(Case("node_power_off", Target(node="node1")))
    assert result.passed, result.report()
    policy = result.verdicts["policy"]
    assert policy.valid is True and "rotating" in policy.explanation and "node2" in policy.explanation, \
        policy.explanation


def test_a_bug_of_ours_mid_case_is_an_error_with_the_evidence_saved(testbed: Testbed, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """A harness error after the inject: the fault is still healed, the case is an ERROR (not a FAIL of the
    cluster), and the timeline, verdicts and report are written with the error named in one line."""
    def broken_recovery(self: Runner, group: str, prefix: str) -> None:
        raise TypeError("a bug of ours")

    monkeypatch.setattr(Runner, "_forget_keys", broken_recovery)
    result = Runner(testbed, tmp_path, users=2).run(Case("adapter_down", Target(node="node1", network="service")))
    report = result.report()
    assert result.status == "ERROR", report
    assert "forget this case's keys: harness error TypeError: a bug of ours" in report
    assert "Traceback" not in report and "Traceback" in (result.run_dir / "harness-error.txt").read_text()
    for name in ("timeline.json", "verdicts.json", "report.txt"):
        assert (result.run_dir / name).is_file()
    assert result.verdicts["fallover"].valid is True, report  # the cluster itself was judged all the same
    from harness.faults.journal import Journal

    assert Journal(testbed.layout.journal).entries() == []  # type: ignore[attr-defined]  # healed
