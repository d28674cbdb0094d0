"""A saved run written the way a live run writes it (same save path, same checkers), for the report tests."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import yaml
from checker_history import history, probe, req

from harness.case_result import CaseResult, save_evidence
from harness.checkers import CHECKERS, Verdict, run_all
from harness.checkers.recorded import context_of
from harness.faults.base import Target
from harness.plan import Case, Expected
from harness.runner import ASSERTED
from harness.timeline import Request, Timeline
from harness.topology import Topology, load_topology

TOPOLOGY = {
    "name": "unit", "nodes": [{"name": "node1"}, {"name": "node2"}, {"name": "node3"}],
    "networks": [{"name": "service", "role": "service", "subnet": "10.77.1.0/24"}],
    "disks": [{"name": "shared"}],
    "groups": [{"name": "app", "service_ip": "10.77.1.100", "network": "service", "disk": "shared",
                "nodes": ["node1", "node2", "node3"], "policy": "cascading"}],
    "sla": {"max_detection_s": 5, "max_fallover_s": 15, "max_outage_s": 15, "max_recovery_s": 30}}
EXPECTED = Expected("app", "fallover", "node1", "node2", "node1 leaves the cluster and is fenced")


def writes(keys: int = 5) -> list[Request]:
    """Acknowledged puts before the fault, each read back intact after recovery."""
    puts = [req(-1.5 + i * 0.1, "put", key=f"k{i}", value=f"v{i}") for i in range(keys)]
    return puts + [req(19 + i * 0.01, "verify", key=f"k{i}", value=f"v{i}") for i in range(keys)]


def write_case(run_dir: Path, topology: Topology, timeline: Timeline, requests: Sequence[Request], *,
               name: str = "node_power_off-node1", logs: Verdict | None = None) -> CaseResult:
    """Judge ``timeline`` as the runner does and save it with the runner's own save path."""
    fault = name.rsplit("-", 1)[0]
    timeline.meta.update({"case": name, "fault": fault, "target": {"node": "node1"},
                          "expected": EXPECTED.__dict__, "started_wall": 1.7e9})
    timeline.meta["expectation"] = {"group": "app", "expect_fallover": True, "expected_node": "node2",
                                    "fault_node": "node1", "load": True, "planned": False,
                                    "shared_storage": True, "membership": True}
    verdicts = run_all(context_of(timeline, requests, topology), CHECKERS)
    if logs is not None:
        verdicts["logs"] = logs
    result = CaseResult(Case(fault, Target(node="node1")), EXPECTED, verdicts, run_dir / name,
                        ASSERTED["fallover"] + ("logs",))
    save_evidence(result, timeline, list(requests), None, topology=topology)
    (run_dir / name / "load.jsonl").write_text("".join(json.dumps(r.__dict__) + "\n" for r in requests))
    return result


def make_run(tmp_path: Path, *, failing: bool = True, run_id: str = "20261129-120000") -> tuple[Path, Topology]:
    """A run with a passing fallover (4.2 s outage) and, if ``failing``, one whose outage lasts 20 s."""
    run_dir = tmp_path / run_id
    run_dir.mkdir(parents=True)
    (run_dir / "topology.yaml").write_text(yaml.safe_dump(TOPOLOGY))
    topology = load_topology(run_dir / "topology.yaml")
    (run_dir / "run-main.json").write_text(json.dumps({
        "testbed": str(run_dir / "topology.yaml"), "seed": 4242, "scenario": "plan", "repeat": 10,
        "faults": None, "sla": topology.sla.model_dump(), "alluredir": None}))
    (run_dir / "environment.json").write_text(json.dumps({
        "harness": "v0-test", "python": "3.11", "host_kernel": "6.1.0-test", "seed": 4242,
        "nodes": {n: {"pacemaker": "Pacemaker 2.1.5", "corosync": "Corosync 3.1.7", "kernel": "6.1.0-test"}
                  for n in ("node1", "node2", "node3")}}))
    write_case(run_dir, topology, history(), writes())
    if failing:
        slow = probe(-2, 0, True, "node1") + probe(0, 20, False, None) + probe(20, 26, True, "node1")
        case = run_dir / "partition-node1"
        write_case(run_dir, topology, history(samples=slow), writes(), name=case.name,
                   logs=Verdict("logs", False, 1, 0, "lines", "1 unexpected error line(s), first: node2 pacemaker-"
                                "controld: error: Resource app-ip failed: see http://example.com/x"))
        (case / "log-findings.txt").write_text("node2 pacemaker-controld[12]: error: Resource app-ip failed\n")
    return run_dir, topology
