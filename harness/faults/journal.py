"""The fault journal: a durable record of every injected fault until it is healed.

Written and fsynced *before* a fault is injected, removed only after it is healed, so a
SIGKILLed run leaves exactly what `fallover heal` (or the next run) must undo. A write
error raises: a fault we could not record must not be injected.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Entry:
    fault: str
    target: dict[str, Any]
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    injected_wall: float = field(default_factory=time.time)
    pid: int = field(default_factory=os.getpid)
    state: str = "injecting"  # → "injected" once inject() returned its undo data
    undo: dict[str, Any] = field(default_factory=dict)


class Journal:
    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> list[Entry]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        return [Entry(**json.loads(line)) for line in text.splitlines() if line.strip()]

    def record(self, entry: Entry) -> Entry:
        """Add or update an entry (by id), durably."""
        with self._locked():
            others = [e for e in self.entries() if e.id != entry.id]
            self._write([*others, entry])
        return entry

    def remove(self, entry_id: str) -> None:
        with self._locked():
            self._write([e for e in self.entries() if e.id != entry_id])

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Several injectors (CLI processes, xdist workers) may share one journal."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def _write(self, entries: list[Entry]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w") as f:
            for e in entries:
                f.write(json.dumps(asdict(e), sort_keys=True) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        dfd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
