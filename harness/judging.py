"""From a case's recording to its verdicts: the checkers, the log and consistency audits, the failed steps.

Split from harness/runner.py, which records the case step by step (harness/recording.py holds what a
run of a case holds). The checkers are pure functions of the recording; what they are given is saved
with the timeline (``meta.expectation``, ``meta.fault_start``), so `fallover report --sla` judges again
from it alone.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from harness.audits.departures import departures, first_per_node, log_clock
from harness.audits.logs import disruptions_from
from harness.case_result import CaseResult, save_evidence
from harness.checkers import CHECKERS, Verdict, check_safe
from harness.checkers.recorded import context_of
from harness.drivers.base import Driver
from harness.errors import FalloverError
from harness.faults import FAULTS
from harness.probe import load_samples, transitions
from harness.recording import CaseRun
from harness.testbed.base import Testbed, pace_of
from harness.timeline import CLUSTER_LOGGED_LOSS, load_requests
from harness.topology import Topology

# Which verdicts decide the test, per expected outcome (the others are recorded as information).
ASSERTED: dict[str, tuple[str, ...]] = {
    "fallover": ("detection", "notification", "fallover", "outage", "lost_writes", "split_brain",
                 "redundancy_restored", "policy"),
    "stay": ("fallover", "outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "outage": ("detection", "notification", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "planned": ("outage", "lost_writes", "split_brain", "redundancy_restored", "policy"),
    "restart": ("starts", "lost_writes", "split_brain", "redundancy_restored", "policy"),
}


class Judging:
    """The runner's judging half; needs ``topology``, ``testbed``, ``driver`` and ``load`` from the runner."""

    topology: Topology
    testbed: Testbed
    driver: Driver
    load: bool
    keep_logs: bool  # node log lines saved for passing cases too (always for the others)
    log: Callable[[str], None]
    _spawn_ahead: Callable[[CaseRun], None]  # harness.recording: the next case's locust, once this one is timed

    def _judge(self, c: CaseRun, asserted: tuple[str, ...] | None) -> CaseResult:
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
            if c.audit is not None and c.fault_mono is not None:
                self._logged_departures(c)
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
        self._spawn_ahead(c)
        result = CaseResult(c.case, c.expected, verdicts, c.run_dir, tuple(names), c.timings, findings,
                            c.steps.done, c.diagnosis, c.counts)
        save_evidence(result, c.timeline, requests, c.recovery, topology=self.topology)
        self._save_logs(c, result.passed)
        return result

    def _save_logs(self, c: CaseRun, passed: bool) -> None:
        """The case's node log lines in logs/: always for a case that did not pass, for the others on request."""
        if c.audit is None or (passed and not self.keep_logs):
            return
        try:
            c.audit.save_lines(c.run_dir / "logs")
        except (OSError, FalloverError) as e:  # evidence beside the verdicts: its loss is said, not a traceback
            self.log(f"the node logs of {c.run_dir.name} could not be saved: {e}")

    def _logged_departures(self, c: CaseRun) -> None:
        """The nodes' own log lines saying a peer left, as timeline events (harness/audits/departures).

        Each event is stamped at the late end of its clock's uncertainty: never earlier than the cluster
        could have known. The clocks are kept in the timeline's meta, as evidence for the stamps."""
        assert c.audit is not None
        clocks = {n: k for n in self.topology.node_names if self.testbed.running(n)
                  and (k := log_clock(self.testbed, n)) is not None}
        c.timeline.meta["log_clocks"] = {n: {"offset_s": k.offset, "err_s": k.err} for n, k in clocks.items()}
        try:
            found = first_per_node(departures(c.audit.new_lines(), clocks))
        except (OSError, FalloverError) as e:  # the log audit says what it could not read; detection has the poller
            self.log(f"the node logs of {c.run_dir.name} could not be read for departures: {e}")
            return
        for d in found:
            c.timeline.add(CLUSTER_LOGGED_LOSS, d.node, wall=d.wall + d.err, data={"seen_from": d.seen_from, "what": d.what, "line": d.line, "clock_err_s": d.err})

    def _asserted(self, c: CaseRun) -> tuple[str, ...]:
        if c.expected is None:
            return ()
        names = ASSERTED[c.expected.outcome] + FAULTS[c.case.fault].extra_asserted + ("logs", "consistency")
        if FAULTS[c.case.fault].family == "planned":  # nothing failed: nothing to detect or notify
            names = tuple(a for a in names if a not in ("detection", "notification"))
        return names

    def _audit_logs(self, c: CaseRun) -> Verdict:
        """Error lines in the cluster's logs, minus what the fault and the recovery explain (audits/noise.py)."""
        assert c.audit is not None
        faults = [c.case.fault] + ([c.case.trigger] if c.case.trigger else [])
        t0 = time.monotonic()
        c.audit.check_pipeline()  # a log that its node's marker never reached is unknown, not clean
        c.timings["log_pipeline_s"] = time.monotonic() - t0
        res = c.audit.result(disruptions_from(c.timeline, self.topology), faults=faults)
        res.save(c.run_dir)
        return res.verdict("logs", evidence=c.run_dir)

    def _counts(self, c: CaseRun, samples: list[Any]) -> dict[str, int]:
        """What the recorders lost or could not read: shown in the report, judged by the checkers."""
        counts = {"poller_errors": c.poller.errors if c.poller is not None else 0,
                  "timeline_dropped": c.timeline.dropped,
                  "bad_notification_lines": c.poller.bad_notification_lines if c.poller is not None else 0}
        if len(samples) > 1:  # the probe sends on a fixed schedule (the testbed's pace): a gap is a slot it skipped
            span = samples[-1].mono - samples[0].mono
            hz = c.probe.hz if c.probe is not None else pace_of(self.testbed).probe_hz  # the rate it really ran at
            counts["probe_skipped"] = max(0, int(round(span * hz)) + 1 - len(samples))
        return counts

    def _expectation(self, c: CaseRun) -> dict[str, Any]:
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

