"""The nemesis: injects faults from the catalogue on a testbed, journals them, and always heals.

>>> with Nemesis(testbed).inject("adapter_down", node="node1", network="service"):
...     ...  # the node's service cable is pulled here

No silent no-op: a fault that cannot take effect is refused before it is journaled
(`FaultNotApplicable`), one whose effect does not show is undone and reported
(`FaultNotInEffect`), and heals that fail are all collected into one `HealFailed`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness import oplog
from harness.errors import HealError, UsageError
from harness.faults.base import Fault, Target, one_line
from harness.faults.journal import Entry, Journal
from harness.faults.registry import FAULTS
from harness.testbed.base import Testbed
from harness.timeline import FAULT_HEALED, FAULT_INJECTED, TEST_MARK, Timeline


@dataclass
class Injected:
    """A fault that is in effect; heal it with `Nemesis.heal` (or leave the `with` block)."""

    fault: Fault
    target: Target
    entry: Entry
    inject_s: float = 0.0
    verify_s: float = 0.0
    heal_s: float | None = None

    @property
    def label(self) -> str:
        """`disk_pull on shared`: how reports and errors name this fault."""
        return f"{self.fault.name} on {self.target.label}"


class HealFailed(HealError):
    """One or more faults could not be healed; each stays in the journal for `fallover heal`.

    ``failures``: (fault label, reason) per fault that failed, e.g. ("disk_full on shared",
    "…"); ``healed``: the labels of those healed by the same call. The message is one line.
    """

    def __init__(self, failures: list[tuple[str, str]], healed: list[str] | None = None) -> None:
        self.failures = [(label, one_line(reason)) for label, reason in failures]
        self.healed = healed or []
        listed = "; ".join(f"{label}: {reason}" for label, reason in self.failures)
        if len(failures) == 1:
            msg = f"healing {self.failures[0][0]} failed: {self.failures[0][1]}"
        else:
            msg = f"{len(failures)} faults could not be healed: {listed}"
        super().__init__(f"{msg}; the journal keeps {'it' if len(failures) == 1 else 'them'} "
                         f"for `fallover heal`")


def resolve(name: str) -> Fault:
    if name not in FAULTS:
        raise UsageError(f"unknown fault {name!r}; `fallover faults` lists them: {', '.join(FAULTS)}")
    return FAULTS[name]


class Nemesis:
    def __init__(self, testbed: Testbed, timeline: Timeline | None = None,
                 log: Callable[[str], None] | None = None) -> None:
        self.testbed = testbed
        self.timeline = timeline
        self.log = log or (lambda _: None)
        self.journal = Journal(testbed.journal_path)
        self.active: list[Injected] = []

    def target(self, name: str, **kw: Any) -> tuple[Fault, Target]:
        fault = resolve(name)
        nodes = kw.pop("nodes", ()) or ()
        return fault, fault.validate(self.testbed.topology, Target(nodes=tuple(nodes), **kw))

    def start(self, name: str, **kw: Any) -> Injected:
        """Inject now; the caller owns healing (prefer the `inject` context manager).

        Raises `FaultNotApplicable` (nothing journaled, nothing touched) when the fault cannot
        take effect, and `FaultNotInEffect` (after undoing it) when it was injected but its
        effect cannot be observed.
        """
        fault, target = self.target(name, **kw)
        fault.precheck(self.testbed, target)
        entry = self.journal.record(Entry(fault=fault.name, target=target.to_dict()))
        entry.undo = {"id": entry.id}
        self.journal.record(entry)
        t0 = time.monotonic()
        if self.timeline is not None:
            self.timeline.add(FAULT_INJECTED, target.node, fault=fault.name, target=target.label,
                              family=fault.family, event=fault.event,
                              nodes=[target.node] if target.node else list(target.nodes))
        inj = Injected(fault, target, entry)
        self.active.append(inj)
        try:
            try:
                fault.inject(self.testbed, target, entry.undo)
            finally:
                self._marks(entry)
            inj.inject_s = time.monotonic() - t0
            fault.verify(self.testbed, target, entry.undo)
        except BaseException as e:
            self.journal.record(entry)  # whatever inject learned before it failed helps heal
            try:
                self.heal(inj)  # a half-injected fault is undone before the error propagates
            except HealFailed as h:
                raise HealFailed([(inj.label, f"{e}; undoing it failed too: {h.failures[0][1]}")]) from e
            raise
        inj.verify_s = time.monotonic() - t0 - inj.inject_s
        entry.state = "injected"
        self.journal.record(entry)
        self.log(f"injected {inj.label} in {inj.inject_s:.2f}s (verified in {inj.verify_s:.2f}s)")
        return inj

    def _marks(self, entry: Entry) -> None:
        """Milestones a long fault noted while it ran (`mark`), as test.mark events at their own time."""
        if self.timeline is None:
            return
        now_mono, now_wall = time.monotonic(), time.time()
        for label, mono, data in entry.undo.get("marks", []):
            self.timeline.add(TEST_MARK, None, mono=mono, wall=now_wall - (now_mono - mono), data=data, label=label)

    def heal(self, inj: Injected) -> None:
        """Undo one fault; on failure raise `HealFailed` (one failure) and keep it in the journal."""
        t0 = time.monotonic()
        try:  # while the runner records a recovery, this heal and what it does are steps of the runbook
            with oplog.action(f"heal {inj.label}", detail=inj.fault.mechanism):
                inj.fault.heal(oplog.recorded(self.testbed), inj.target, inj.entry.undo)
        except Exception as e:
            raise HealFailed([(inj.label, str(e) or type(e).__name__)]) from e
        inj.heal_s = time.monotonic() - t0
        self.journal.remove(inj.entry.id)
        if inj in self.active:
            self.active.remove(inj)
        if self.timeline is not None:
            self.timeline.add(FAULT_HEALED, inj.target.node, fault=inj.fault.name, target=inj.target.label)
        self.log(f"healed {inj.label} in {inj.heal_s:.2f}s")

    @contextmanager
    def inject(self, name: str, **kw: Any) -> Iterator[Injected]:
        """Inject on entry; heal on exit — normal, exception, or Ctrl-C alike."""
        inj = self.start(name, **kw)
        try:
            yield inj
        finally:
            self.heal(inj)

    def heal_all(self) -> list[str]:
        """Heal what this process injected, then whatever the journal still holds (a crashed run's).

        Every fault gets its heal even when an earlier one fails; the failures are raised
        together afterwards as one `HealFailed` (``.failures``, ``.healed``).
        """
        healed: list[str] = []
        failures: list[tuple[str, str]] = []
        tried: set[str] = set()
        for inj in list(reversed(self.active)):
            tried.add(inj.entry.id)
            self._heal_collecting(inj, healed, failures)
        self._replay_collecting(tried, healed, failures)
        if failures:
            raise HealFailed(failures, healed)
        return healed

    def replay(self) -> list[str]:
        """Undo every fault the journal still holds, newest first; returns what was undone.

        Like `heal_all`, it tries every entry and raises one `HealFailed` for all that failed.
        """
        healed: list[str] = []
        failures: list[tuple[str, str]] = []
        self._replay_collecting(set(), healed, failures)
        if failures:
            raise HealFailed(failures, healed)
        return healed

    def _replay_collecting(self, skip: set[str], healed: list[str], failures: list[tuple[str, str]]) -> None:
        """Heal the journal's entries except ``skip`` (already tried in this call: one attempt each)."""
        for entry in reversed(self.journal.entries()):
            if entry.id in skip:
                continue
            target = Target.from_dict(entry.target)
            fault = FAULTS.get(entry.fault)
            if fault is None:
                failures.append((f"{entry.fault} on {target.label}",
                                 f"unknown fault in journal {self.journal.path} (written by another version?)"))
                continue
            inj = Injected(fault, target, entry)
            self._heal_collecting(inj, healed, failures, f" (injected by pid {entry.pid})")

    def _heal_collecting(self, inj: Injected, healed: list[str], failures: list[tuple[str, str]],
                         note: str = "") -> None:
        try:
            self.heal(inj)
        except HealFailed as e:
            failures.extend(e.failures)
        else:
            healed.append(inj.label + note)
