"""One backup/restore acceptance case under load, step by step; suites/backup runs one per kind of loss.

1. make the cluster whole;  2. start the recording (cluster poller, locust load writing unique
keys);  3. warm up until writes are acknowledged;  4. back up (`harness.backup.procedure.backup`:
configuration, then the data under a filesystem freeze) — the backup point;  5. let the load
write for `LOSS_AFTER_S` more, the writes a restore must roll back;  6. lose the data (the
group's files deleted or overwritten) or the configuration (`cibadmin --erase`);  7. restore
(`procedure.restore`) — the RTO;  8. recover to full redundancy (`Driver.recover`);  9. read the
configuration and every acknowledged write back;  10. judge (harness/checkers/backup.py and the
redundancy checker) and save the evidence, whatever happened.

A step the cluster answers with a failure becomes a verdict naming the step and the answer (as in
harness/runner.py); a bug of ours, or a setup step that fails, makes the case an ERROR.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from harness.backup.cib import normalise, version
from harness.backup.manifest import CIB, read_manifest
from harness.backup.procedure import backup, restore
from harness.backup.result import SETUP_STEPS, BackupCaseResult
from harness.checkers import Verdict, check_safe
from harness.checkers.backup import (
    BackupHistory,
    RefusalHistory,
    check_refused,
    judge_case,
)
from harness.drivers import open_driver
from harness.errors import FalloverError, WaitTimeout
from harness.load import REPO, Load, verify
from harness.notifications import testbed_tails
from harness.poller import ClusterPoller
from harness.status import service_answer
from harness.steps import Steps
from harness.testbed.base import Testbed
from harness.timeline import (
    CLUSTER_REDUNDANT,
    FAULT_HEALED,
    FAULT_INJECTED,
    TEST_MARK,
    Timeline,
    load_requests,
)
from harness.wait import wait_until

Kind = Literal["data", "config"]
TITLES: dict[str, str] = {
    "data": "consistent backup under load; the application's data destroyed (files deleted and overwritten); "
            "restored",
    "config": "consistent backup under load; the cluster configuration erased (cibadmin --erase); restored",
    "refusal": "a backup with one changed byte is refused by `fallover restore`, naming the file; nothing touched",
}
ASSERTED = ("backup_time", "restored_writes", "rpo", "restore_time", "config_restored", "redundancy_restored")
WARMUP_S = 3.0
LOSS_AFTER_S = 3.0
"""How long the load writes between the backup and the loss: those writes are what a restore rolls back."""

DESTROY_DATA = """set -u
cd "$1" || exit 3
list=$(mktemp) || exit 3
ls -A | grep -v '^\\.tmp-' > "$list"
n=$(wc -l < "$list")
awk 'NR % 2 == 0' "$list" | xargs -r rm -f --
awk 'NR % 2 == 1' "$list" | while IFS= read -r f; do printf 'corrupted by fallover\\n' > "$f"; done
rm -f "$list"; echo "$n"
"""
"""$1 the data directory: every second file deleted, the others overwritten. stdout: how many files it hit."""


@dataclass
class _Run:
    """What one run of a case holds while it runs: the recorders exist only once their step succeeded."""

    kind: Kind
    case: str
    dir: Path
    steps: Steps
    timeline: Timeline
    history: BackupHistory
    info: list[str] = field(default_factory=list)
    load: Load | None = None
    poller: ClusterPoller | None = None
    healed: float | None = None


class BackupCase:
    def __init__(self, testbed: Testbed, run_root: Path, *, users: int = 10,
                 log: Callable[[str], None] = lambda _: None) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        self.group = testbed.topology.groups[0]
        self.driver = open_driver(testbed)
        self.run_root = run_root
        self.users = users
        self.log = log

    def run(self, kind: Kind) -> BackupCaseResult:
        """One case; whatever the cluster or the harness does, it ends judged with its evidence saved."""
        case = f"backup_restore_{kind}"
        d = self.run_root / "backup" / case
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        r = _Run(kind, case, d, Steps(d / "harness-error.txt"), Timeline(meta={"case": case, "started_wall": time.time()}),
                 BackupHistory(case=case, disaster_kind=kind))
        try:
            self._record(r)
        finally:
            result = self._finish(r)
        return result

    def _record(self, r: _Run) -> None:
        steps, timeline, group = r.steps, r.timeline, self.group
        base = f"http://{group.service_ip}:{group.application.port}"
        with steps("make the cluster whole"):
            self.testbed.up(placement=False)
            self.driver.recover(timeout=self.topology.sla.max_recovery_s + 60, placement=False)
        if steps.failed("make the cluster whole"):
            return
        with steps("start the recording"):
            r.poller = ClusterPoller(self.driver, timeline, tails=testbed_tails(self.testbed))
            r.load = Load(self.testbed, log=r.dir / "load.jsonl", host=base, users=self.users,
                          run_id=self._prefix(r.kind))
            r.poller.start()
            r.load.start()
        load = r.load
        if load is None or steps.failed("start the recording"):
            return
        with steps("warm up"):
            wait_until(lambda: any(q.kind == "put" and q.ok for q in load.requests()), timeout=30, interval=0.5,
                       what="the first acknowledged write")
            time.sleep(WARMUP_S)
        if steps.failed("warm up"):
            return
        self.log(f"{r.case}: backing up under load")
        with steps("backup"):
            done = backup(self.testbed, self.driver, r.dir / "backup", progress=self.log)
            point = done.points[group.name]
            g = done.meta.groups[group.name]
            r.history = replace(r.history, backup_point=point, backup_s=done.backup_s, freeze_s=g.freeze_s,
                                saved_config=normalise((r.dir / "backup" / "cluster" / "cib.xml").read_text()))
            timeline.add(TEST_MARK, g.node, mono=point, label="backup point")
            r.info.append(f"backup: {g.files} files ({g.bytes} bytes) of {group.name} from {g.node}, writes held "
                          f"{g.freeze_s} s, and the cluster configuration; in {r.dir / 'backup'}")
        if steps.failed("backup"):
            return
        time.sleep(LOSS_AFTER_S)
        self.log(f"{r.case}: losing the {r.kind}")
        with steps(f"lose the {r.kind}"):
            t = time.monotonic()
            timeline.add(FAULT_INJECTED, None, mono=t, fault=f"{r.kind}_loss", family="backup", target=group.name)
            r.history = replace(r.history, disaster=t)
            r.info.append(self._lose(r.kind))
        time.sleep(1.0)  # whether or not the loss went as planned, the restore is its heal: it always runs
        self.log(f"{r.case}: restoring")
        with steps("restore"):
            r.history = replace(r.history, restore_start=time.monotonic())
            rd = restore(self.testbed, self.driver, r.dir / "backup", progress=self.log)
            r.history = replace(r.history, restore_s=rd.restore_s)
            r.healed = timeline.add(FAULT_HEALED, None, fault=f"{r.kind}_loss", family="backup",
                                    target=group.name).mono
            r.info.append(f"restore: configuration {'replaced' if rd.config_replaced else 'left as it was'}; data put "
                          f"back on {', '.join(f'{g}: {n}' for g, n in rd.nodes.items())}; timings {rd.timings}")
        with steps("recover to full redundancy"):
            self.driver.recover(timeout=self.topology.sla.max_recovery_s + 30)
            healed = r.healed
            if healed is not None:
                try:  # the poller's own account of it, which the redundancy verdict reads
                    wait_until(lambda: timeline.first(CLUSTER_REDUNDANT, after=healed), timeout=15,
                               what="the poller to see the cluster redundant")
                except WaitTimeout:
                    pass  # the verdict says so, from the recording
        with steps("read the configuration back"):
            r.history = replace(r.history, restored_config=normalise(self.driver.config_dump()))
        with steps("verify writes"):
            load.stop()
            verify(self.testbed, load.log, base)

    def run_refusal(self) -> BackupCaseResult:
        """A backup with one changed byte: `fallover restore` must refuse it naming the file, touching nothing."""
        case = "backup_refuses_changed_byte"
        d = self.run_root / "backup" / case
        if d.exists():
            shutil.rmtree(d)
        d.mkdir(parents=True)
        steps = Steps(d / "harness-error.txt")
        h = RefusalHistory(case, tampered="")
        info: list[str] = []
        try:
            with steps("make the cluster whole"):
                self.testbed.up(placement=False)
            with steps("backup"):
                if steps.failed("make the cluster whole"):
                    raise FalloverError("not attempted: the cluster could not be made whole")
                backup(self.testbed, self.driver, d / "backup", progress=self.log)
                sums = read_manifest(d / "backup")
                victim = d / "backup" / next((rel for rel in sums if rel.startswith("data/")), CIB)
                data = bytearray(victim.read_bytes())
                data[len(data) // 2] ^= 0x01
                victim.write_bytes(bytes(data))
                h = replace(h, tampered=str(victim))
                info.append(f"changed one byte (offset {len(data) // 2}) of {victim}")
            if not steps.failed("backup"):
                with steps("try to restore it"):
                    state = self.driver.state()
                    h = replace(h, config_before=version(self.driver.config_dump()),
                                node_before=state.group_node(self.group.name) if state else None)
                    r = subprocess.run([sys.executable, "-m", "harness.cli", "restore", str(d / "backup"),
                                        "--testbed", str(self.topology.source)], capture_output=True, text=True,
                                       timeout=300, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
                                       check=False)
                    state = self.driver.state()
                    h = replace(h, exit_status=r.returncode, stderr=r.stderr,
                                config_after=version(self.driver.config_dump()),
                                node_after=state.group_node(self.group.name) if state else None)
        finally:
            result = self._refusal_result(d, steps, h, info)
        return result

    def _refusal_result(self, d: Path, steps: Steps, h: RefusalHistory, info: list[str]) -> BackupCaseResult:
        verdicts = {"refused": check_safe(check_refused, h, name="refused")}
        result = BackupCaseResult(h.case, TITLES["refusal"], *_step_verdicts(verdicts, ("refused",), steps), d, h,
                                  steps.done, {s.name: s.seconds for s in steps.done}, info)
        result.save()
        return result

    def _prefix(self, kind: Kind) -> str:
        """The keys' prefix: unique per run and case, so a case reads back only its own writes."""
        return f"bk{kind}-{self.run_root.name}"

    def _lose(self, kind: Kind) -> str:
        """Destroy the group's data, or the cluster's configuration; one line saying what was done."""
        group = self.group.name
        if kind == "config":
            t0 = time.monotonic()
            self.driver.admin(["cibadmin", "--erase", "--force"])
            # crm_mon forgets the group at once, but its resources run on until the cluster has stopped them
            # as orphans: only then is the configuration really lost (else a quick restore finds them running)
            wait_until(lambda: self._group_stopped(), timeout=60, interval=0.5,
                       what=f"the cluster to stop {group}'s resources after the erase")
            return (f"lost: the cluster configuration erased (cibadmin --erase --force); the cluster stopped {group} "
                    f"(its filesystem unmounted everywhere) {time.monotonic() - t0:.1f} s later")
        state = self.driver.state()
        node = state.group_node(group) if state else None
        if node is None:
            raise FalloverError(f"{group} is not running: no data to destroy")
        kv = f"{self.testbed.mountpoint(group)}/kv"
        res = self.testbed.node(node).run(["sh", "-c", DESTROY_DATA, "sh", kv], timeout=120)
        hit = int(res.stdout.strip() or 0)
        if hit == 0:
            raise FalloverError(f"{node}: {kv} held no file to destroy")
        return f"lost: {hit} files in {kv} on {node}, every second one deleted and the others overwritten"

    def _group_stopped(self) -> bool:
        """The group's filesystem mounted nowhere (where the testbed can tell), else its service not answering."""
        mounts = self.testbed.mounts()
        if mounts is not None and self.group.disk is not None:
            return not mounts.get(self.group.disk)
        return service_answer(self.testbed, self.group.name) is None

    def _finish(self, r: _Run) -> BackupCaseResult:
        """Stop the recorders, forget the keys, judge, save: each on its own, none skipped."""
        steps = r.steps
        if r.kind == "config" and r.history.disaster is not None and not r.healed:
            with steps("final restore of the configuration"):  # never leave the cluster erased for what follows
                self.driver.config_restore((r.dir / "backup" / CIB).read_text())
                self.driver.recover(timeout=self.topology.sla.max_recovery_s + 30)
        for name, proc in (("load", r.load), ("cluster poller", r.poller)):
            if proc is not None:
                with steps(f"stop the {name}"):
                    proc.stop()
        if r.load is not None:
            with steps("forget this case's keys"):
                self._forget_keys(r.kind)
        verdicts: dict[str, Verdict] = {}
        with steps("judge"):
            requests = load_requests(r.load.log) if r.load is not None and r.load.log.exists() else []
            r.timeline.meta["counts"] = {"poller_errors": r.poller.errors if r.poller else 0,
                                         "timeline_dropped": r.timeline.dropped}
            verdicts = judge_case(r.history, requests, r.timeline, self.topology)
        result = BackupCaseResult(r.case, TITLES[r.kind], *_step_verdicts(verdicts, ASSERTED, steps), r.dir, r.history,
                                  steps.done, {s.name: s.seconds for s in steps.done}, r.info)
        problems = []
        for what, write in (("timeline.json", lambda: r.timeline.save(r.dir / "timeline.json")),
                            ("verdicts and report", result.save)):
            try:
                write()
            except Exception as e:  # noqa: BLE001  # one piece of evidence that cannot be written never costs the others
                problems.append(f"{what}: {type(e).__name__}: {e}")
        if problems:
            (r.dir / "evidence-errors.txt").write_text("\n".join(problems) + "\n")
        if result.passed:  # the manifest, description and configuration stay as evidence; the data is bulk
            shutil.rmtree(r.dir / "backup" / "data", ignore_errors=True)
        return result

    def _forget_keys(self, kind: Kind) -> None:
        """Delete this case's keys from the shared disk: each run writes thousands."""
        state = self.driver.state()
        g = self.group.name
        node = state.group_node(g) if state else None
        if node is not None:
            self.testbed.node(node).run(["find", f"{self.testbed.mountpoint(g)}/kv", "-maxdepth", "1", "-name",
                                         f"{self._prefix(kind)}-*", "-delete"], timeout=60, check=False)


def _step_verdicts(verdicts: dict[str, Verdict], asserted: tuple[str, ...],
                   steps: Steps) -> tuple[dict[str, Verdict], tuple[str, ...]]:
    """The cluster's answer to a step of the procedure (not a setup step, not a bug of ours): a verdict of its own."""
    for s in steps.done:
        if not s.ok and not s.harness_error and s.name not in SETUP_STEPS:
            verdicts[s.name] = Verdict(s.name, False, None, None, "", s.error or "failed")
            asserted = (*asserted, s.name)
    return verdicts, asserted
