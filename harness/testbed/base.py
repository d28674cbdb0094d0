"""What every testbed provider offers the rest of the harness (faults, drivers, suites)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from harness.topology import Topology
from harness.transport.base import Transport

Progress = Callable[[str], None]


def quiet(_: str) -> None:
    """The default progress sink."""


class Testbed(Protocol):
    __test__ = False  # a name pytest would otherwise try to collect

    topology: Topology

    def up(self, progress: Progress = quiet) -> None:
        """Bring the cluster up (idempotent) and wait until it has settled."""

    def down(self, progress: Progress = quiet) -> list[str]:
        """Remove everything the testbed made; returns a line per thing removed."""

    def node(self, name: str) -> Transport:
        """Run commands on a cluster node."""

    def client(self) -> Transport:
        """Run commands on the client host (load, probe)."""

    def running(self, node: str) -> bool:
        """Is the node powered on?"""

    def power_off(self, node: str) -> None: ...

    def power_on(self, node: str) -> None: ...

    def start_services(self, node: str) -> None:
        """Start the cluster software on a powered-on node."""

    def leftovers(self) -> list[str]:
        """Anything of this testbed still on the machine (empty after a clean `down`)."""
