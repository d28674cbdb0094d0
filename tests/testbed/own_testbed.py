"""Helpers for tests that need a testbed of their own beside the session's (another topology)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from harness.testbed.local import LocalTestbed
from harness.topology import load_topology


@contextmanager
def separate_testbed(topology_file: Path) -> Iterator[LocalTestbed]:
    """Up from scratch (its own names, from the topology's name), and down whatever happens.

    Groups may come up anywhere: a deliberately sticky cluster keeps a group on whichever node
    started first, and putting it home is the runner's first step, not bring-up's.
    """
    tb = LocalTestbed(load_topology(topology_file))
    tb.down()
    try:
        tb.up(placement=False)
        yield tb
    finally:
        tb.down()
