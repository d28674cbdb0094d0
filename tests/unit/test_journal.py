"""The fault journal: durable records, updates by id, removal, concurrent writers."""

from __future__ import annotations

import multiprocessing
from pathlib import Path

from harness.faults.base import Target
from harness.faults.journal import Entry, Journal


def test_record_update_remove(tmp_path: Path) -> None:
    j = Journal(tmp_path / "faults.journal")
    assert j.entries() == []
    e = j.record(Entry(fault="partition", target=Target(nodes=("node3",)).to_dict()))
    e.undo = {"id": e.id, "table": "fallover_x"}
    e.state = "injected"
    j.record(e)
    (got,) = j.entries()
    assert (got.fault, got.state, got.undo["table"], got.target) == ("partition", "injected", "fallover_x",
                                                                     {"nodes": ["node3"]})
    assert Target.from_dict(got.target) == Target(nodes=("node3",))
    j.remove(e.id)
    assert j.entries() == []


def _writer(path: str, n: int) -> None:
    j = Journal(Path(path))
    for i in range(n):
        j.record(Entry(fault="adapter_down", target={"node": f"node{i}"}))


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    path = tmp_path / "faults.journal"
    procs = [multiprocessing.Process(target=_writer, args=(str(path), 20)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert len(Journal(path).entries()) == 80
