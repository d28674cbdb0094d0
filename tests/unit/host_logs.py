"""A testbed fake for the log audit: node logs in a directory per node, read as the embedded testbed does."""

from __future__ import annotations

from pathlib import Path

from harness.testbed import hostlogs
from harness.testbed.base import LogFile
from harness.topology import Topology


class _Layout:
    def __init__(self, root: Path) -> None:
        self.root = root

    def node_dir(self, node: str) -> Path:
        return self.root / node


class HostLogs:
    def __init__(self, topology: Topology, root: Path) -> None:
        self.topology, self.layout = topology, _Layout(root)

    def log_files(self) -> list[LogFile]:
        return hostlogs.log_files(self.topology, self.layout.root)

    def log_size(self, log: LogFile) -> tuple[int, int]:
        return hostlogs.log_size(self.layout.root, log)

    def read_log(self, log: LogFile, start: int) -> tuple[int, bytes]:
        return hostlogs.read_log(self.layout.root, log, start)
