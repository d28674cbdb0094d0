"""How a command reaches a node: one `run` interface over nsenter (embedded) and, later, SSH."""

from harness.transport.base import Transport, run_process
from harness.transport.nsenter import HostTransport, NamespaceTransport, NetnsTransport

__all__ = ["Transport", "run_process", "HostTransport", "NamespaceTransport", "NetnsTransport"]
