"""Run one case of the test plan under load and record everything: the product's main job, step by step.

1. make the cluster whole; note where each group runs;  2. start the recording (cluster
poller, probe, ARP watch, locust load);  3. inject the fault;  4. wait for the expected
outcome (or hold, for faults a cluster must ride out);  5. heal;  6. recover as an operator
would (clean up failed actions) and wait for full redundancy;  7. read back every
acknowledged write;  8. stop the recording, save the run directory, judge it with checkers.
The fault is healed and every process stopped on every exit path.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.arpwatch import ArpWatch
from harness.audits.logs import LogAudit, expected_for
from harness.checkers import CHECKERS, UNKNOWN, Context, Verdict, check_safe
from harness.drivers.pacemaker import PacemakerDriver
from harness.errors import FalloverError, WaitTimeout
from harness.faults import FAULTS, Nemesis
from harness.load import Load, verify
from harness.notifications import testbed_tails
from harness.plan import Case, Expected, expect
from harness.poller import ClusterPoller
from harness.probe import Probe, load_samples, transitions
from harness.testbed.base import Testbed
from harness.timeline import CLUSTER_GROUP_STARTED, TEST_MARK, Timeline, load_requests
from harness.wait import wait_until

# Which verdicts decide the test, per expected outcome (the others are recorded as information).
ASSERTED: dict[str, tuple[str, ...]] = {
    "fallover": ("detection", "notification", "fallover", "outage", "lost_writes", "split_brain",
                 "redundancy_restored", "policy"),
    "stay": ("fallover", "outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "outage": ("detection", "notification", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "planned": ("outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
}


@dataclass
class CaseResult:
    case: Case
    expected: Expected
    verdicts: dict[str, Verdict]
    run_dir: Path
    asserted: tuple[str, ...]
    timings: dict[str, float] = field(default_factory=dict)
    extra_findings: list[str] = field(default_factory=list)

    @property
    def failures(self) -> list[Verdict]:
        return [v for n, v in self.verdicts.items() if n in self.asserted and v.valid is not True]

    @property
    def passed(self) -> bool:
        return not self.failures and not self.extra_findings

    def report(self) -> str:
        """What was done, what was expected, what was measured: the lines of an engineer's report."""
        lines = [f"{self.case.fault} on {self.case.target.label} under load; expected: {self.expected.describe()}"]
        for name, v in self.verdicts.items():
            mark = ("FAIL" if v.valid is False else "UNKNOWN" if v.valid == UNKNOWN else "ok") \
                if name in self.asserted else "info"
            lines.append(f"  [{mark:>7}] {name}: {v.explanation}")
        lines += [f"  [   FAIL] {f}" for f in self.extra_findings]
        lines.append(f"  evidence: {self.run_dir}")
        return "\n".join(lines)


class Runner:
    def __init__(self, testbed: Testbed, run_root: Path, *, load: bool = True, users: int = 10,
                 log: Callable[[str], None] = lambda _: None) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        self.driver = PacemakerDriver(testbed)
        self.run_root = run_root
        self.load = load
        self.users = users
        self.log = log

    def run(self, case: Case, *, asserted: tuple[str, ...] | None = None) -> CaseResult:
        """Run one case; ``asserted`` narrows which verdicts decide it (default: by expected outcome)."""
        topo, tb = self.topology, self.testbed
        sla = topo.sla
        self.log(f"{case.id}: making the cluster whole")
        t_start = time.monotonic()
        state = self._reset()
        home = {g.name: state.group_node(g.name) or g.nodes[0] for g in topo.groups}
        expected = expect(topo, case, home)[0]  # load and probe watch the first group
        group = topo.group(expected.group)
        base = f"http://{group.service_ip}:{group.application.port}"
        run_dir = self._run_dir(case)
        timeline = Timeline(meta={"case": case.id, "fault": case.fault, "target": case.target.to_dict(),
                                  "expected": asdict(expected), "started_wall": time.time()})
        nemesis = Nemesis(tb, timeline, log=self.log)
        timings: dict[str, float] = {}
        poller = ClusterPoller(self.driver, timeline, tails=testbed_tails(tb))
        probe = Probe(tb, url=f"{base}/health", out=run_dir / "probe.jsonl")
        arp = ArpWatch(tb, iface=group.network, ips=[str(group.service_ip)], out=run_dir / "arp.jsonl")
        load = Load(tb, log=run_dir / "load.jsonl", host=base, users=self.users, run_id=run_dir.name) \
            if self.load else None
        macs: dict[str, str] = self._macs(group.network)
        fault_mono = None
        audit = LogAudit(tb)  # type: ignore[arg-type]
        audit.mark()
        timings["reset_s"] = time.monotonic() - t_start
        try:
            poller.start()
            for proc in (probe, arp, load):
                if proc is not None:
                    proc.start()
            t0 = time.monotonic()
            timings["start_recording_s"] = t0 - t_start - timings["reset_s"]
            self._wait_probe_ok(probe, expected.home, timeout=15)
            timeline.add(TEST_MARK, None, label="baseline ok")
            self.log(f"{case.id}: injecting under load")
            inj = nemesis.start(case.fault, **case.target.to_dict())
            fault_mono = timeline.first("fault.injected").mono  # type: ignore[union-attr]
            if case.trigger:
                nemesis.start(case.trigger, group=group.name)
            timings["inject_s"] = inj.inject_s
            self._await_outcome(expected, probe, timeline, fault_mono)
            timings["fault_s"] = time.monotonic() - fault_mono
            self.log(f"{case.id}: healing")
            nemesis.heal_all()
            t_heal = time.monotonic()
            self.log(f"{case.id}: recovering")
            tb.up(placement=False)  # power fenced nodes on, clean up failed actions: the operator's steps
            try:  # then give the policy its chance (failback); the policy checker judges the outcome
                self.driver.wait_settled(timeout=sla.max_recovery_s, placement=True)
            except WaitTimeout:
                pass
            self._wait_probe_ok(probe, None, timeout=30)
            timings["recover_s"] = time.monotonic() - t_heal
            macs |= self._macs(group.network)  # restarted nodes have new MACs
            time.sleep(0.5)
            t_verify = time.monotonic()
            if load is not None:
                load.stop()
                self.log(f"{case.id}: reading back acknowledged writes")
                verify(tb, load.log, base)
                self._forget_keys(group.name, run_dir.name)
            timings["verify_s"] = time.monotonic() - t_verify
        finally:
            t_stop = time.monotonic()
            nemesis.heal_all()
            for proc in (load, probe, arp):
                if proc is not None:
                    proc.stop()
            poller.stop()
        timings["stop_recording_s"] = time.monotonic() - t_stop
        t_judge = time.monotonic()
        samples = load_samples(probe.out)
        timeline.probe.extend(samples)
        for ev in transitions(samples) + arp.events(macs):
            timeline.add(ev.kind, ev.node, mono=ev.mono, wall=ev.wall, data=ev.data)
        timeline.save(run_dir / "timeline.json")
        requests = load_requests(load.log) if load is not None else []
        ctx = Context(timeline, requests, topo, fault_start=fault_mono, expectation={
            "group": expected.group, "expect_fallover": expected.outcome == "fallover",
            "expected_node": expected.takeover if expected.outcome == "fallover" else expected.home,
            "fault_node": case.target.node})
        verdicts = {name: check_safe(fn, ctx, name=name) for name, fn in CHECKERS.items()}
        if asserted is None:
            asserted = ASSERTED[expected.outcome]
            if FAULTS[case.fault].family == "planned":  # nothing failed: nothing to detect or notify
                asserted = tuple(a for a in asserted if a not in ("detection", "notification"))
        result = CaseResult(case, expected, verdicts, run_dir, asserted, timings)
        faults = [case.fault] + ([case.trigger] if case.trigger else [])
        unexpected = audit.findings(expected_for(*faults))
        if unexpected:
            (run_dir / "log-findings.txt").write_text("\n".join(map(str, unexpected)) + "\n")
            result.extra_findings.append(f"{len(unexpected)} unexpected error line(s) in the cluster's logs, "
                                         f"first: {unexpected[0]} (all in {run_dir / 'log-findings.txt'})")
        if load is not None and not any(r.kind == "put" and r.ok for r in requests):
            errors = [r.error for r in requests if r.kind == "put" and r.error]
            result.extra_findings.append(
                "no write was acknowledged during the whole case, so nothing could be judged for lost writes"
                + (f"; most common error: {max(set(errors), key=errors.count)[:200]}" if errors else ""))
        self._save(result, timeline, requests)
        timings["judge_s"] = time.monotonic() - t_judge
        timings["total_s"] = time.monotonic() - t_start
        (run_dir / "timings.json").write_text(json.dumps({k: round(v, 3) for k, v in timings.items()}))
        return result

    # -- steps ----------------------------------------------------------------------------------

    def _reset(self):  # type: ignore[no-untyped-def]
        """A whole cluster with every group on its first node, whatever the previous case left."""
        self.testbed.up(placement=False)  # powers fenced nodes on, heals a crashed run's journal, cleans up
        state = self.driver.recover(timeout=self.topology.sla.max_recovery_s + 60, placement=False)
        for g in self.topology.groups:
            want = self.driver.expected_node(g.name, state) if g.policy == "cascading" else g.nodes[0]
            if want is not None and state.group_node(g.name) != want:
                self.log(f"moving {g.name} home to {want} before the case")
                state = self.driver.move_group(g.name, want)
        return self.driver.state() or state

    def _await_outcome(self, expected: Expected, probe: Probe, timeline: Timeline, fault_mono: float) -> None:
        sla = self.topology.sla
        if expected.outcome == "fallover":
            try:
                self._wait_probe_ok(probe, expected.takeover, timeout=sla.max_fallover_s + 10, after=fault_mono)
                # and until the poller has seen it too, so the recording orders takeover before heal
                wait_until(lambda: timeline.first(CLUSTER_GROUP_STARTED, after=fault_mono, node=expected.takeover),
                           timeout=10, interval=0.05, what=f"the poller to see {expected.group} on {expected.takeover}")
            except WaitTimeout:
                pass  # the checkers say what happened instead; healing must go on
        elif expected.outcome == "outage":
            deadline = time.monotonic() + sla.max_detection_s + 5
            while time.monotonic() < deadline and not timeline.first("cluster.failed_action", after=fault_mono) \
                    and not timeline.first("cluster.node_lost", after=fault_mono) \
                    and not timeline.first("cluster.group_stopped", after=fault_mono):
                time.sleep(0.1)
            time.sleep(1.0)
        else:  # stay: give the cluster the time it would need to (wrongly) react
            time.sleep(sla.max_detection_s)

    def _wait_probe_ok(self, probe: Probe, node: str | None, *, timeout: float, after: float = 0.0) -> None:
        """Until the probe has a good answer (from ``node``, if given) sent after ``after``."""
        offset = [0]

        def seen() -> bool:
            with open(probe.out, "rb") as f:
                f.seek(offset[0])
                chunk = f.read()
            end = chunk.rfind(b"\n") + 1
            offset[0] += end
            for line in chunk[:end].splitlines():
                s = json.loads(line)
                if s["ok"] and s["mono"] >= after and (node is None or s.get("node") == node):
                    return True
            return False

        wait_until(seen, timeout=timeout, interval=0.05,
                   what=f"the service to answer{' from ' + node if node else ''}")

    def _forget_keys(self, group: str, prefix: str) -> None:
        """Delete this case's keys from the shared disk once verified: the plan writes tens of thousands."""
        state = self.driver.state()
        node = state.group_node(group) if state else None
        if node is None:
            return
        mnt = self.testbed.layout.mountpoint(group)  # type: ignore[attr-defined]
        self.testbed.node(node).run(["find", f"{mnt}/kv", "-maxdepth", "1", "-name", f"{prefix}-*", "-delete"],
                                    timeout=60, check=False)

    def _macs(self, network: str) -> dict[str, str]:
        out = {}
        for n in self.topology.node_names:
            if self.testbed.running(n):
                try:
                    r = self.testbed.node(n).run(["cat", f"/sys/class/net/{network}/address"], timeout=5,
                                                 check=False)
                except FalloverError:
                    continue
                if r.ok:
                    out[r.stdout.strip()] = n
        return out

    def _run_dir(self, case: Case) -> Path:
        d = self.run_root / case.id
        i = 1
        while d.exists():
            i += 1
            d = self.run_root / f"{case.id}.{i}"
        d.mkdir(parents=True)
        return d

    def _save(self, result: CaseResult, timeline: Timeline, requests: list[Any]) -> None:
        d = result.run_dir
        (d / "verdicts.json").write_text(json.dumps({
            "case": result.case.id, "expected": asdict(result.expected), "passed": result.passed,
            "asserted": list(result.asserted), "timings": result.timings,
            "verdicts": {n: asdict(v) for n, v in result.verdicts.items()}}, indent=1, default=str))
        (d / "report.txt").write_text(result.report() + "\n")
        try:
            from harness.plots import plot_timeline

            plot_timeline(timeline, requests, d / "timeline.svg")
        except Exception as e:  # a plot is evidence, never a reason to lose the verdicts
            (d / "plot-error.txt").write_text(f"{type(e).__name__}: {e}\n")

