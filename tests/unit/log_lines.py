"""Log lines as nodes write them and hand-built case timelines, for the log audit's tests.

Lines are stamped relative to now (as a node writes them), because syslog stamps carry no year
and the audit reads them near its mark.
"""

from __future__ import annotations

import time
from typing import Any

from harness.faults import FAULTS
from harness.timeline import (
    CLUSTER_NODE_JOINED,
    CLUSTER_NODE_LOST,
    FAULT_HEALED,
    FAULT_INJECTED,
    FENCED,
    TEST_MARK,
    Timeline,
)

T0 = float(int(time.time()))  # the injection, on a whole second

def syslog(t: float, ms: bool = True) -> str:
    """`Nov 25 15:34:05.123` (pacemaker, corosync) or `Nov 25 15:34:05` (resource agents), local time."""
    lt = time.localtime(t)
    stamp = time.strftime("%b %e %H:%M:%S", lt)
    return stamp + (f".{int(round((t % 1) * 1000)) % 1000:03d}" if ms else "")


def pcmk(t: float, node: str, daemon: str, func: str, level: str, msg: str) -> str:
    return f"{syslog(t)} {node} {daemon:<19}[812] ({func}) \t{level}: {msg}"


def attrd_updater(t: float, node: str = "node1") -> str:
    """The first false alarm: an agent's attrd_updater on a node whose stack is dying."""
    return pcmk(t, node, "attrd_updater", "connect_and_send_attrd_request", "error",
                "Could not connect to attrd: Connection refused")


def broken_pipe(t: float, node: str = "node2") -> str:
    """The second: a restarting fencer's IPC server, a client gone during the handshake."""
    return pcmk(t, node, "pacemaker-fenced", "handle_new_connection", "error",
                "Error in connection setup (/dev/shm/qb-1234-5678-12-AbCdEf/qb): Broken pipe (32)")


def active_twice(t: float, node: str = "node1") -> str:
    return pcmk(t, node, "pacemaker-schedulerd", "pcmk__native_add_running", "error",
                "Resource app-fs is active on 2 nodes (attempting recovery)")


def timeline(*events: tuple[float, str, str | None, dict[str, Any]]) -> Timeline:
    tl = Timeline()
    for offset, kind, node, data in events:
        tl.add(kind, node, mono=1000.0 + offset, wall=T0 + offset, data=data)
    return tl


def injected(offset: float, fault: str, node: str | None = None, *, target: str | None = None,
             nodes: list[str] | None = None) -> tuple[float, str, str | None, dict[str, Any]]:
    nodes = nodes if nodes is not None else ([node] if node else [])
    return offset, FAULT_INJECTED, node, {"fault": fault, "target": target or node or "cluster", "nodes": nodes,
                                          "family": FAULTS[fault].family, "event": FAULTS[fault].event}


def healed(offset: float, fault: str, node: str | None = None, *,
           target: str | None = None) -> tuple[float, str, str | None, dict[str, Any]]:
    return offset, FAULT_HEALED, node, {"fault": fault, "target": target or node or "cluster"}


def mark(offset: float, label: str) -> tuple[float, str, str | None, dict[str, Any]]:
    return offset, TEST_MARK, None, {"label": label}


def corosync_kill_case() -> Timeline:
    """corosync_kill on node1 for 8 s, fenced at +3.4, healed at +8, recovery +8 … +14 (as measured)."""
    return timeline(injected(0, "corosync_kill", "node1"),
                    (2.3, CLUSTER_NODE_LOST, "node1", {"seen_from": "node2"}),
                    (3.4, FENCED, "node1", {"action": "off", "outcome": "OK"}),
                    healed(8, "corosync_kill", "node1"), mark(8, "recovery start"),
                    (10, CLUSTER_NODE_JOINED, "node1", {"seen_from": "node2"}),
                    mark(14, "recovery end"))
