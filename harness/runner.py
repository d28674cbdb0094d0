"""Run one case of the test plan under load and record everything: the product's main job, step by step.

1. make the cluster whole; note where each group runs;  2. start the recording (cluster
poller, probe, ARP watch, locust load);  3. inject the fault;  4. wait for the expected
outcome (or hold, for faults a cluster must ride out);  5. heal;  6. recover as an operator
would (clean up failed actions) and wait for full redundancy;  7. read back every
acknowledged write;  8. stop the recording, save the run directory, judge it with checkers.
The fault is healed and every process stopped on every exit path.

Every step is bounded and runs inside ``Steps`` (harness/steps.py): a step the cluster
answers with a failure becomes a verdict naming the step, the command and the answer; a bug
of ours makes the case an ERROR. When an outcome does not come, the cluster is asked why
(harness/diagnosis.py) and its answer goes into the report. The evidence (timeline,
verdicts, report, plot) is written in a ``finally``, whatever happened.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.arpwatch import ArpWatch, node_macs
from harness.audits.cluster import Consistency, audit_cluster
from harness.audits.logs import LogAudit, disruptions_from
from harness.case_result import CaseResult, new_case_dir, save_evidence
from harness.checkers import CHECKERS, Context, Verdict, check_safe
from harness.checkers.detection import check_detection
from harness.checkers.fencing import failed_fence_seen
from harness.checkers.recorded import context_of
from harness.diagnosis import diagnose
from harness.drivers import open_driver
from harness.drivers.state import ClusterState
from harness.errors import WaitTimeout
from harness.faults import FAULTS, Nemesis
from harness.load import Load, verify
from harness.notifications import testbed_tails
from harness.oplog import OpLog, recorded
from harness.plan import Case, Expected, expect
from harness.poller import ClusterPoller
from harness.probe import Probe, load_samples, transitions, wait_for_answer
from harness.testbed.base import Testbed
from harness.status import save_snapshot
from harness.steps import Steps
from harness.timeline import CLUSTER_GROUP_STARTED, FAULT_INJECTED, TEST_MARK, Timeline, load_requests
from harness.wait import wait_until

# Which verdicts decide the test, per expected outcome (the others are recorded as information).
ASSERTED: dict[str, tuple[str, ...]] = {
    "fallover": ("detection", "notification", "fallover", "outage", "lost_writes", "split_brain",
                 "redundancy_restored", "policy"),
    "stay": ("fallover", "outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "outage": ("detection", "notification", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "planned": ("outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "restart": ("starts", "lost_writes", "split_brain", "redundancy_restored", "policy"),
}
PROBE_HZ = 100.0  # harness.probe's default schedule


@dataclass
class _Case:
    """What one run of a case holds while it runs: the recorders exist only once their step succeeded."""

    case: Case
    run_dir: Path
    steps: Steps
    t_start: float
    timeline: Timeline
    expected: Expected | None = None
    nemesis: Nemesis | None = None
    poller: ClusterPoller | None = None
    probe: Probe | None = None
    arp: ArpWatch | None = None
    load: Load | None = None
    audit: LogAudit | None = None
    consistency: Consistency | None = None
    macs: dict[str, str] = field(default_factory=dict)
    fault_mono: float | None = None
    missed: bool = False  # the expected outcome did not come by its deadline
    diagnosis: dict[str, list[str]] = field(default_factory=dict)  # step → the cluster's account at its deadline
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    recovery: OpLog = field(default_factory=OpLog)  # heal and recovery as done: the runbook's source


class Runner:
    def __init__(self, testbed: Testbed, run_root: Path, *, load: bool = True, users: int = 10,
                 log: Callable[[str], None] = lambda _: None) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        self.driver = open_driver(testbed)
        self.run_root = run_root
        self.load = load
        self.users = users
        self.log = log

    def run(self, case: Case, *, asserted: tuple[str, ...] | None = None) -> CaseResult:
        """Run one case; ``asserted`` narrows which verdicts decide it (default: by expected outcome).

        Whatever the cluster or the harness does, the case ends with its evidence saved and a
        PASS, FAIL or ERROR; only Ctrl-C propagates (after healing and saving).
        """
        run_dir = new_case_dir(self.run_root, case.id)
        c = _Case(case, run_dir, Steps(run_dir / "harness-error.txt"), t_start=time.monotonic(),
                  timeline=Timeline(meta={"case": case.id, "fault": case.fault, "target": case.target.to_dict(),
                                          "started_wall": time.time()}))
        try:
            self._record_and_break(c)
        finally:
            self._wind_down(c)
            result = self._judge(c, asserted)
        return result

    # -- the case, step by step -------------------------------------------------------------------

    def _record_and_break(self, c: _Case) -> None:
        topo, tb, steps, timeline = self.topology, self.testbed, c.steps, c.timeline
        sla = topo.sla
        self.log(f"{c.case.id}: making the cluster whole")
        with steps("make the cluster whole"):
            state = self._reset()
            home = {g.name: state.group_node(g.name) or g.nodes[0] for g in topo.groups}
            c.expected = expect(topo, c.case, home, seen=state)[0]  # load and probe watch the first group
            timeline.meta["expected"] = asdict(c.expected)
        c.timings["reset_s"] = time.monotonic() - c.t_start
        save_snapshot(tb, c.run_dir, "before")
        if steps.failed("make the cluster whole") or c.expected is None:
            self._diagnose(c, "make the cluster whole", None)
            return
        group = topo.group(c.expected.group)
        base = f"http://{group.service_ip}:{group.application.port}"
        with steps("start the recording"):
            c.nemesis = Nemesis(tb, timeline, log=self.log)
            c.poller = ClusterPoller(self.driver, timeline, tails=testbed_tails(tb))
            c.probe = Probe(tb, url=f"{base}/health", out=c.run_dir / "probe.jsonl")
            c.arp = ArpWatch(tb, iface=group.network, ips=[str(group.service_ip)], out=c.run_dir / "arp.jsonl")
            c.load = Load(tb, log=c.run_dir / "load.jsonl", host=base, users=self.users,
                          run_id=c.run_dir.name) if self.load else None
            c.macs = node_macs(tb, group.network)
            c.audit = LogAudit(tb)
            c.audit.mark()
            c.poller.start()
            for proc in (c.probe, c.arp, c.load):
                if proc is not None:
                    proc.start()
        if steps.failed("start the recording"):
            return
        assert c.probe is not None and c.nemesis is not None
        with steps("baseline"):
            self._wait_probe_ok(c.probe, c.expected.home, timeout=15)
            timeline.add(TEST_MARK, None, label="baseline ok")
        if steps.failed("baseline"):
            self._diagnose(c, "baseline", group.name)
            return
        self.log(f"{c.case.id}: injecting under load")
        t_inject = time.monotonic()
        with steps("inject"):
            c.nemesis.start(c.case.fault, **c.case.target.to_dict())
            injected = timeline.first(FAULT_INJECTED)
            c.fault_mono = injected.mono if injected else t_inject
            # a fault that strikes several times (app_kill_threshold) marks the strike the outcome answers
            strikes = [e for e in timeline.of(TEST_MARK) if e.data.get("fault_start")]
            if strikes:
                c.fault_mono = strikes[-1].mono
            if c.case.trigger:  # a node fault strikes the case's node (fence faults), others the group
                by_node = FAULTS[c.case.trigger].target_kind == "node"
                c.nemesis.start(c.case.trigger, **({"node": c.case.target.need("node")} if by_node
                                                   else {"group": group.name}))
        c.timings["inject_s"] = time.monotonic() - t_inject
        if steps.failed("inject"):
            return
        with steps("wait for the outcome"):
            self._await_outcome(c)
        if steps.failed("wait for the outcome") or c.missed:
            self._diagnose(c, "wait for the outcome", group.name)
        c.timings["fault_s"] = time.monotonic() - c.fault_mono
        self.log(f"{c.case.id}: healing")
        with steps("heal"), c.recovery.phase("heal"):
            c.nemesis.heal_all()
        t_heal = time.monotonic()
        self.log(f"{c.case.id}: recovering")
        timeline.add(TEST_MARK, None, label="recovery start")
        with steps("operator recovery"), c.recovery.phase("operator recovery"):
            # power fenced nodes on, clean up failed actions: the operator's steps, recorded for the runbook
            recorded(tb).up(placement=False, progress=c.recovery.note)
            try:  # then give the policy its chance (failback); the policy checker judges the outcome
                self.driver.wait_settled(timeout=sla.max_recovery_s, placement=True)
            except WaitTimeout:
                pass
            # and the service answers again, to a request sent now: an answer from before the fault is no proof
            self._wait_probe_ok(c.probe, None, timeout=30, after=time.monotonic())
        timeline.add(TEST_MARK, None, label="recovery end")
        c.timings["recover_s"] = time.monotonic() - t_heal
        if steps.failed("operator recovery"):
            self._diagnose(c, "operator recovery", group.name)
        side = threading.Thread(target=self._audit_cluster, args=(c,), name="audit", daemon=True)
        side.start()  # beside the read-back of the writes: the audits must add little to a case
        save_snapshot(tb, c.run_dir, "after")
        c.macs |= node_macs(tb, group.network)  # restarted nodes have new MACs
        time.sleep(0.5)
        t_verify = time.monotonic()
        if c.load is not None:
            with steps("verify writes"):
                c.load.stop()
                self.log(f"{c.case.id}: reading back acknowledged writes")
                verify(tb, c.load.log, base)
            with steps("forget this case's keys"):
                self._forget_keys(group.name, c.run_dir.name)
        c.timings["verify_s"] = time.monotonic() - t_verify
        side.join()

    def _audit_cluster(self, c: _Case) -> None:
        """CTS's audits on the recovered cluster (CIB, DC, primitives, managed), and the log markers sent."""
        t0 = time.monotonic()
        with c.steps("audit the cluster"):
            c.consistency = audit_cluster(self.testbed, self.driver)
            if c.audit is not None:
                c.audit.send_markers()
        c.timings["audit_s"] = time.monotonic() - t0

    def _wind_down(self, c: _Case) -> None:
        """Heal whatever is still injected and stop every recorder: each on its own, none skipped."""
        t_stop = time.monotonic()
        if c.nemesis is not None:
            with c.steps("final heal"), c.recovery.phase("final heal"):
                c.nemesis.heal_all()
        for name, proc in (("load", c.load), ("probe", c.probe), ("ARP watch", c.arp), ("cluster poller", c.poller)):
            if proc is not None:
                with c.steps(f"stop the {name}"):
                    proc.stop()
        c.timings["stop_recording_s"] = time.monotonic() - t_stop

    def _judge(self, c: _Case, asserted: tuple[str, ...] | None) -> CaseResult:
        """Verdicts from the recording; the evidence files are written even when judging fails."""
        t_judge = time.monotonic()
        verdicts: dict[str, Verdict] = {}
        requests: list[Any] = []
        findings: list[str] = []
        with c.steps("judge"):
            timeline = c.timeline
            samples = load_samples(c.probe.out) if c.probe is not None and c.probe.out.exists() else []
            timeline.probe.extend(samples)
            for ev in transitions(samples) + (c.arp.events(c.macs) if c.arp is not None else []):
                timeline.add(ev.kind, ev.node, mono=ev.mono, wall=ev.wall, data=ev.data)
            c.counts.update(self._counts(c, samples))
            timeline.meta["counts"] = c.counts
            requests = load_requests(c.load.log) if c.load is not None and c.load.log.exists() else []
            if c.expected is not None and c.fault_mono is not None:
                # what the checkers are given is saved with the timeline: `fallover report --sla` re-judges from it
                timeline.meta["expectation"] = self._expectation(c)
                timeline.meta["fault_start"] = c.fault_mono
                ctx = context_of(timeline, requests, self.topology)
                verdicts = {name: check_safe(fn, ctx, name=name) for name, fn in CHECKERS.items()}
                if c.load is not None and not any(r.kind == "put" and r.ok for r in requests):
                    errors = [r.error for r in requests if r.kind == "put" and r.error]
                    findings.append(
                        "no write was acknowledged during the whole case, so nothing could be judged for lost writes"
                        + (f"; most common error: {max(set(errors), key=errors.count)[:200]}" if errors else ""))
        if c.audit is not None and c.fault_mono is not None:
            with c.steps("audit the logs"):
                verdicts["logs"] = self._audit_logs(c)
        if c.consistency is not None:
            verdicts["consistency"] = c.consistency.verdict()
            c.consistency.save(c.run_dir)
        names = asserted if asserted is not None else self._asserted(c)
        after_inject = c.steps.done[[s.name for s in c.steps.done].index("inject") + 1:] \
            if c.steps.get("inject") else []
        for s in after_inject:
            if not s.ok and not s.harness_error:  # the cluster's answer to a step: a verdict of its own
                why = c.diagnosis.get(s.name, [])
                told = f"; the cluster says: {'; '.join(why[:3])}" if why else ""
                verdicts[s.name] = Verdict(s.name, False, None, None, "", f"{s.error or 'failed'}{told}")
                names = (*names, s.name)
        c.timings["judge_s"] = time.monotonic() - t_judge
        c.timings["total_s"] = time.monotonic() - c.t_start
        result = CaseResult(c.case, c.expected, verdicts, c.run_dir, tuple(names), c.timings, findings,
                            c.steps.done, c.diagnosis, c.counts)
        save_evidence(result, c.timeline, requests, c.recovery, topology=self.topology)
        return result

    def _asserted(self, c: _Case) -> tuple[str, ...]:
        if c.expected is None:
            return ()
        names = ASSERTED[c.expected.outcome] + FAULTS[c.case.fault].extra_asserted + ("logs", "consistency")
        if FAULTS[c.case.fault].family == "planned":  # nothing failed: nothing to detect or notify
            names = tuple(a for a in names if a not in ("detection", "notification"))
        return names

    def _audit_logs(self, c: _Case) -> Verdict:
        """Error lines in the cluster's logs, minus what the fault and the recovery explain (audits/noise.py)."""
        assert c.audit is not None
        faults = [c.case.fault] + ([c.case.trigger] if c.case.trigger else [])
        t0 = time.monotonic()
        c.audit.check_pipeline()  # a log that its node's marker never reached is unknown, not clean
        c.timings["log_pipeline_s"] = time.monotonic() - t0
        res = c.audit.result(disruptions_from(c.timeline, self.topology), faults=faults)
        res.save(c.run_dir)
        return res.verdict("logs", evidence=c.run_dir)

    def _counts(self, c: _Case, samples: list[Any]) -> dict[str, int]:
        """What the recorders lost or could not read: shown in the report, judged by the checkers."""
        counts = {"poller_errors": c.poller.errors if c.poller is not None else 0,
                  "timeline_dropped": c.timeline.dropped,
                  "bad_notification_lines": c.poller.bad_notification_lines if c.poller is not None else 0}
        if len(samples) > 1:  # the probe sends on a fixed 100 Hz schedule: a gap is a slot it skipped
            span = samples[-1].mono - samples[0].mono
            counts["probe_skipped"] = max(0, int(round(span * PROBE_HZ)) + 1 - len(samples))
        return counts

    def _diagnose(self, c: _Case, step: str, group: str | None) -> None:
        """The cluster's own account of why, at the moment ``step`` ran out; never raises."""
        try:
            if self.driver.capabilities().get("pacemaker") is None:
                d = diagnose(self.testbed, group)
                lines = d.lines + [f"(could not read: {e})" for e in d.errors]
            else:  # the diagnosis reads Pacemaker's own account; other stacks: what the driver sees
                state = self.driver.state()
                lines = [f"the cluster as the driver sees it: {state.summary() if state else 'no node answers'}"]
        except Exception as e:  # a diagnosis is evidence, never a reason to lose the case
            lines = [f"the cluster could not be asked why: {type(e).__name__}: {e}"]
        c.diagnosis[step] = lines
        c.timeline.add("cluster.diagnosis", None, step=step, lines=lines)

    # -- steps ----------------------------------------------------------------------------------

    def _reset(self) -> ClusterState:
        """A whole cluster with every group on its first node, whatever the previous case left."""
        self.testbed.up(placement=False)  # powers fenced nodes on, heals a crashed run's journal, cleans up
        state = self.driver.recover(timeout=self.topology.sla.max_recovery_s + 60, placement=False)
        for g in self.topology.groups:
            want = self.driver.expected_node(g.name, state) if g.policy == "cascading" else g.nodes[0]
            if want is not None and state.group_node(g.name) != want:
                self.log(f"moving {g.name} home to {want} before the case")
                state = self.driver.move_group(g.name, want)
        return self.driver.state() or state

    def _await_outcome(self, c: _Case) -> None:
        """Until the expected outcome (or its deadline); a takeover that never comes raises WaitTimeout.

        The deadlines are generous (SLA + 10 s): they bound the case, while the checkers judge
        the recorded times against the SLA.
        """
        assert c.expected is not None and c.probe is not None and c.fault_mono is not None
        expected, timeline, fault_mono = c.expected, c.timeline, c.fault_mono
        sla = self.topology.sla
        if expected.outcome == "fallover":
            try:
                self._wait_probe_ok(c.probe, expected.takeover, timeout=sla.max_fallover_s + 10, after=fault_mono)
                # and until the poller has seen it too, so the recording orders takeover before heal
                wait_until(lambda: timeline.first(CLUSTER_GROUP_STARTED, after=fault_mono, node=expected.takeover),
                           timeout=10, interval=0.05, what=f"the poller to see {expected.group} on {expected.takeover}")
            except WaitTimeout:
                c.missed = True
                raise WaitTimeout(f"{expected.group} to answer from {expected.takeover} after {c.case.fault} "
                                  f"on {c.case.target.label}", sla.max_fallover_s + 10,
                                  self._seen_now(expected.group)) from None
        elif expected.outcome == "outage":
            deadline = time.monotonic() + expected.limits.get("max_detection_s", sla.max_detection_s) + 5
            while time.monotonic() < deadline and not self._detected(c):  # the checker's own definition
                time.sleep(0.1)
            c.missed = time.monotonic() >= deadline  # the detection verdict says so; the diagnosis says why
            if FAULTS[c.case.fault].family == "fencing":  # hold until a fence has failed: no takeover may follow
                victim = c.case.target.need("node")
                wait_until(lambda: failed_fence_seen(timeline, victim, fault_mono),
                           timeout=sla.max_detection_s + self.topology.cluster.fence_timeout_s * 1.5 + 10,
                           interval=0.2, what=f"a fence of {victim} to fail")
                time.sleep(sla.max_detection_s)  # the time a takeover would need, were the cluster to (wrongly) try
            time.sleep(1.0)
        else:  # stay: give the cluster the time it would need to (wrongly) react
            time.sleep(sla.max_detection_s)

    def _detected(self, c: _Case) -> bool:
        """Whether the recording so far holds what the detection checker counts as the cluster noticing."""
        ctx = Context(c.timeline, (), self.topology, fault_start=c.fault_mono, expectation=self._expectation(c))
        return check_detection(ctx).measured is not None

    def _expectation(self, c: _Case) -> dict[str, Any]:
        assert c.expected is not None
        e = c.expected
        fault = FAULTS[c.case.fault]
        return {"group": e.group, "expect_fallover": e.outcome == "fallover",
                "expected_node": e.takeover if e.outcome == "fallover" else e.home,
                "fault_node": c.case.target.node, "load": self.load,
                "planned": fault.family == "planned",
                "shared_storage": self.topology.group(e.group).disk is not None,
                "membership": self.driver.membership, **e.limits, "outcome": e.outcome, "home": e.home,
                **fault.expectation,
                "notifications_unseen": self.testbed.capabilities().get("notifications"),
                # a fault that asserts `fencing` names the group's node as the victim whose fence must come first
                **({"fence_victim": e.home} if "fencing" in fault.extra_asserted else {}),
                **({"fence_broken": True} if fault.family == "fencing" else {})}

    def _seen_now(self, group: str) -> str:
        try:
            s = self.driver.state()
        except Exception as e:  # only words for a message
            return f"crm_mon failed: {e}"
        return s.summary() if s is not None else "no node answers crm_mon"

    def _wait_probe_ok(self, probe: Probe, node: str | None, *, timeout: float, after: float = 0.0) -> None:
        wait_for_answer(probe.out, node, timeout=timeout, after=after)

    def _forget_keys(self, group: str, prefix: str) -> None:
        """Delete this case's keys from the shared disk once verified: the plan writes tens of thousands."""
        state = self.driver.state()
        node = state.group_node(group) if state else None
        if node is None:
            return
        mnt = self.testbed.mountpoint(group)
        self.testbed.node(node).run(["find", f"{mnt}/kv", "-maxdepth", "1", "-name", f"{prefix}-*", "-delete"],
                                    timeout=60, check=False)
