"""The driver interface: what the harness asks of a cluster stack (Pacemaker, keepalived).

A driver reads the cluster's state (`ClusterState`: nodes, where each group runs) and steers
it (planned moves, graceful stops). Faults, the runner and the poller use only this; a stack
that cannot do something (keepalived has no fencing, no resource manager) says so in
`capabilities()` and the plan leaves out the faults that need it, with the reason.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Protocol

from harness.drivers.state import ClusterState
from harness.testbed.base import Capabilities, Progress, Testbed, quiet
from harness.topology import Topology

DRIVER_CAPABILITIES: dict[str, str] = {
    "fencing": "fence a lost node (STONITH) before its resources move",
    "resource_manager": "planned moves, standby and maintenance mode through the resource manager",
    "pacemaker": "the Pacemaker/Corosync daemons and corosync's heartbeat",
    "shared_disk": "a filesystem on a shared disk that moves with the group",
    "quorum": "membership and quorum: a node cut off from the majority, or hung, gives its resources up",
}


class Driver(Protocol):
    testbed: Testbed
    topology: Topology
    quiet_s: float
    poll_interval: float
    """Between two looks at the cluster (the testbed's `Pace`; the poller polls at it too)."""
    membership: bool
    """Whether a node lost in `state()` is the cluster's own view (Pacemaker's membership), rather than
    the harness seeing the node's daemon gone (keepalived has no membership): detection credits only the former."""

    def capabilities(self) -> Capabilities:
        """Every name of `DRIVER_CAPABILITIES` → None (the stack has it) or why not."""

    def state(self) -> ClusterState | None:
        """The cluster as the best-informed live node sees it; None when no node answers."""

    def wait_until(self, predicate: Callable[[ClusterState], bool], *, timeout: float, what: str,
                   progress: Progress = quiet) -> ClusterState: ...

    def expected_node(self, group: str, state: ClusterState) -> str | None:
        """Where the group's policy wants it now (its home, or the next node of its list)."""

    def snapshot_gap(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None: ...

    def busy(self, s: ClusterState) -> str | None: ...

    def unsettled(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None: ...

    def settled(self, s: ClusterState, placement: bool = True) -> bool: ...

    def fault_changed_at(self) -> float | None: ...

    def quiet_left(self, since: float | None = None) -> float: ...

    def wait_settled(self, *, timeout: float = 90.0, progress: Progress = quiet,
                     placement: bool = True) -> ClusterState: ...

    def settled_look(self, *, since: float, placement: bool = True) -> ClusterState | None: ...

    def recover(self, *, timeout: float = 90.0, progress: Progress = quiet, placement: bool = True) -> ClusterState: ...

    def move_group(self, group: str, node: str, *, timeout: float = 60.0, progress: Progress = quiet) -> ClusterState: ...

    def moved_to(self, group: str, node: str, *, timeout: float = 60.0,
                 progress: Progress = quiet) -> AbstractContextManager[ClusterState]:
        """Hold the group on the node for the block (a cascading group would fail back at once)."""

    def restart_group(self, group: str, *, timeout: float = 120.0) -> None: ...

    def clear_move(self, group: str) -> None: ...

    def cleanup(self, resource: str | None = None) -> None: ...

    def admin(self, argv: list[str], timeout: float = 30.0) -> None:
        """Run a cluster administration command on the first node that can take it."""

    def config_dump(self) -> str:
        """The cluster's configuration as the stack holds it (Pacemaker: the whole CIB)."""

    def config_restore(self, cib_xml: str) -> None:
        """Put a configuration from `config_dump` back (Pacemaker: its configuration section)."""

    def application_stopped(self, group: str, *, timeout: float = 60.0,
                            progress: Progress = quiet) -> AbstractContextManager[str]:
        """Stop the group's application while its filesystem stays mounted; yields the node that has it.
        The application runs again when the block ends, however it ends."""

    def stop_services(self, node: str, *, timeout: float = 60.0, signalled: Callable[[], None] = lambda: None) -> None:
        """Graceful stop of the node's cluster software; `signalled` is called once the stop has begun (the
        signal is out: over SSH to a loaded guest that is seconds after the call, and the stop takes longer)."""

    def start_services(self, node: str) -> None: ...

    def stack_processes(self) -> tuple[str, ...]:
        """The process names of the stack on a node (what a whole node needs running)."""

    def versions(self, node: str) -> dict[str, str]: ...
