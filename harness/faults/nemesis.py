"""The nemesis: injects faults from the catalogue on a testbed, journals them, and always heals.

>>> with Nemesis(testbed).inject("adapter_down", node="node1", network="service"):
...     ...  # the node's service cable is pulled here
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from harness.errors import HealError, UsageError
from harness.faults.base import Fault, Target
from harness.faults.journal import Entry, Journal
from harness.faults.registry import FAULTS
from harness.testbed.base import Testbed
from harness.timeline import FAULT_HEALED, FAULT_INJECTED, Timeline


@dataclass
class Injected:
    """A fault that is in effect; heal it with `Nemesis.heal` (or leave the `with` block)."""

    fault: Fault
    target: Target
    entry: Entry
    inject_s: float = 0.0
    heal_s: float | None = None


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
        self.journal = Journal(testbed.layout.journal)  # type: ignore[attr-defined]
        self.active: list[Injected] = []

    def target(self, name: str, **kw: Any) -> tuple[Fault, Target]:
        fault = resolve(name)
        nodes = kw.pop("nodes", ()) or ()
        return fault, fault.validate(self.testbed.topology, Target(nodes=tuple(nodes), **kw))

    def start(self, name: str, **kw: Any) -> Injected:
        """Inject now; the caller owns healing (prefer the `inject` context manager)."""
        fault, target = self.target(name, **kw)
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
            fault.inject(self.testbed, target, entry.undo)
        except BaseException:
            self.journal.record(entry)  # whatever inject learned before it failed helps heal
            self.heal(inj)  # a half-injected fault is undone before the error propagates
            raise
        inj.inject_s = time.monotonic() - t0
        entry.state = "injected"
        self.journal.record(entry)
        self.log(f"injected {fault.name} on {target.label} in {inj.inject_s:.2f}s")
        return inj

    def heal(self, inj: Injected) -> None:
        t0 = time.monotonic()
        try:
            inj.fault.heal(self.testbed, inj.target, inj.entry.undo)
        except Exception as e:
            raise HealError(f"healing {inj.fault.name} on {inj.target.label} failed: {e}; "
                            f"it stays in the journal for `fallover heal`") from e
        inj.heal_s = time.monotonic() - t0
        self.journal.remove(inj.entry.id)
        if inj in self.active:
            self.active.remove(inj)
        if self.timeline is not None:
            self.timeline.add(FAULT_HEALED, inj.target.node, fault=inj.fault.name, target=inj.target.label)
        self.log(f"healed {inj.fault.name} on {inj.target.label} in {inj.heal_s:.2f}s")

    @contextmanager
    def inject(self, name: str, **kw: Any) -> Iterator[Injected]:
        """Inject on entry; heal on exit — normal, exception, or Ctrl-C alike."""
        inj = self.start(name, **kw)
        try:
            yield inj
        finally:
            self.heal(inj)

    def heal_all(self) -> list[str]:
        """Heal what this process injected, then whatever the journal still holds (a crashed run's)."""
        healed = []
        for inj in list(reversed(self.active)):
            self.heal(inj)
            healed.append(f"{inj.fault.name} on {inj.target.label}")
        return healed + self.replay()

    def replay(self) -> list[str]:
        """Undo every fault the journal still holds, newest first; returns what was undone."""
        undone = []
        for entry in reversed(self.journal.entries()):
            fault = FAULTS.get(entry.fault)
            if fault is None:
                raise HealError(f"journal {self.journal.path}: unknown fault {entry.fault!r}")
            inj = Injected(fault, Target.from_dict(entry.target), entry)
            self.heal(inj)
            undone.append(f"{entry.fault} on {inj.target.label} (injected by pid {entry.pid})")
        return undone
