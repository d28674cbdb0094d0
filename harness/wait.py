"""One deadline-based polling helper, so no loop in the harness can spin forever."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from harness import oplog
from harness.errors import WaitTimeout

T = TypeVar("T")


def poll(
    look: Callable[[], T],
    good: Callable[[T], bool],
    *,
    timeout: float,
    interval: float | Callable[[], float],
    on_look: Callable[[], None] | None = None,
    on_poll: Callable[[float], None] | None = None,
) -> tuple[T, bool]:
    """The one deadline loop: call ``look`` until ``good(seen)`` or ``timeout``; return (last look, good?).

    It never raises on its own: a caller that must fail on a timeout (`wait_until`) raises, one that
    judges and quotes what it last saw (`faults.base.look_until`) does that. The last sleep ends at
    the deadline, so the last look happens there and not an ``interval`` later. ``interval`` may be a
    function, asked after each look: a look that knows nothing can change for a while (a quiet period
    still running) need not be repeated before then.
    """
    start = time.monotonic()
    deadline = start + timeout
    while True:
        if on_look is not None:
            on_look()
        seen = look()
        if good(seen):
            return seen, True
        now = time.monotonic()
        if on_poll is not None:
            on_poll(now - start)
        if now >= deadline:
            return seen, False
        pause = interval() if callable(interval) else interval
        time.sleep(min(pause, max(0.0, deadline - now)))


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    what: str,
    interval: float | Callable[[], float] = 0.1,
    describe: Callable[[], str] | None = None,
    on_poll: Callable[[float], None] | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy; return that value.

    ``describe`` renders the last observed state for the timeout message (what is
    still missing), and ``on_poll(elapsed)`` lets a caller drive a progress line.
    Exceptions from the predicate propagate: a broken probe is not "not yet". While the
    runner records a recovery (harness/oplog.py), the wait is one step of its runbook.
    """
    with oplog.waiting(what) as frame:
        value, ok = poll(predicate, bool, timeout=timeout, interval=interval,
                         on_look=lambda: oplog.looked(frame), on_poll=on_poll)
        if ok:
            return value
        raise WaitTimeout(what, timeout, describe() if describe else None)
