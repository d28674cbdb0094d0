"""The recovery runbook of a run: per failure type, the steps that really returned the cluster to full redundancy.

"Document recovery processes" is the last line of the checklist fallover automates. A
hand-written runbook drifts from what works; this one is generated from each case's
``recovery.json`` (harness/oplog.py: the commands the transports ran, the waits, the testbed
operations, with their durations) and judged by the case's own ``redundancy_restored`` verdict,
so a step list is only called a recovery when the cluster was seen fully redundant after it.

Pure: it reads saved files only, so ``fallover report`` rebuilds it without a cluster.

>>> rb = build(Path("/nonexistent"))
>>> rb.procedures, rb.missing
([], [])
"""

from __future__ import annotations

import shlex
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.oplog import Entry, OpLog, Phase
from harness.report.history import read_json

RECORD = "recovery.json"


@dataclass(frozen=True)
class RunbookStep:
    """One step as it was done. ``kind``: command (changes something; ``command`` is the exact line),
    check (a read-only command), action (a testbed operation with no command line), wait, note."""

    kind: str
    description: str
    command: str | None = None
    node: str | None = None
    duration_s: float | None = None
    ok: bool = True
    phase: str = ""
    depth: int = 0
    polls: int = 1
    detail: str = ""


@dataclass(frozen=True)
class Procedure:
    """How the cluster came back from one failure type, taken from one case (``from_case``)."""

    failure_type: str
    from_case: str
    steps: list[RunbookStep]
    total_s: float | None = None
    note: str = ""
    status: str = ""
    restored: bool = False
    other_cases: tuple[str, ...] = ()
    phases: tuple[tuple[str, float, bool], ...] = ()  # (name, seconds, ok) per phase, in order


@dataclass(frozen=True)
class Runbook:
    run_id: str
    procedures: list[Procedure]
    missing: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_markdown(self) -> str:
        return render_markdown(self)


@dataclass
class _Case:
    """What one saved case says about its recovery."""

    name: str
    fault: str
    status: str
    restored: bool
    restored_why: str
    started: float
    phases: list[Phase] | None
    problem: str = ""

    @property
    def seconds(self) -> float:
        return round(sum(p.seconds for p in self.phases or []), 3)


def build(run_dir: Path) -> Runbook:
    """The runbook of a saved run; never raises for a missing or malformed case (it says so in ``missing``)."""
    cases = [c for c in (_read_case(d) for d in _case_dirs(run_dir)) if c is not None]
    by_fault: dict[str, list[_Case]] = {}
    for c in sorted(cases, key=lambda c: (c.started, c.name)):
        by_fault.setdefault(c.fault, []).append(c)
    procedures, missing = [], []
    for fault, group in by_fault.items():
        recorded = [c for c in group if c.phases]
        if not recorded:
            why = "; ".join(sorted({f"{c.name}: {c.problem}" for c in group}))
            missing.append(f"{fault}: no case recorded its recovery ({why})")
            continue
        best = min(recorded, key=lambda c: (not c.restored, c.status != "PASS", recorded.index(c)))
        others = tuple(f"{c.name} ({c.status}, {c.seconds:.1f} s)" if c.phases else f"{c.name} ({c.status}, "
                       f"not recorded)" for c in group if c is not best)
        procedures.append(_procedure(best, others))
    return Runbook(run_dir.resolve().name, procedures, missing)


def _case_dirs(run_dir: Path) -> list[Path]:
    if not run_dir.is_dir():
        return []
    return sorted(d for d in run_dir.iterdir()
                  if d.is_dir() and ((d / "verdicts.json").exists() or (d / RECORD).exists()))


def _read_case(d: Path) -> _Case | None:
    verdicts = read_json(d / "verdicts.json") or {}
    name = d.name
    fault = verdicts.get("fault") or name.split("-", 1)[0]  # a case id is <fault>-<target>; fault names have no '-'
    if not fault:
        return None
    rr = (verdicts.get("verdicts") or {}).get("redundancy_restored") or {}
    # run order: each case writes its evidence as it ends (timeline.json would say too, but it is large)
    ended = max((f.stat().st_mtime for f in (d / "verdicts.json", d / RECORD) if f.exists()), default=0.0)
    case = _Case(name, fault, verdicts.get("status", "ERROR"), rr.get("valid") is True,
                 rr.get("explanation", "no redundancy_restored verdict"), ended, None)
    if not (d / RECORD).exists():
        case.problem = f"{RECORD} absent (a run from before the recorder, or the case stopped before healing)"
        return case
    try:
        case.phases = [p for p in OpLog.load(d / RECORD) if p.entries or not p.ok]
    except (OSError, ValueError, KeyError, TypeError) as e:
        case.problem = f"{RECORD} unreadable: {type(e).__name__}: {e}"
        return case
    if not case.phases:
        case.problem = "nothing was done to recover (no step recorded)"
    return case


def _procedure(c: _Case, others: tuple[str, ...]) -> Procedure:
    steps = [_step(e, p.name) for p in c.phases or [] for e in p.entries]
    if not c.restored:
        note = (f"WARNING: the cluster was not seen fully redundant after these steps ({c.restored_why}); "
                "no case of this failure type was: this is the best the run had, not a proven recovery")
    elif c.status != "PASS":
        note = f"the case ended {c.status} on other verdicts; its recovery reached full redundancy"
    else:
        note = ""
    failed = [f"{p.name}: {p.error}" for p in c.phases or [] if not p.ok]
    if failed:
        note = "; ".join(filter(None, [note, "a phase failed: " + "; ".join(failed)]))
    return Procedure(c.fault, c.name, steps, c.seconds, note, c.status, c.restored, others,
                     tuple((p.name, p.seconds, p.ok) for p in c.phases or []))


def _step(e: Entry, phase: str) -> RunbookStep:
    is_cmd = e.kind in ("command", "check")
    return RunbookStep(e.kind, describe(e), e.text if is_cmd else None, e.node, e.seconds, e.ok, phase, e.depth,
                       e.polls, e.detail)


PURPOSES: dict[str, str] = {
    "crm_mon": "read the cluster's state", "crm_resource --cleanup": "forget failed actions (clean up)",
    "crm_resource --clear": "remove the move constraint", "crm_resource --move": "move the group",
    "crm_resource --restart": "restart the group", "crmadmin": "ask whether the DC is idle and attrd has written all",
    "pidof": "is it running", "kill": "signal processes", "corosync-cfgtool -H": "stop corosync",
    "mount": "mount", "umount": "unmount", "fsck.ext4": "check the filesystem", "nft": "traffic rules",
    "ip": "links", "virsh": "the VM", "systemctl": "services",
}
"""What a command is for, by program (and option): the runbook's words; the command line is shown as run."""


def describe(e: Entry) -> str:
    """One line: what this step did and why it matters."""
    if e.kind == "wait":
        looks = f", {e.polls} look{'s' if e.polls != 1 else ''}" if e.polls else ""
        return f"for “{e.text}” ({'reached' if e.ok else 'NOT reached'}{looks})"
    if e.kind in ("action", "note"):
        return e.text
    try:
        words = shlex.split(e.text)
    except ValueError:
        words = e.text.split()
    if len(words) > 2 and Path(words[0]).name in ("sh", "bash") and words[1] == "-c":
        words = shlex.split(words[2]) if words[2] else []
    prog = Path(words[0]).name if words else ""
    purpose = next((v for k, v in PURPOSES.items() if " " in k and k.split()[0] == prog and k.split()[1] in words),
                   PURPOSES.get(prog, f"run {prog}" if prog else "run a command"))
    if prog == "pidof" and len(words) > 1:
        purpose = f"is {words[1]} running"
    where = f" on {e.node}" if e.node else ""
    again = f", {e.polls} times" if e.polls > 1 else ""
    return f"{purpose}{where}{again}"


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    return f"{s:.2f} s" if s < 10 else f"{s:.1f} s"


def render_markdown(rb: Runbook) -> str:
    """The runbook as a person reads it: numbered steps per phase, commands as run, durations as measured."""
    out = [f"# Recovery runbook — run {rb.run_id}", "",
           "Generated from what fallover really did to return the cluster to full redundancy after each",
           "failure type of this run (each case's `recovery.json`), not written by hand. A procedure is called",
           "proven only when the case saw the cluster fully redundant afterwards (its `redundancy_restored` verdict).",
           ""]
    if not rb.procedures:
        out += ["No recovery was recorded in this run.", ""]
    for p in rb.procedures:
        proven = "proven" if p.restored else "NOT proven"
        out += [f"## {p.failure_type} — {_fmt_s(p.total_s)} ({proven}; from case `{p.from_case}`, {p.status})", ""]
        if p.note:
            out += [f"> {p.note}", ""]
        if p.other_cases:
            out += ["Also exercised: " + ", ".join(p.other_cases), ""]
        number = 0
        for name, seconds, ok in p.phases:
            out += [f"### {name} — {_fmt_s(seconds)}{'' if ok else ' (FAILED)'}", ""]
            for s in (s for s in p.steps if s.phase == name):
                if s.depth == 0:
                    number += 1
                out.append(_md_step(s, number))
            out.append("")
    if rb.missing:
        out += ["## Failure types without a recorded recovery", ""] + [f"- {m}" for m in rb.missing] + [""]
    return "\n".join(out)


def _md_step(s: RunbookStep, number: int) -> str:
    lead = f"{number}." if s.depth == 0 else "-"
    indent = "   " * s.depth
    flag = "" if s.ok else " **FAILED**"
    line = f"{indent}{lead} **{s.kind}** {s.description} — {_fmt_s(s.duration_s)}{flag}"
    if s.command is not None:
        line += f"  \n{indent}   `{s.command}`"
    if s.detail and (s.kind in ("wait", "action") or not s.ok):
        line += f"  \n{indent}   _{s.detail}_"
    return line
