"""What the harness did to bring the cluster back, recorded as it happened: the raw material of the runbook.

The recovery runbook (harness/report/runbook.py) must be the steps that really returned the
cluster to full redundancy, not a hand-written list that drifts from the code. So while the
runner heals and recovers, this log records — from the places where they happen, whatever the
provider — every command a transport ran (`command`, called with each `Result`), every wait
(`waiting`, called by harness/wait.py), every testbed operation that has no command line
(`recorded(testbed)`: "power on node1") and every progress line (`OpLog.note`).

Nothing is recorded unless a phase is open in the current context (``with log.phase("heal")``):
the poller's thread, and every run outside the recovery phases, cost one ContextVar lookup.
Polls inside a wait are folded into the wait (how many looks, the last states seen): a runbook
says "wait until the cluster is whole (12 s, 40 looks)", not forty crm_mon lines.

>>> log = OpLog()
>>> with log.phase("heal"):
...     log.note("starting node1 (it was powered off)")
>>> log.phases[0].entries[0].text
'starting node1 (it was powered off)'
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.result import Result

READS = frozenset({"crm_mon", "pidof", "pgrep", "cat", "ls", "stat", "test", "ip", "nft", "findmnt", "mountpoint",
                   "cibadmin", "crm_attribute", "attrd_updater", "crm_node", "corosync-cfgtool", "corosync-quorumtool",
                   "curl", "wget", "ps", "true", "crmadmin"})
"""Programs whose run is a look rather than a change, when no option below says otherwise (presentation only:
the runbook calls them checks). `ip`, `nft`, `crm_attribute`… change things with some options: see `is_check`."""
WRITES = frozenset({"--cleanup", "--delete", "--update", "--move", "--clear", "--restart", "--force", "-D", "-U", "-H",
                    "-X", "set", "add", "flush", "delete", "del", "destroy", "replace", "insert"})
"""Options and verbs that make one of READS a change (`crm_attribute --update`, `ip link set`, `nft add`)."""


@dataclass
class Entry:
    """One thing done: ``kind`` is command, check, action, wait or note; ``depth`` nests an action's own steps."""

    kind: str
    text: str
    node: str | None = None
    at_s: float = 0.0
    seconds: float = 0.0
    ok: bool = True
    depth: int = 0
    polls: int = 1
    detail: str = ""


@dataclass
class Phase:
    name: str
    at_s: float
    seconds: float = 0.0
    ok: bool = True
    error: str | None = None
    entries: list[Entry] = field(default_factory=list)


@dataclass
class _Frame:
    """An open action or wait: where its entries go, and (for a wait) what it saw."""

    entry: Entry | None
    depth: int
    wait: bool = False
    seen: list[str] = field(default_factory=list)
    commands: int = 0


@dataclass
class _Recording:
    log: OpLog
    phase: Phase
    stack: list[_Frame]

    @property
    def top(self) -> _Frame:
        return self.stack[-1]

    def add(self, entry: Entry) -> None:
        """Append at the current depth; the same step again right after it becomes one step with ``polls``."""
        entry.depth = self.top.depth
        last = self.phase.entries[-1] if self.phase.entries else None
        if (last is not None and last.depth == entry.depth and last.kind == entry.kind and last.text == entry.text
                and last.node == entry.node and last.ok == entry.ok and entry.kind in ("check", "command")):
            last.polls += 1
            last.seconds = round(last.seconds + entry.seconds, 3)
            return
        self.phase.entries.append(entry)


_current: ContextVar[_Recording | None] = ContextVar("fallover_oplog", default=None)


def recording() -> bool:
    """Whether a phase is open in this context (the hooks below do nothing otherwise)."""
    return _current.get() is not None


def is_check(argv: tuple[str, ...]) -> bool:
    """A read-only command (crm_mon, pidof…), as opposed to one that changes the cluster.

    >>> is_check(("crm_mon", "--one-shot")), is_check(("crm_resource", "--cleanup")), is_check(("ip", "link", "set"))
    (True, False, False)
    """
    words = list(argv)
    if len(words) > 2 and Path(words[0]).name in ("sh", "bash") and words[1] == "-c":
        words = words[2].split()  # a script: judged by its first program
    if not words:
        return False
    return Path(words[0]).name in READS and not any(w in WRITES for w in words[1:])


def command(result: Result) -> None:
    """A transport ran a command (called with every Result, failed or not, before any raise)."""
    rec = _current.get()
    if rec is None:
        return
    if rec.top.wait:
        rec.top.commands += 1
        return
    failed = "" if result.ok else (f"exit {result.exit_status}" if result.exit_status is not None else "timed out")
    tail = result.tail("stderr", 2) if result.failed else ""
    rec.add(Entry("check" if is_check(result.argv) else "command", result.command, result.node,
                  at_s=rec.log.since(time.monotonic() - result.duration_s), seconds=round(result.duration_s, 3),
                  ok=result.ok, detail="; ".join(filter(None, [failed, " ".join(tail.split())]))[:300]))


@contextmanager
def waiting(what: str) -> Iterator[_Frame | None]:
    """A wait (harness/wait.py): one entry with how long and how many looks; its polls are folded in."""
    rec = _current.get()
    if rec is None:
        yield None
        return
    if rec.top.wait:  # a wait inside a wait is part of one look of the outer one: its commands count there
        yield None
        return
    entry = Entry("wait", what, at_s=rec.log.since(time.monotonic()), polls=0)
    rec.add(entry)
    frame = _Frame(entry, rec.top.depth + 1, wait=True)
    rec.stack.append(frame)
    t0 = time.monotonic()
    try:
        yield frame
    except BaseException:
        entry.ok = False
        raise
    finally:
        rec.stack.remove(frame)
        entry.seconds = round(time.monotonic() - t0, 3)
        seen = "; then ".join(frame.seen[-3:])
        polled = f"{frame.commands} command{'s' if frame.commands != 1 else ''} polled" if frame.commands else ""
        entry.detail = "; ".join(filter(None, [polled, f"last seen: {seen}" if seen else ""]))[:500]


def looked(frame: _Frame | None) -> None:
    """One look of a wait (wait_until calls it per predicate call)."""
    if frame is not None and frame.entry is not None:
        frame.entry.polls += 1


@contextmanager
def action(text: str, *, detail: str = "") -> Iterator[None]:
    """A testbed operation or a fault's heal: one entry, with what it ran nested under it."""
    rec = _current.get()
    if rec is None or rec.top.wait:
        yield
        return
    entry = Entry("action", text, at_s=rec.log.since(time.monotonic()), detail=detail)
    rec.add(entry)
    frame = _Frame(entry, rec.top.depth + 1)
    rec.stack.append(frame)
    t0 = time.monotonic()
    try:
        yield
    except BaseException as e:
        entry.ok = False
        entry.detail = (f"{detail}; " if detail else "") + f"failed: {' '.join(str(e).split())[:200]}"
        raise
    finally:
        rec.stack.remove(frame)
        entry.seconds = round(time.monotonic() - t0, 3)


class OpLog:
    """The phases of one case's recovery; ``save`` writes recovery.json beside the case's other evidence."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.phases: list[Phase] = []

    def since(self, mono: float) -> float:
        return round(mono - self.t0, 3)

    @contextmanager
    def phase(self, name: str) -> Iterator[Phase]:
        """Record everything this context does until the block ends (an exception marks the phase failed)."""
        phase = Phase(name, at_s=self.since(time.monotonic()))
        self.phases.append(phase)
        token = _current.set(_Recording(self, phase, [_Frame(None, 0)]))
        t0 = time.monotonic()
        try:
            yield phase
        except BaseException as e:
            phase.ok, phase.error = False, " ".join(str(e).split())[:300] or type(e).__name__
            raise
        finally:
            _current.reset(token)
            phase.seconds = round(time.monotonic() - t0, 3)

    def note(self, msg: str) -> None:
        """A progress sink (``Progress``): a line the harness would print becomes a note, or, inside
        a wait, one of the states the wait saw."""
        rec = _current.get()
        if rec is None or rec.log is not self:
            return
        if rec.top.wait:
            if not rec.top.seen or rec.top.seen[-1] != msg:
                rec.top.seen.append(msg)
            return
        rec.add(Entry("note", msg, at_s=self.since(time.monotonic())))

    def to_dict(self) -> dict[str, Any]:
        return {"phases": [asdict(p) for p in self.phases]}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=1))

    @staticmethod
    def load(path: Path) -> list[Phase]:
        """The phases of a saved recovery.json (ValueError/KeyError/TypeError on a malformed file)."""
        raw = json.loads(path.read_text())
        return [Phase(**{**p, "entries": [Entry(**e) for e in p.get("entries", [])]}) for p in raw["phases"]]


ACTIONS: dict[str, Callable[[dict[str, Any]], str]] = {
    "power_on": lambda a: f"power on {a['node']}",
    "power_off": lambda a: f"power off {a['node']}",
    "start_services": lambda a: f"start the cluster services on {a['node']}",
    "thaw": lambda a: f"thaw {a['node']} (let its frozen processes run again)",
    "freeze": lambda a: f"freeze {a['node']}",
    "set_adapter": lambda a: f"{'plug' if a['up'] else 'pull'} {a['node']}'s {a['network']} cable "
                             f"(adapter {'up' if a['up'] else 'down'})",
    "set_network": lambda a: f"bring network {a['network']} {'up' if a['up'] else 'down'}",
    "remove_rule": lambda a: f"remove the traffic rule {a['rule_id']}",
    "unimpair": lambda a: "stop delaying or corrupting the adapter's packets",
    "set_disk_mode": lambda a: (f"plug disk {a['disk']} back (I/O mode ok)" if a['mode'] == "ok"
                                else f"switch disk {a['disk']} to {a['mode']}"),
    "up": lambda a: "repair the testbed: heal what the fault journal holds, power on powered-off nodes, "
                    "clean up failed actions, wait until the cluster is whole",
    "heal_journal": lambda a: "heal what the fault journal still holds",
}
"""Testbed operations that change something, and how the runbook names them (the provider call goes in detail)."""


class _Recorded:
    """A testbed whose changing operations are recorded as actions; everything else passes through."""

    def __init__(self, testbed: Any) -> None:
        self._testbed = testbed

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._testbed, name)
        if name not in ACTIONS or not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            try:
                bound = inspect.signature(value).bind(*args, **kwargs)
                bound.apply_defaults()
                named = dict(bound.arguments)
                text = ACTIONS[name](named)
            except (TypeError, KeyError):  # a provider with another signature: still recorded, by name
                named, text = {}, name.replace("_", " ")
            shown = ", ".join(f"{k}={v!r}" for k, v in named.items() if k not in ("progress", "undo"))
            with action(text, detail=f"{type(self._testbed).__name__}.{name}({shown})"):
                return value(*args, **kwargs)

        return call


def recorded(testbed: Any) -> Any:
    """``testbed`` with its changing operations recorded while a phase is open; itself otherwise."""
    return _Recorded(testbed) if recording() and not isinstance(testbed, _Recorded) else testbed
