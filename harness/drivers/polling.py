"""What every driver does the same way: poll its state until a predicate holds, and time the quiet
period after a fault change (the fault journal's last write marks it)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass

from harness.drivers.state import ClusterState
from harness.testbed.base import Progress, Testbed, quiet
from harness.wait import wait_until


def journal_stamp(path: str | os.PathLike[str]) -> tuple[int, int] | None:
    """The fault journal's (mtime, size): a fault injected or healed since changes it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


@dataclass(frozen=True)
class SettledLook:
    """A look that ``wait_settled`` accepted: when it began, what it saw, the fault journal then."""

    mono: float
    state: ClusterState
    journal: tuple[int, int] | None


_settled_looks: dict[str, SettledLook] = {}
"""The last accepted look per testbed (by journal path): a testbed's `up` asks through a driver of its own."""


def every_node_answers(views: Callable[[], dict[str, ClusterState | None]], *, timeout: float, interval: float,
                       progress: Progress = quiet) -> None:
    """Until every running node's own view (``views``: asked side by side) knows a DC; WaitTimeout names the silent.

    Only the views are asked: a look through ``state`` first was one more crm_mon per poll (4-5 s of the 12 s
    this wait took after each VM case, 2026-12-01)."""
    silent: list[str] = []

    def answered() -> bool:
        now = [n for n, v in views().items() if v is None or v.dc is None]
        if now and now != silent:
            progress(f"waiting for {', '.join(now)} to answer with a DC")
        silent[:] = now
        return not now

    wait_until(answered, timeout=timeout, interval=interval, what="every running node answering crm_mon",
               describe=lambda: f"no answer with a DC from {', '.join(silent)}")


class Polling:
    """Base of the drivers: needs ``testbed``, ``quiet_s`` and ``state()`` from the subclass."""

    testbed: Testbed
    quiet_s: float
    poll_interval: float = 0.25

    def state(self) -> ClusterState | None:
        raise NotImplementedError

    def wait_until(self, predicate: Callable[[ClusterState], bool], *, timeout: float, what: str,
                   progress: Progress = quiet, interval: float | None = None) -> ClusterState:
        """Poll the cluster until ``predicate(state)``; progress lines show what is still missing."""
        last: list[ClusterState | None] = [None]
        shown = [""]

        def check() -> ClusterState | None:
            s = self.state()
            last[0] = s
            line = s.summary() if s else "no node answers"
            if line != shown[0]:
                progress(f"{what}: {line}")
                shown[0] = line
            return s if s is not None and predicate(s) else None

        s = wait_until(check, timeout=timeout, what=what, interval=interval or self.poll_interval,
                       describe=lambda: last[0].summary() if last[0] else "no node answers")
        assert s is not None  # wait_until returns only a truthy answer
        return s

    def adapters_down(self) -> list[str]:
        raise NotImplementedError

    def members_gap(self, s: ClusterState, want: list[str], absent: str) -> str | None:
        """The first gap every stack shares: a wanted node not in it (``absent`` says how that reads), an
        adapter down, a failed action; None when there is none."""
        missing = [n for n in want if n not in s.online]
        if missing:
            return f"{absent}: {', '.join(missing)}"
        down = self.adapters_down()
        if down:
            return f"adapters down: {', '.join(down)}"
        if s.failed_actions:
            return f"failed action: {s.failed_actions[0]}"
        return None

    def fault_changed_at(self) -> float | None:
        """When (monotonic) a fault was last injected or healed here: the fault journal's last write."""
        try:
            mtime = os.stat(self.testbed.journal_path).st_mtime
        except OSError:
            return None
        return time.monotonic() - (time.time() - mtime)

    def quiet_left(self, since: float | None = None) -> float:
        """Seconds until ``quiet_s`` have passed since the last fault change (``since``, else the journal)."""
        changed = self.fault_changed_at() if since is None else since
        return 0.0 if changed is None else max(0.0, changed + self.quiet_s - time.monotonic())

    def remember_settled(self, mono: float, s: ClusterState) -> None:
        """Note a look that ``wait_settled`` accepted (begun at ``mono``): see :meth:`settled_look`."""
        _settled_looks[str(self.testbed.journal_path)] = SettledLook(mono, s, journal_stamp(self.testbed.journal_path))

    def settled_look(self, *, since: float, placement: bool = True) -> ClusterState | None:
        """The last look ``wait_settled`` accepted here, if it began after ``since``, no fault changed
        since, and it is settled with ``placement`` too; else None.

        Why: the runner's recovery is the testbed's `up` (settled, groups anywhere), then settled with
        every group placed. When `up`'s last look, after the quiet period, already had every group
        where its policy puts it, a second look would only repeat it: that look is the answer. It
        passed ``busy`` (which does not depend on placement) and the quiet period; the snapshot is
        checked again here with ``placement`` (and today's adapter states).
        """
        look = _settled_looks.get(str(self.testbed.journal_path))
        if look is None or look.mono < since or look.journal != journal_stamp(self.testbed.journal_path):
            return None
        return look.state if self.snapshot_gap(look.state, placement) is None else None

    def snapshot_gap(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None:
        raise NotImplementedError
