"""Backup and restore verdicts: pure functions of what a backup case recorded (history.json + the load log).

A write counts at its acknowledgement (request start + latency): the client may rely on it
from then on. The backup point is the harness's clock just before the filesystem freeze, so
every write acknowledged before it was on the disk when the copy was taken.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from harness.backup.cib import differences
from harness.checkers.base import UNKNOWN, Context, Verdict, check_safe, fmt_s
from harness.checkers.lost_writes import SHOWN, why_lost
from harness.checkers.redundancy import check_redundancy_restored
from harness.timeline import Request, Timeline, load_requests
from harness.topology import Sla, Topology


@dataclass(frozen=True)
class BackupHistory:
    """What one backup case recorded besides its load log; monotonic times share the load log's clock."""

    case: str
    disaster_kind: str
    """What was destroyed: "data" (the group's files deleted or overwritten) or "config" (the CIB erased)."""
    backup_point: float | None = None
    backup_s: float | None = None
    freeze_s: float | None = None
    disaster: float | None = None
    restore_start: float | None = None
    restore_s: float | None = None
    saved_config: str | None = None
    """The configuration in the backup, normalised (harness.backup.cib.normalise)."""
    restored_config: str | None = None
    """The cluster's configuration after the restore and recovery, normalised."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> BackupHistory:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in raw.items() if k in names})


@dataclass(frozen=True)
class BackupContext:
    history: BackupHistory
    requests: Sequence[Request]
    sla: Sla

    def rel(self, t: float) -> str:
        """A time relative to the backup point (the origin of every "+x s" in these verdicts)."""
        origin = self.history.backup_point if self.history.backup_point is not None else 0.0
        return f"{t - origin:+.2f} s"

    def acked(self, before: float | None = None) -> dict[str, Request]:
        """key → its last acknowledged PUT (acknowledged before ``before``, if given)."""
        out: dict[str, Request] = {}
        for r in self.requests:
            if r.kind == "put" and r.ok and r.key is not None and r.value is not None and \
                    (before is None or r.mono + r.latency_s < before):
                out[r.key] = r
        return out

    def verifies(self) -> dict[str, Request]:
        out: dict[str, Request] = {}
        for r in sorted(self.requests, key=lambda r: r.mono):
            if r.kind == "verify" and r.key is not None:
                out[r.key] = r
        return out


def _timed(name: str, measured: float | None, limit: float, what: str, missing: str) -> Verdict:
    if measured is None:
        return Verdict(name, UNKNOWN, None, limit, "s", missing)
    return Verdict(name, measured <= limit, round(measured, 3), limit, "s",
                   f"{what} took {fmt_s(measured)} s (limit {fmt_s(limit)} s)")


def check_backup_time(ctx: BackupContext) -> Verdict:
    """Backup start → configuration saved, data copied under its freeze, manifest written; vs max_backup_s."""
    h = ctx.history
    v = _timed("backup_time", h.backup_s, ctx.sla.max_backup_s, "the backup",
               "the backup did not complete, so its time could not be measured")
    if h.freeze_s is not None and v.measured is not None:
        return Verdict(v.name, v.valid, v.measured, v.limit, v.unit,
                       f"{v.explanation}; writes were held for {fmt_s(h.freeze_s)} s of it (the freeze)")
    return v


def check_restore_time(ctx: BackupContext) -> Verdict:
    """The RTO: restore start → configuration and data back and the service answering; vs max_restore_s."""
    return _timed("restore_time", ctx.history.restore_s, ctx.sla.max_restore_s,
                  "the restore (configuration and data back, the service answering)",
                  "the restore did not complete, so the RTO could not be measured")


def check_restored_writes(ctx: BackupContext) -> Verdict:
    """Every write acknowledged before the backup point reads back, with its value, after the restore.

    Judged by the last value acknowledged before the point. Without a write acknowledged before
    the point there is nothing to judge: "unknown", never a pass.
    """
    h = ctx.history
    name = "restored_writes"
    if h.backup_point is None:
        return Verdict(name, UNKNOWN, None, 0, "writes", "no backup point was recorded: the backup did not happen")
    before = ctx.acked(before=h.backup_point)
    if not before:
        return Verdict(name, UNKNOWN, None, 0, "writes", "no write was acknowledged before the backup point, "
                                                         "so the backup's consistency could not be judged")
    verifies = ctx.verifies()
    if not verifies:
        return Verdict(name, UNKNOWN, None, 0, "writes",
                       f"{len(before)} writes acknowledged before the backup point, but nothing was read back")
    lost = [(k, why) for k, put in before.items() if (why := why_lost(put, verifies.get(k))) is not None]
    if not lost:
        return Verdict(name, True, 0, 0, "writes", f"all {len(before)} writes acknowledged before the backup point "
                                                   "read back intact after the restore")
    names = "; ".join(f"{k} (acknowledged at {ctx.rel(before[k].mono + before[k].latency_s)}, {why})"
                      for k, why in lost[:SHOWN])
    more = f"; and {len(lost) - SHOWN} more" if len(lost) > SHOWN else ""
    return Verdict(name, False, len(lost), 0, "writes",
                   f"{len(lost)} of {len(before)} writes acknowledged before the backup point are not in the "
                   f"restored data: {names}{more}")


def check_rpo(ctx: BackupContext) -> Verdict:
    """The data-loss window: the oldest acknowledged write the restore did not bring back → the data loss.

    Writes acknowledged after the loss (into the damaged store, before the restore) are counted in
    the explanation but do not widen the window: RPO looks back from the moment of the loss.
    A consistent backup keeps the window within (loss − backup point); a copy that missed
    acknowledged data widens it.
    """
    h = ctx.history
    limit = ctx.sla.max_rpo_s
    if h.disaster is None or h.backup_point is None:
        return Verdict("rpo", UNKNOWN, None, limit, "s", "the backup or the data loss was not recorded")
    verifies = ctx.verifies()
    if not verifies:
        return Verdict("rpo", UNKNOWN, None, limit, "s", "nothing was read back after the restore")
    acked = ctx.acked()
    lost = sorted(put.mono + put.latency_s for k, put in acked.items() if why_lost(put, verifies.get(k)) is not None)
    before, after = [t for t in lost if t <= h.disaster], [t for t in lost if t > h.disaster]
    age = h.disaster - h.backup_point
    later = f"; {len(after)} more, acknowledged after the loss and before the restore, were rolled back too" \
        if after else ""
    if not before:
        return Verdict("rpo", True, 0.0, limit, "s",
                       f"no write acknowledged before the data loss at {ctx.rel(h.disaster)} was lost "
                       f"(the backup was {fmt_s(age)} s old){later}")
    window = h.disaster - before[0]
    return Verdict("rpo", window <= limit, round(window, 3), limit, "s",
                   f"data-loss window {fmt_s(window)} s (limit {fmt_s(limit)} s): {len(before)} acknowledged writes "
                   f"from {ctx.rel(before[0])} to the loss at {ctx.rel(h.disaster)} were not brought back "
                   f"(backup point +0.00 s, {fmt_s(age)} s before the loss){later}")


def check_config_restored(ctx: BackupContext) -> Verdict:
    """The cluster's configuration after the restore equals the saved one (normalised; harness.backup.cib)."""
    h = ctx.history
    if h.saved_config is None:
        return Verdict("config_restored", UNKNOWN, None, "equal", "", "the backup holds no configuration")
    if h.restored_config is None:
        return Verdict("config_restored", UNKNOWN, None, "equal", "",
                       "the cluster's configuration could not be read after the restore")
    diff = differences(h.saved_config, h.restored_config)
    if not diff:
        return Verdict("config_restored", True, "equal", "equal", "",
                       "the configuration after the restore equals the saved one (normalised: version counters, "
                       "status and the properties the cluster writes itself left out)")
    return Verdict("config_restored", False, "differs", "equal", "",
                   "the configuration after the restore differs from the saved one: " + " | ".join(diff))


@dataclass(frozen=True)
class RefusalHistory:
    """A restore of a backup with one changed byte, as `fallover restore` answered it."""

    case: str
    tampered: str
    """The file of the backup that had one byte changed."""
    exit_status: int | None = None
    stderr: str = ""
    config_before: str | None = None
    """`admin_epoch.epoch` of the cluster's configuration before the attempt, and after it."""
    config_after: str | None = None
    node_before: str | None = None
    """Where the group ran before the attempt, and after it."""
    node_after: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_refused(h: RefusalHistory) -> Verdict:
    """Refused with exit status 2 and one line naming the changed file, and nothing touched: the
    configuration's version the same (no change was written) and the group where it was."""
    name = "refused"
    if h.exit_status is None:
        return Verdict(name, UNKNOWN, None, 2, "exit status", "the restore was not attempted")
    said = h.stderr.strip()
    problems = []
    if h.exit_status != 2:
        problems.append(f"exit status {h.exit_status}, not 2")
    if len(said.splitlines()) != 1 or h.tampered not in said:
        problems.append(f"the message is not one line naming {h.tampered}")
    if h.config_before is None or h.config_before != h.config_after:
        problems.append(f"the configuration changed (version {h.config_before} → {h.config_after})")
    if h.node_before is None or h.node_before != h.node_after:
        problems.append(f"the group moved or stopped ({h.node_before} → {h.node_after})")
    if problems:
        return Verdict(name, False, h.exit_status, 2, "exit status",
                       f"a backup with one changed byte in {h.tampered}: {'; '.join(problems)}; it said: {said[:300]!r}")
    return Verdict(name, True, 2, 2, "exit status",
                   f"refused with exit status 2 and nothing touched (configuration version {h.config_before}, the "
                   f"group on {h.node_before}): {said}")


BACKUP_CHECKERS: dict[str, Callable[[BackupContext], Verdict]] = {
    "backup_time": check_backup_time,
    "restored_writes": check_restored_writes,
    "rpo": check_rpo,
    "restore_time": check_restore_time,
    "config_restored": check_config_restored,
}


def judge(history: BackupHistory, requests: Sequence[Request], sla: Sla) -> dict[str, Verdict]:
    """Every backup verdict; a checker that raises gives "unknown", never a crash."""
    ctx = BackupContext(history, requests, sla)
    return {name: check_safe(fn, ctx, name=name) for name, fn in BACKUP_CHECKERS.items()}


def judge_case(history: BackupHistory, requests: Sequence[Request], timeline: Timeline,
               topology: Topology) -> dict[str, Verdict]:
    """Every verdict of a backup case: the backup verdicts, and recovery as for every fault — the data or
    configuration loss is the fault (FAULT_INJECTED), the restore's end its heal (FAULT_HEALED)."""
    verdicts = judge(history, requests, topology.sla)
    ctx = Context(timeline, requests, topology, fault_start=history.disaster,
                  expectation={"group": topology.groups[0].name} if topology.groups else {})
    verdicts["redundancy_restored"] = check_safe(check_redundancy_restored, ctx, name="redundancy_restored")
    return verdicts


def judge_saved(case_dir: Path, topology: Topology) -> dict[str, Verdict]:
    """A saved backup case judged again from its files (history.json, load.jsonl, timeline.json), without a
    cluster: e.g. against another topology's SLAs (`topology.model_copy(update={"sla": …})`)."""
    raw = json.loads((case_dir / "history.json").read_text())
    if "tampered" in raw:
        return {"refused": check_safe(check_refused, RefusalHistory(**raw), name="refused")}
    load = case_dir / "load.jsonl"
    requests = load_requests(load) if load.exists() else []
    return judge_case(BackupHistory.from_dict(raw), requests, Timeline.load(case_dir / "timeline.json"), topology)
