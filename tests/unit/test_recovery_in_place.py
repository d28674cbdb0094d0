"""Recovery in place (issue 14, item 3): the topology declares the threshold and the timeout, the CIB carries
them, the plan expects accordingly, and the fail_counts verdict judges what the faults recorded."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from harness.checkers.recovery import check_fail_counts
from harness.checkers.base import Context
from harness.errors import TopologyError
from harness.faults import Target
from harness.plan import Case, expect, plan
from harness.testbed import clusterconf
from harness.testbed.layout import Layout
from harness.timeline import TEST_MARK, Timeline
from harness.topology import DEFAULT_TESTBED, load_topology

ROOT = Path(__file__).resolve().parent.parent.parent
RECOVERY = load_topology(ROOT / "testbeds" / "local-recovery.yaml")
CAPS = {k: None for k in ("resource_manager", "pacemaker", "spawn", "power", "quorum")}


def test_the_cib_carries_the_declared_threshold_and_timeout(tmp_path: Path) -> None:
    xml = clusterconf.cib_xml(Layout(RECOVERY, instance="unit", state_root=tmp_path), clusterconf.empty_cib())
    meta = {nv.get("name"): nv.get("value") for nv in ET.fromstring(xml).iterfind(".//group/meta_attributes/nvpair")}
    assert meta == {"migration-threshold": "3", "failure-timeout": "20s"}
    default = clusterconf.cib_xml(Layout(load_topology(DEFAULT_TESTBED), instance="unit", state_root=tmp_path),
                                  clusterconf.empty_cib())
    assert ET.fromstring(default).find(".//group/meta_attributes") is None  # rsc_defaults' threshold 1 holds


def test_a_bad_threshold_is_one_line_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "testbeds" / "local-recovery.yaml").read_text().replace("migration_threshold: 3",
                                                                                  "migration_threshold: 0"))
    with pytest.raises(TopologyError, match=r"bad.yaml: groups\[0\].migration_threshold: Input should be greater"):
        load_topology(bad)


def test_the_plan_expects_restarts_in_place_then_a_move_then_expiry() -> None:
    def e(fault: str, **target: Any) -> tuple[str, str | None]:
        x = expect(RECOVERY, Case(fault, Target(**target)), {"app": "node1"})[0]
        return x.outcome, x.takeover

    assert e("app_kill", group="app") == ("stay", None)
    assert e("app_kill_threshold", group="app") == ("fallover", "node2")
    assert e("app_failure_expiry", group="app") == ("stay", None)
    cases = {c.id: c for c in plan(RECOVERY, ["app_kill_threshold", "app_failure_expiry", "app_start_fail"],
                                   capabilities=CAPS)}
    assert set(cases) == {"app_kill_threshold-app", "app_failure_expiry-app", "app_start_fail-node2-app"}
    assert cases["app_start_fail-node2-app"].trigger == "app_kill_threshold"  # app_kill alone no longer moves it


def ctx(*marks: tuple[str, dict[str, Any]]) -> Context:
    t = Timeline()
    for i, (label, data) in enumerate(marks):
        t.add(TEST_MARK, None, mono=float(i), data=data, label=label)
    return Context(t, (), RECOVERY)


def test_fail_counts_pass_when_the_count_rises_in_place_and_expires() -> None:
    v = check_fail_counts(ctx(("fail count", {"kill": 1, "node": "node1", "home": "node1", "value": 1}),
                              ("fail count", {"kill": 2, "node": "node1", "home": "node1", "value": 2})))
    assert v.valid is True and "1 → node1, count 1, 2 → node1, count 2" in v.explanation
    v = check_fail_counts(ctx(("fail count", {"kill": 1, "node": "node1", "home": "node1", "value": 1}),
                              ("fail count expired", {"node": "node1", "value": 0, "after_s": 21.5,
                                                      "failure_timeout_s": 20})))
    assert v.valid is True and "expired after 21.5 s (failure-timeout 20 s)" in v.explanation


@pytest.mark.parametrize("marks, words", [
    ([("fail count", {"kill": 1, "node": "node2", "home": "node1", "value": 0, "on_home": 1})],
     "failure 1 moved the group from node1 to node2 before the migration threshold (fail count on node1: 1)"),
    ([("fail count", {"kill": 1, "node": "node1", "home": "node1", "value": 0})],
     "after failure 1 the fail count on node1 is 0, not 1"),
    ([("fail count", {"kill": 1, "node": "node1", "home": "node1", "value": 1}),
      ("fail count expired", {"node": "node1", "value": 1, "after_s": 35, "failure_timeout_s": 20})],
     "the fail count on node1 still reads 1 35 s after the failure (failure-timeout 20 s)"),
])
def test_fail_counts_fail_and_say_why(marks: list[Any], words: str) -> None:
    v = check_fail_counts(ctx(*marks))
    assert v.valid is False and words in v.explanation, v.explanation


def test_fail_counts_are_not_judged_elsewhere() -> None:
    assert check_fail_counts(ctx()).judged is False
