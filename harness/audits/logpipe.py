"""Does the log pipeline work? A marker written through each node's logging must reach the files the audit reads.

CTS's LogAudit logs a unique test message on every node and looks for it in the logs it
watches, because an audit of logs that never receive anything passes every time. Here, for each
audited file of each running node:

- the cluster daemons' own log (`pacemaker.log`): a transient node attribute is set through
  pacemaker-attrd, which logs the change through Pacemaker's logging on every node that applies
  it; each node gets its own marker (`attrd_updater --node`), so each node's daemons must write it;
- every other audited file (corosync's, the application's): a marker line appended from inside
  the node to the path the node's processes write, so a file read from the wrong place is caught.

A marker that does not arrive makes the log audit `unknown` for that file, never ok.
"""

from __future__ import annotations

import shlex
import time
import uuid
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor

from harness.errors import FalloverError
from harness.testbed.base import LogFile, Testbed

__all__ = ["ATTRIBUTE", "Marker", "check_markers", "clear", "write_markers"]

ATTRIBUTE = "fallover-log-marker"
"""The transient (`-l reboot`) node attribute the marker goes through; removed again afterwards."""
DAEMON_LOGS = ("/var/log/pacemaker/pacemaker.log",)
ARRIVE_S = 5.0  # attrd writes within a second; the rest is room for a loaded machine


class Marker:
    """What one audited file must show: a token, and how it was written (for the report)."""

    def __init__(self, log: LogFile, token: str, how: str) -> None:
        self.log, self.token, self.how = log, token, how

    def __repr__(self) -> str:
        return f"Marker({self.log.node}:{self.log.path}, {self.token}, {self.how})"


def write_markers(testbed: Testbed, logs: Iterable[LogFile], run: str | None = None) -> tuple[list[Marker], list[str]]:
    """Write a marker for every audited file of every running node; (markers, files that could not get one)."""
    run = run or uuid.uuid4().hex[:12]
    markers: list[Marker] = []
    failed: list[str] = []
    by_node: dict[str, list[LogFile]] = {}
    for log in logs:
        by_node.setdefault(log.node, []).append(log)
    for node, files in sorted(by_node.items()):
        if not testbed.running(node):
            failed += [f"{node}:{f.path}: {node} is powered off, so its logging could not be tested" for f in files]
            continue
        for f in files:
            token = f"fallover-marker-{run}-{node}-{len(markers)}"
            try:
                how = _write(testbed, node, f, token)
            except FalloverError as e:
                failed.append(f"{node}:{f.path}: the marker could not be written: {e}")
                continue
            markers.append(Marker(f, token, how))
    return markers, failed


def _write(testbed: Testbed, node: str, log: LogFile, token: str) -> str:
    if log.path in DAEMON_LOGS:
        testbed.node(node).run(["attrd_updater", "--name", ATTRIBUTE, "--update", token, "--lifetime", "reboot",
                                "--node", node], timeout=15)
        return "a transient attribute through pacemaker-attrd"
    line = f"{time.strftime('%Y-%m-%dT%H:%M:%S')} fallover-audit {node} log marker {token}"
    path = shlex.quote(log.path)
    testbed.node(node).run(["sh", "-c", f"[ -e {path} ] && printf '%s\\n' {shlex.quote(line)} >> {path}"], timeout=15)
    return "a line appended inside the node"


def check_markers(markers: list[Marker], read: Callable[[], Iterable[tuple[str, str, str]]],
                  timeout: float = ARRIVE_S) -> list[str]:
    """Look (again, until ``timeout``) for every marker in the lines read, as (node, file name, line); one phrase
    per marker that never came."""
    waiting = {m.token: m for m in markers}
    deadline = time.monotonic() + timeout
    while waiting:
        for node, name, line in read():
            for token in [t for t in waiting if t in line and waiting[t].log.node == node
                          and waiting[t].log.path.rsplit("/", 1)[-1] == name]:
                del waiting[token]
        if not waiting or time.monotonic() >= deadline:
            break
        time.sleep(0.2)
    return [f"{m.log.node}:{m.log.path}: the marker written through {m.how} did not arrive in the audited file "
            f"within {timeout:g} s" for m in waiting.values()]


def clear(testbed: Testbed, markers: list[Marker]) -> None:
    """Remove the marker attribute again (best effort: a transient attribute also goes with a restart)."""
    def one(node: str) -> None:
        try:
            testbed.node(node).run(["attrd_updater", "--name", ATTRIBUTE, "--delete", "--node", node], timeout=15,
                                   check=False)
        except FalloverError:
            pass

    nodes = sorted({m.log.node for m in markers if m.log.path in DAEMON_LOGS})
    with ThreadPoolExecutor(max_workers=max(1, len(nodes))) as pool:  # one at a time would add up per case
        list(pool.map(one, nodes))
