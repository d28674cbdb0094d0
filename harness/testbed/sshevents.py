"""The cluster's notifications and fences, seen from a real inventory's nodes.

On the embedded testbed (and its SSH lab) the alert agent writes straight into a file on the
harness's side. A user's servers cannot: their agent (`fallover-alert`, installed by the user
with a recipient path, see the README) appends one JSON line per event to a file on each node.
`EventMirror` copies new complete lines of every node's file to the harness's notification
log, and turns Pacemaker's *fencing* alerts into fence events, so the notification and
detection checkers read a real cluster exactly as they read the embedded one.

Without a declared alert log there is nothing to read: the testbed says so (`notifications`
capability) and the notification verdict is reported as not judged, with that reason, rather
than failed for a silence that fallover simply could not hear.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.testbed.base import LogFile

log = logging.getLogger("fallover.ssh")
INTERVAL_S = 1.0
"""How often every node's alert log is read (a read is one `stat` + `tail` over the node's connection)."""

Reader = Callable[[LogFile, int], tuple[int, bytes]]
Sizer = Callable[[LogFile], tuple[int, int]]


def fence_record(alert: dict[str, Any]) -> dict[str, Any] | None:
    """A Pacemaker fencing alert as the fence broker's record (wall, node = target, action, outcome).

    Pacemaker runs alert agents with CRM_alert_kind=fencing when a fencing operation ends;
    CRM_alert_node is the target, CRM_alert_task the action, CRM_alert_rc 0 on success.

    >>> fence_record({"kind": "fencing", "node": "node2", "task": "reboot", "rc": "0", "wall": 5.0})
    {'wall': 5.0, 'done': 5.0, 'action': 'reboot', 'node': 'node2', 'outcome': 'OK', 'source': 'alert'}
    >>> fence_record({"kind": "node", "node": "node2", "wall": 5.0}) is None
    True
    """
    if alert.get("kind") != "fencing" or not alert.get("node") or "wall" not in alert:
        return None
    ok = str(alert.get("rc", "")).strip() == "0"
    return {"wall": alert["wall"], "done": alert["wall"], "action": alert.get("task") or "fence",
            "node": alert["node"], "outcome": "OK" if ok else "FAILED", "source": "alert"}


class EventMirror:
    """Copies each node's alert log to ``notifications`` and its fencing alerts to ``fences``.

    A line is copied once, however many nodes' files hold it (an alert log on shared storage, or
    the same record read twice after a file was replaced); only complete lines are copied. A node
    that cannot be read is retried on the next round (it may be powered off: that is the test).
    """

    def __init__(self, size: Sizer, read: Reader, logs: list[LogFile], notifications: Path, fences: Path) -> None:
        """``size`` and ``read``: the testbed's `log_size` and `read_log` (one node's file over its connection)."""
        self.size, self.read, self.logs = size, read, logs
        self.notifications, self.fences = notifications, fences
        self._at: dict[tuple[str, str], tuple[int, int]] = {}  # log → (file identity, bytes consumed)
        self._seen: set[bytes] = set()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.errors = 0

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, from_end: bool = True) -> None:
        """Begin mirroring; ``from_end`` skips what the nodes' files already hold (earlier runs)."""
        if self.running:
            return
        self.notifications.parent.mkdir(parents=True, exist_ok=True)
        if from_end:
            for lf in self.logs:
                ident, size = self.size(lf)
                if ident:
                    self._at[(lf.node, lf.path)] = (ident, size)
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="fallover-ssh-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
        self._thread = None

    def _loop(self) -> None:
        while not self._stop.wait(INTERVAL_S):
            self.sync()

    def sync(self) -> int:
        """One round over every node; returns the lines copied."""
        copied = 0
        for lf in self.logs:
            key = (lf.node, lf.path)
            ident, done = self._at.get(key, (0, 0))
            new_ident, size = self.size(lf)
            if not new_ident:
                continue  # missing, or the node does not answer (powered off: that may be the test)
            if new_ident != ident or size < done:  # new, rotated or truncated: from its start
                done = 0
            try:
                _, data = self.read(lf, done)
            except OSError as e:  # FileNotFoundError too: it went between the two looks
                self.errors += 1
                log.debug("alert log %s:%s: %s", lf.node, lf.path, e)
                continue
            whole = data[: data.rfind(b"\n") + 1]
            self._at[key] = (new_ident, done + len(whole))
            copied += self._append(whole)
        return copied

    def _append(self, chunk: bytes) -> int:
        lines = [ln for ln in chunk.splitlines() if ln.strip() and ln not in self._seen]
        if not lines:
            return 0
        self._seen.update(lines)
        fences = []
        for ln in lines:
            try:
                rec = fence_record(json.loads(ln))
            except (ValueError, TypeError, AttributeError):
                continue  # the notification tail counts it as a bad line; nothing to fence
            if rec is not None:
                fences.append(json.dumps(rec).encode())
        with open(self.notifications, "ab") as f:
            f.write(b"\n".join(lines) + b"\n")
        if fences:
            with open(self.fences, "ab") as f:
                f.write(b"\n".join(fences) + b"\n")
        return len(lines)
