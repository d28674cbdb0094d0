"""One deadline-based polling helper, so no loop in the harness can spin forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from harness import oplog
from harness.errors import WaitTimeout

T = TypeVar("T")


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float = 0.1,
    describe: Callable[[], str] | None = None,
    on_poll: Callable[[float], None] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    ``describe`` renders the last observed state for the timeout message (what is
    still missing), and ``on_poll(elapsed)`` lets a caller drive a progress line.
    Exceptions from the predicate propagate: a broken probe is not "not yet". While the
    runner records a recovery (harness/oplog.py), the wait is one step of its runbook.
    """
    start = time.monotonic()
    deadline = start + timeout
    with oplog.waiting(what) as frame:
        while True:
            oplog.looked(frame)
            value = predicate()
            if value:
                return value
            now = time.monotonic()
            if on_poll is not None:
                on_poll(now - start)
            if now >= deadline:
                raise WaitTimeout(what, timeout, describe() if describe else None)
            time.sleep(min(interval, max(0.0, deadline - now)))
