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
verdicts, report, plot) is written in a ``finally``, whatever happened. The recorders are in
harness/recording.py, the verdicts in harness/judging.py.

Where a case's time goes (``timings`` in verdicts.json): the fixed parts are the cluster's own
(a ride-out holds ``max_detection_s``, a recovery waits ``SETTLE_QUIET_S`` after the heal); the
rest is kept off the critical path: locust, the probe and the ARP watch are spawned gated before
the reset (starting the recording opens their gates); the recovery takes `up`'s own last settled
look as its placed look when every group is already placed; the read-back of the writes starts
when locust's users have stopped and runs beside the recorders' stop; the ``fallover status``
snapshots, the audits and the deletion of the case's keys run beside other steps.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from harness.arpwatch import node_macs
from harness.audits.cluster import audit_cluster
from harness.audits.pcmk_races import stale_transition
from harness.case_result import CaseResult, new_case_dir
from harness.checkers import Context
from harness.checkers.detection import check_detection
from harness.checkers.fencing import failed_fence_seen
from harness.diagnosis import diagnose
from harness.drivers import open_driver
from harness.drivers.polling import journal_stamp
from harness.drivers.state import ClusterState
from harness.errors import FalloverError, WaitTimeout
from harness.faults import FAULTS
from harness.faults.partitions import HOLD_FOR_TAKEOVER
from harness.judging import ASSERTED, Judging
from harness.load import verify, verify_ahead
from harness.oplog import recorded
from harness.plan import Case, expect, spare_nodes
from harness.probe import Probe, wait_for_answer
from harness.recording import CaseRun, Recording
from harness.status import save_snapshot
from harness.steps import Steps
from harness.testbed.base import Testbed, pace_of
from harness.timeline import CLUSTER_GROUP_STARTED, FAULT_INJECTED, TEST_MARK, Timeline
from harness.topology import Group
from harness.wait import wait_until

__all__ = ["ASSERTED", "Runner"]


class Runner(Recording, Judging):
    def __init__(self, testbed: Testbed, run_root: Path, *, load: bool = True, users: int = 10,
                 log: Callable[[str], None] = lambda _: None, spawn_ahead: bool = False,
                 keep_logs: bool = False) -> None:
        """``spawn_ahead``: spawn each next case's locust as soon as a case is timed (see
        ``Recording._spawn_ahead``); only for an owner that calls :meth:`close` when no case follows.
        ``keep_logs``: save the node log lines of passing cases too (a case that did not pass always has them)."""
        self.testbed = testbed
        self.topology = testbed.topology
        self.driver = open_driver(testbed)
        self.run_root = run_root
        self.load = load
        self.users = users
        self.log = log
        self.spawn_ahead = spawn_ahead
        self.keep_logs = keep_logs
        self._left_whole: tuple[int, int] | None = None  # the fault journal's stamp when the last case left it whole

    def run(self, case: Case, *, asserted: tuple[str, ...] | None = None) -> CaseResult:
        """Run one case; ``asserted`` narrows which verdicts decide it (default: by expected outcome).

        Whatever the cluster or the harness does, the case ends with its evidence saved and a
        PASS, FAIL or ERROR; only Ctrl-C propagates (after healing and saving).
        """
        run_dir = new_case_dir(self.run_root, case.id)
        c = CaseRun(case, run_dir, Steps(run_dir / "harness-error.txt"), t_start=time.monotonic(),
                    timeline=Timeline(meta={"case": case.id, "fault": case.fault, "target": case.target.to_dict(),
                                            "started_wall": time.time()}))
        whole, self._left_whole = self._left_whole, None
        try:
            self._record_and_break(c, whole)
        finally:
            self._wind_down(c)
            result = self._judge(c, asserted)
        return result

    # -- the case, step by step -------------------------------------------------------------------

    @staticmethod
    def _base(group: Group) -> str:
        return f"http://{group.service_ip}:{group.application.port}"

    def _record_and_break(self, c: CaseRun, whole: tuple[int, int] | None = None) -> None:
        topo, tb, steps, timeline = self.topology, self.testbed, c.steps, c.timeline
        sla = topo.sla
        if topo.groups:  # the group load and probe watch: expect()'s first, the topology's first
            first = topo.groups[0]
            self._prespawn(c, base=self._base(first), network=first.network, service_ip=str(first.service_ip))
        self.log(f"{c.case.id}: making the cluster whole")
        with steps("make the cluster whole"):
            state = self._reset(whole)
            home = {g.name: state.group_node(g.name) or g.nodes[0] for g in topo.groups}
            c.expected = expect(topo, c.case, home, seen=state)[0]  # load and probe watch the first group
            timeline.meta["expected"] = asdict(c.expected)
        c.timings["reset_s"] = time.monotonic() - c.t_start
        if steps.failed("make the cluster whole") or c.expected is None:
            save_snapshot(tb, c.run_dir, "before")
            self._diagnose(c, "make the cluster whole", None)
            return
        group = topo.group(c.expected.group)
        ask_first = getattr(self.driver, "ask_first", None)
        if callable(ask_first):  # the poller's queries cost a node CPU: one the case does not time pays them
            ask_first(spare_nodes(topo, c.case, c.expected))
        # the cluster as it was before the fault: read beside the recorders' start, complete before the inject
        before = self.beside(c, "snapshot before", lambda: self._snapshot(c, "before", group.network))
        base = self._base(group)
        t_rec = time.monotonic()
        with steps("start the recording"):
            self._start_recording(c, base=base, network=group.network, service_ip=str(group.service_ip))
        c.timings["record_start_s"] = time.monotonic() - t_rec
        if steps.failed("start the recording"):
            return
        assert c.probe is not None and c.nemesis is not None
        with steps("baseline"):
            self._wait_probe_ok(c.probe, c.expected.home, timeout=15)
            timeline.add(TEST_MARK, None, label="baseline ok")
        if steps.failed("baseline"):
            self._diagnose(c, "baseline", group.name)
            return
        before.join()
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
                marks = len(timeline.of(TEST_MARK))
                c.nemesis.start(c.case.trigger, **({"node": c.case.target.need("node")} if by_node
                                                   else {"group": group.name}))
                # the failure the cluster must answer is the trigger's (the fault only set the stage): from its
                # strike, or its start (app_start_fail-node2-app on the VMs: the app was killed 8+ s after the
                # failing start was in place)
                strikes = [e for e in timeline.of(TEST_MARK)[marks:] if e.data.get("fault_start")]
                c.fault_mono = strikes[-1].mono if strikes else timeline.of(FAULT_INJECTED)[-1].mono
        c.timings["inject_s"] = time.monotonic() - t_inject
        if steps.failed("inject"):
            return
        with steps("wait for the outcome"):
            self._await_outcome(c)
        if steps.failed("wait for the outcome") or c.missed:
            self._diagnose(c, "wait for the outcome", group.name)
        assert c.fault_mono is not None  # set by the inject step, which succeeded
        c.timings["fault_s"] = time.monotonic() - c.fault_mono
        self.log(f"{c.case.id}: healing")
        t_heal = time.monotonic()
        with steps("heal"), c.recovery.phase("heal"):
            c.nemesis.heal_all()
        c.timings["heal_s"] = time.monotonic() - t_heal
        t_heal = time.monotonic()
        self.log(f"{c.case.id}: recovering")
        timeline.add(TEST_MARK, None, label="recovery start")
        if c.load is not None:  # while the cluster settles: the read-back's process, gated
            with steps("spawn the read-back ahead"):
                c.verifier = verify_ahead(tb, c.load.log, base)
        with steps("operator recovery"), c.recovery.phase("operator recovery"):
            # power fenced nodes on, clean up failed actions: the operator's steps, recorded for the runbook
            recorded(tb).up(placement=False, progress=c.recovery.note)
            try:  # then give the policy its chance (failback); the policy checker judges the outcome
                # `up`'s own last settled look (after the quiet period) often has every group placed already
                if self.driver.settled_look(since=t_heal, placement=True) is None:
                    self.driver.wait_settled(timeout=sla.max_recovery_s, placement=True)
                left_whole = self._journal_stamp()
            except WaitTimeout:
                left_whole = None
            # and the service answers again, to a request sent now: an answer from before the fault is no proof
            self._wait_probe_ok(c.probe, None, timeout=30, after=time.monotonic())
            self._left_whole = left_whole
        timeline.add(TEST_MARK, None, label="recovery end")
        c.timings["recover_s"] = time.monotonic() - t_heal
        if steps.failed("operator recovery"):
            self._diagnose(c, "operator recovery", group.name)
        # beside the read-back of the writes: the audits and the snapshot must add little to a case
        self.beside(c, "audit", lambda: self._audit_cluster(c))
        self.beside(c, "snapshot after", lambda: self._snapshot(c, "after", group.network))
        if c.load is not None:
            self._start_read_back(c, base, group.name)

    def _start_read_back(self, c: CaseRun, base: str, group: str) -> None:
        """The read-back of the writes, beside the recorders' stop when nothing it needs stops meanwhile.

        It needs locust stopped and the service up, nothing else: after a good recovery the recorders
        are told to stop with locust (all at once, as the wind-down does) and their exit, the poller's
        stop and the wind-down run while it reads. After a failed heal or recovery it first asks the
        probe whether the service answers at all, so it runs before the recorders stop, as it always did.
        """
        self.log(f"{c.case.id}: reading back acknowledged writes")  # said here, from the case's own thread
        if c.steps.failed("heal") or c.steps.failed("operator recovery"):
            self._read_back(c, base, group)
            return
        for client in (c.load, c.probe, c.arp):
            if client is not None:
                client.terminate()
        self.beside(c, "read back the writes", lambda: self._read_back(c, base, group))

    def _read_back(self, c: CaseRun, base: str, group: str) -> None:
        """Stop locust's users (every acknowledgement is then in its log), read back every acknowledged
        write, then forget this case's keys. Locust's own exit is the wind-down's to wait for."""
        assert c.load is not None
        t_verify = time.monotonic()
        with c.steps("verify writes"):
            c.load.stop_sending()
            if c.steps.failed("operator recovery"):  # every read of a dead service times out: 5 min for nothing
                try:
                    assert c.probe is not None
                    self._wait_probe_ok(c.probe, None, timeout=5, after=time.monotonic())
                except WaitTimeout:
                    raise FalloverError("not read back: the service does not answer after the operator "
                                        "recovery failed") from None
            verify(self.testbed, c.load.log, base, ahead=c.verifier)
        c.timings["verify_s"] = time.monotonic() - t_verify
        # nothing reads them any more: deleted beside the recorders' stop
        self.beside(c, "forget keys", lambda: self._forget_step(c, group))

    def _audit_cluster(self, c: CaseRun) -> None:
        """CTS's audits on the recovered cluster (CIB, DC, primitives, managed), and the log markers sent."""
        t0 = time.monotonic()
        with c.steps("audit the cluster"):
            c.consistency = audit_cluster(self.testbed, self.driver)
            if c.audit is not None:
                c.audit.send_markers()
        c.timings["audit_s"] = time.monotonic() - t0

    def _snapshot(self, c: CaseRun, when: str, network: str) -> None:
        """`fallover status` before the fault or after the recovery, and the nodes' MACs on the service
        network for the ARP evidence (after: a restarted node has a new one)."""
        t0 = time.monotonic()
        save_snapshot(self.testbed, c.run_dir, when)
        with c.steps(f"read the nodes' MACs {when}"):
            c.macs |= node_macs(self.testbed, network)
        c.timings[f"snapshot_{when}_s"] = time.monotonic() - t0

    def _forget_step(self, c: CaseRun, group: str) -> None:
        t0 = time.monotonic()
        with c.steps("forget this case's keys"):
            self._forget_keys(group, c.run_dir.name)
        c.timings["forget_keys_s"] = time.monotonic() - t0

    def _diagnose(self, c: CaseRun, step: str, group: str | None) -> None:
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
        if c.audit is not None:
            try:  # the cluster's own races, as its logs tell them: the most telling line, so first
                lines = stale_transition(c.audit.new_lines()) + lines
            except Exception as e:  # noqa: BLE001 — as above
                lines.append(f"(the node logs could not be read for known races: {type(e).__name__}: {e})")
        c.diagnosis[step] = lines
        c.timeline.add("cluster.diagnosis", None, step=step, lines=lines)

    # -- steps ----------------------------------------------------------------------------------

    def _journal_stamp(self) -> tuple[int, int] | None:
        """The fault journal's (mtime, size): a fault injected or healed since changes it."""
        return journal_stamp(self.testbed.journal_path)

    def _reset(self, whole: tuple[int, int] | None = None) -> ClusterState:
        """A whole cluster with every group on its first node, whatever the previous case left.

        ``whole``: the journal's stamp when the previous case's recovery left the cluster settled
        with every group where its policy puts it (`up`, every node answering, then `wait_settled`).
        If no fault changed since, every node still runs and one look finds it settled with the
        groups at home, that look is the reset: `up` would only repeat what that recovery checked.
        """
        if whole is not None and whole == self._journal_stamp() \
                and all(self.testbed.running(n) for n in self.topology.node_names):
            state = self.driver.state()
            if state is not None and self.driver.unsettled(state, placement=True) is None \
                    and all(state.group_node(g.name) == g.nodes[0] for g in self.topology.groups):
                return state
        self.testbed.up(placement=False)  # powers fenced nodes on, heals a crashed run's journal, cleans up
        # every testbed's `up` ends with the driver's `recover`: one look confirms it, rather than a second recover
        state = self.driver.state()
        if state is None or self.driver.unsettled(state, placement=False) is not None:
            state = self.driver.recover(timeout=self.topology.sla.max_recovery_s + 60, placement=False)
        moved = False
        for g in self.topology.groups:
            want = self.driver.expected_node(g.name, state) if g.policy == "cascading" else g.nodes[0]
            if want is not None and state.group_node(g.name) != want:
                self.log(f"moving {g.name} home to {want} before the case")
                state = self.driver.move_group(g.name, want)
                moved = True
        # `recover` has just seen this state settled: only after a move is it worth reading again
        return (self.driver.state() or state) if moved else state

    def _await_outcome(self, c: CaseRun) -> None:
        """Until the expected outcome (or its deadline); a takeover that never comes raises WaitTimeout.

        The deadlines are generous (the case's SLA + 10 s; a case may widen the topology's, e.g. app_start_fail's
        two takeovers): they bound the case, while the checkers judge the recorded times against the SLA.
        """
        assert c.expected is not None and c.probe is not None and c.fault_mono is not None
        expected, timeline, fault_mono = c.expected, c.timeline, c.fault_mono
        sla = self.topology.sla
        fallover_s = expected.limits.get("max_fallover_s", sla.max_fallover_s) + 10
        if expected.outcome == "fallover":
            try:
                self._wait_probe_ok(c.probe, expected.takeover, timeout=fallover_s, after=fault_mono)
            except WaitTimeout:
                c.missed = True
                raise WaitTimeout(f"{expected.group} to answer from {expected.takeover} after {c.case.fault} "
                                  f"on {c.case.target.label}", fallover_s, self._seen_now(expected.group)) from None
            # and until the poller has seen it too, so the recording orders takeover before heal: one look
            # of the poller at the testbed's pace (a TCG guest took 8.6 s for one crm_mon over SSH)
            pace = pace_of(self.testbed)
            seen_within = max(10.0, pace.poll_s + pace.query_timeout_s)
            try:
                wait_until(lambda: timeline.first(CLUSTER_GROUP_STARTED, after=fault_mono, node=expected.takeover),
                           timeout=seen_within, interval=0.05,
                           what=f"the poller to see {expected.group} on {expected.takeover}")
            except WaitTimeout:
                c.missed = True
                raise WaitTimeout(f"the cluster poller to see {expected.group} started on {expected.takeover} "
                                  f"(the service answered from it)", seen_within,
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
        else:  # stay: give the cluster the time it would need to (wrongly) react, or to (wrongly) take over
            held = FAULTS[c.case.fault].expectation.get(HOLD_FOR_TAKEOVER)
            time.sleep(sla.max_fallover_s if held else sla.max_detection_s)
            if expected.outcome == "planned":
                # staying and moving are both right: a move under way must end before the heal, whose
                # power-on of a fenced node would otherwise decide where the group goes (and stretch the outage)
                try:
                    self._wait_probe_ok(c.probe, None, timeout=fallover_s, after=time.monotonic())
                except WaitTimeout:
                    c.missed = True  # the outage verdict says how long; the diagnosis says why

    def _detected(self, c: CaseRun) -> bool:
        """Whether the recording so far holds what the detection checker counts as the cluster noticing."""
        ctx = Context(c.timeline, (), self.topology, fault_start=c.fault_mono, expectation=self._expectation(c))
        return check_detection(ctx).measured is not None

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
