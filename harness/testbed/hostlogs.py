"""Node logs read on the host, where a node's /var/log is a directory of its state (embedded testbed).

Reading them from outside means the logs of a fenced or powered-off node are still audited.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.testbed.base import LogFile
from harness.topology import Topology

REQUIRED = {"pacemaker": ("/var/log/pacemaker/pacemaker.log", "/var/log/cluster/corosync.log"),
            "keepalived": ("/var/log/cluster/keepalived.log",)}
"""The logs of each stack that every node must have (a node whose log is missing was never audited)."""


def log_files(topology: Topology, node_dir: Path) -> list[LogFile]:
    """The stack's logs of every node must exist; `*-app.log` only where an application ran."""
    out = []
    for node in topology.node_names:
        out += [LogFile(node, path) for path in REQUIRED[topology.cluster.stack]]
        out += [LogFile(node, f"/var/log/cluster/{p.name}", required=False)
                for p in sorted((node_dir / node / "var/log/cluster").glob("*-app.log"))]
    return out


def host_path(node_dir: Path, log: LogFile) -> Path:
    return node_dir / log.node / log.path.lstrip("/")


def log_size(node_dir: Path, log: LogFile) -> tuple[int, int]:
    try:
        st = host_path(node_dir, log).stat()
    except OSError:
        return 0, 0
    return st.st_ino, st.st_size


def read_log(node_dir: Path, log: LogFile, start: int) -> tuple[int, bytes]:
    with open(host_path(node_dir, log), "rb") as f:
        st = os.fstat(f.fileno())
        f.seek(start if st.st_size >= start else 0)
        return st.st_ino, f.read()
