"""Judge a saved run again against other SLAs: the checkers over the saved recordings, each changed verdict marked.

Jepsen's habit: analyse a stored history after the fact. The checkers are pure functions of
the recording (timeline.json, load.jsonl) and of the topology, so `fallover report RUN
--sla-outage 5` needs no cluster. Verdicts that are not checkers' (the log audit, a failed
step) are kept as recorded. Each case is also re-judged at the run's own SLA: a verdict that
differs there was changed by the checkers' code since the run, not by the new SLA, and the
page says so.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.case_result import CaseResult
from harness.checkers import CHECKERS, Verdict, run_all
from harness.checkers.recorded import context_of
from harness.errors import TopologyError, UsageError
from harness.report.backup import BACKUP_DIR, BackupCase
from harness.report.results import CaseRecord, RunResults
from harness.timeline import load_requests
from harness.topology import DEFAULT_TESTBED, Sla, Topology, load_topology

LIMIT_FIELDS = tuple(Sla.model_fields)
"""Every SLA field (max_detection_s, …): `--sla NAME=VALUE` accepts these, or their short names."""


def short_name(field_name: str) -> str:
    """``max_outage_s`` → ``outage``: the CLI's shortcut (``--sla-outage``)."""
    return field_name.removeprefix("max_").removesuffix("_s")


def parse_overrides(items: Sequence[str]) -> dict[str, float]:
    """``["outage=5", "max_recovery_s=20"]`` → ``{"max_outage_s": 5.0, "max_recovery_s": 20.0}``; bad input raises UsageError.

    >>> parse_overrides(["outage=5"])
    {'max_outage_s': 5.0}
    """
    by_short = {short_name(f): f for f in LIMIT_FIELDS}
    out: dict[str, float] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip().replace("-", "_")
        key = name if name in LIMIT_FIELDS else by_short.get(name)
        if not sep or key is None:
            raise UsageError(f"--sla {item!r}: expected NAME=SECONDS with NAME one of "
                             f"{', '.join(short_name(f) for f in LIMIT_FIELDS)}")
        try:
            seconds = float(value)
        except ValueError:
            raise UsageError(f"--sla {item!r}: {value!r} is not a number of seconds") from None
        if not seconds > 0:
            raise UsageError(f"--sla {item!r}: a limit must be more than 0 seconds")
        out[key] = seconds
    return out


def run_topology(run: RunResults) -> Topology:
    """The run's topology with the SLA it was judged with: the copy saved at run start, else the file it named."""
    candidates = [run.run_dir / "topology.yaml"]
    if run.meta.get("testbed"):
        candidates.append(Path(str(run.meta["testbed"])))
    candidates.append(DEFAULT_TESTBED)
    topo: Topology | None = None
    for path in candidates:
        if path.is_file():
            try:
                topo = load_topology(path)
                break
            except TopologyError:
                continue
    if topo is None:
        raise UsageError(f"{run.run_dir}: no readable topology (looked at {', '.join(map(str, candidates))})")
    recorded = {k: v for k, v in (run.meta.get("sla") or {}).items() if k in LIMIT_FIELDS}
    return with_sla(topo, recorded)


def with_sla(topology: Topology, overrides: Mapping[str, float]) -> Topology:
    sla = Sla.model_validate({**topology.sla.model_dump(), **overrides})
    return topology.model_copy(update={"sla": sla})


@dataclass(frozen=True)
class Change:
    """A verdict whose status (pass / fail / unknown / not judged) differs from the recorded one."""

    name: str
    before: Verdict
    after: Verdict


@dataclass
class Rejudged:
    """One case judged again: ``after`` is the new result; ``changes`` by name; ``drift`` see the module doc."""

    record: CaseRecord
    before: CaseResult
    after: CaseResult
    changes: dict[str, Change] = field(default_factory=dict)
    drift: list[str] = field(default_factory=list)
    why_not: str | None = None

    @property
    def status_changed(self) -> bool:
        return self.before.status != self.after.status


def _differs(a: Verdict, b: Verdict) -> bool:
    return a.status != b.status


def rejudge_case(record: CaseRecord, recorded: Topology, new: Topology) -> Rejudged:
    """Rerun every checker over one saved case with ``new``'s SLA (and with ``recorded``'s, to find drift)."""
    before = record.result
    if record.timeline is None:
        return Rejudged(record, before, before, why_not="no readable timeline.json: kept as recorded")
    if not record.timeline.meta.get("expectation") and not record.timeline.meta.get("expected"):
        return Rejudged(record, before, before,
                        why_not="the case stopped before its expected outcome was known: kept as recorded")
    load_log = record.dir / "load.jsonl"
    requests = load_requests(load_log) if load_log.is_file() else []
    judged = run_all(context_of(record.timeline, requests, new), CHECKERS)
    again = run_all(context_of(record.timeline, requests, recorded), CHECKERS)
    drift = [n for n, v in again.items() if n in before.verdicts and
             (v.status, v.explanation) != (before.verdicts[n].status, before.verdicts[n].explanation)]
    verdicts = {**before.verdicts, **{n: v for n, v in judged.items() if n in before.verdicts}}
    after = dataclasses.replace(before, verdicts=verdicts)
    changes = {n: Change(n, before.verdicts[n], v) for n, v in verdicts.items()
               if n in before.verdicts and _differs(before.verdicts[n], v)}
    return Rejudged(record, before, after, changes, drift)


def rejudge_run(run: RunResults, overrides: Mapping[str, float]) -> list[Rejudged]:
    """Every case of ``run`` judged again with the run's SLA changed by ``overrides``."""
    recorded = run_topology(run)
    new = with_sla(recorded, overrides)
    return [rejudge_case(c, recorded, new) for c in run.cases]


def slug(overrides: Mapping[str, float]) -> str:
    """A file-name part naming the overrides: ``sla-outage-5``."""
    return "sla-" + "-".join(f"{short_name(k)}-{v:g}" for k, v in sorted(overrides.items()))


def rejudge_backup(run_dir: Path, cases: Sequence[BackupCase], recorded: Topology, new: Topology) -> list[BackupCase]:
    """The backup suite's cases judged again the same way (its ``judge_saved``), changes marked on each."""
    try:
        from harness.checkers import backup as backup_checkers
    except ImportError:
        return list(cases)
    judge = getattr(backup_checkers, "judge_saved", None)
    out = []
    for case in cases:
        case_dir = run_dir / BACKUP_DIR / case.case
        if judge is None or not (case_dir / "history.json").is_file() or case.status == "ERROR":
            out.append(dataclasses.replace(case, why_not="kept as recorded: no saved history to judge again"
                                           if judge is not None else "kept as recorded: no backup re-judge"))
            continue
        try:
            judged = judge(case_dir, new)
            again = judge(case_dir, recorded)
        except Exception as e:  # noqa: BLE001 — one case that cannot be re-judged keeps its recorded verdicts
            out.append(dataclasses.replace(case, why_not=f"kept as recorded: {type(e).__name__}: {e}"))
            continue
        verdicts = {**case.verdicts, **{n: v for n, v in judged.items() if n in case.verdicts}}
        changes = {n: Change(n, case.verdicts[n], v) for n, v in verdicts.items() if _differs(case.verdicts[n], v)}
        asserted = case.asserted if case.asserted is not None else list(verdicts)
        status = "FAIL" if any(v.valid is not True for n, v in verdicts.items() if n in asserted) else "PASS"
        drift = [n for n, v in again.items() if n in case.verdicts and
                 (v.status, v.explanation) != (case.verdicts[n].status, case.verdicts[n].explanation)]
        out.append(dataclasses.replace(case, verdicts=verdicts, status=status, changes=changes, drift=drift,
                                       was=case.status if status != case.status else None))
    return out
