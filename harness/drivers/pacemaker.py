"""The Pacemaker driver: read a typed ClusterState from crm_mon and steer groups with crm tools."""

from __future__ import annotations

import time
from collections.abc import Callable

from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import CommandFailed, TransportError, WaitTimeout
from harness.testbed.base import Progress, Testbed, quiet
from harness.wait import wait_until

CRM_MON = ["crm_mon", "--one-shot", "--inactive", "--output-as=xml"]
CRM_EX_DISCONNECT = 102  # pacemaker's exit code for "not connected" (the CIB or a daemon is not up yet)


class PacemakerDriver:
    """Talks to the cluster through any live node, preferring one that knows the DC.

    A just-rejoined node reports no DC and its peers as unclean, so a view without a DC
    is used only when no node has a better one.
    """

    def __init__(self, testbed: Testbed, *, query_timeout: float = 8.0) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        self.query_timeout = query_timeout

    # -- reading ------------------------------------------------------------------------------

    def view(self, node: str) -> ClusterState | None:
        """The cluster as one node sees it, or None when that node cannot answer."""
        try:
            r = self.testbed.node(node).run(CRM_MON, timeout=self.query_timeout, check=False)
        except (TransportError, CommandFailed):
            return None
        if not r.stdout.lstrip().startswith("<"):
            return None
        try:
            return parse_crm_mon(r.stdout, seen_from=node)
        except Exception:
            return None

    def views(self) -> dict[str, ClusterState | None]:
        """Every running node's view: different answers mean a partitioned cluster."""
        return {n: self.view(n) for n in self.topology.node_names if self.testbed.running(n)}

    def state(self) -> ClusterState | None:
        fallback = None
        for node in self._query_order():
            s = self.view(node)
            if s is None:
                continue
            if s.dc is not None:
                return s
            fallback = fallback or s
        return fallback

    def _query_order(self) -> list[str]:
        return [n for n in self.topology.node_names if self.testbed.running(n)]

    # -- waiting --------------------------------------------------------------------------------

    def wait_until(self, predicate: Callable[[ClusterState], bool], *, timeout: float, what: str,
                   progress: Progress = quiet, interval: float = 0.25) -> ClusterState:
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

        def describe() -> str:
            return last[0].summary() if last[0] else "no node answers crm_mon"

        return wait_until(check, timeout=timeout, what=what, interval=interval, describe=describe)

    def expected_node(self, group: str, state: ClusterState) -> str | None:
        """Where the topology's priority list puts a group, given which nodes are online."""
        for n in self.topology.group(group).nodes:
            if n in state.online:
                return n
        return None

    def settled(self, s: ClusterState, placement: bool = True) -> bool:
        """Every powered-on node online, every group started (where its policy puts it, if ``placement``)."""
        running = [n for n in self.topology.node_names if self.testbed.running(n)]
        if s.dc is None or sorted(running) != s.online:
            return False
        for g in self.topology.groups:
            node = s.group_node(g.name)
            if node is None:
                return False
            if placement and g.policy == "cascading" and node != self.expected_node(g.name, s):
                return False
        return True

    def wait_settled(self, *, timeout: float = 90.0, progress: Progress = quiet,
                     placement: bool = True) -> ClusterState:
        """All powered-on nodes online and every group started (where its policy puts it)."""
        what = "cluster settling" if placement else "cluster whole (groups anywhere)"
        return self.wait_until(lambda s: self.settled(s, placement), timeout=timeout, what=what, progress=progress)

    def recover(self, *, timeout: float = 90.0, progress: Progress = quiet, placement: bool = True) -> ClusterState:
        """The operator's step after a repair: forget failures, then wait for the cluster to settle.

        Failed actions (and the fail counts behind them) keep a cascading group away from its
        home node for good; clearing them is what lets it fail back.
        """
        s = self.state()
        if s is not None and s.failed_actions:
            progress(f"cleaning up {len(s.failed_actions)} failed action(s)")
            self.cleanup()
        state = self.wait_settled(timeout=timeout, progress=progress, placement=placement)
        # A node killed and restarted within the token timeout still looks online to its peers
        # while its own stack is starting: whole means every running node answers for itself too.
        self.wait_until(lambda _: all(v is not None and v.dc is not None for v in self.views().values()),
                        timeout=timeout, what="every running node answering crm_mon", progress=progress)
        return state

    # -- steering -------------------------------------------------------------------------------

    def _crm(self, argv: list[str], timeout: float = 30.0, *, connect_timeout: float = 60.0) -> None:
        """Run a cluster command on the first node that can take it.

        A node that was just powered on answers 102 (CRM_EX_DISCONNECT: "Could not connect to
        the CIB") until its own CIB manager is up: that is "not yet", not the cluster's answer.
        Such a node is skipped, and the command retried on every node until ``connect_timeout``;
        any other failure is the cluster's answer and raised as it is.
        """
        deadline = time.monotonic() + connect_timeout
        while True:
            last: Exception | None = None
            for node in self._query_order():
                try:
                    self.testbed.node(node).run(argv, timeout=timeout)
                    return
                except TransportError as e:
                    last = e
                except CommandFailed as e:
                    if e.result.exit_status != CRM_EX_DISCONNECT:
                        raise
                    last = e
            if time.monotonic() >= deadline:
                raise last or TransportError("cluster", "no running node to run " + " ".join(argv))
            time.sleep(0.5)

    def move_group(self, group: str, node: str, *, timeout: float = 60.0,
                   progress: Progress = quiet) -> ClusterState:
        """Planned move (rg_move): ban-free move constraint, wait until started there, then clear it."""
        self._crm(["crm_resource", "--resource", group, "--move", "--node", node])
        try:
            return self.wait_until(lambda s: s.group_node(group) == node, timeout=timeout,
                                   what=f"{group} started on {node}", progress=progress)
        finally:
            self.clear_move(group)

    def restart_group(self, group: str, *, timeout: float = 120.0) -> None:
        """Stop and start a group where it is (crm_resource waits for both)."""
        self._crm(["crm_resource", "--resource", group, "--restart", f"--timeout={int(timeout * 1000)}"],
                  timeout=timeout + 10)

    def clear_move(self, group: str) -> None:
        self._crm(["crm_resource", "--resource", group, "--clear"])

    def cleanup(self, resource: str | None = None) -> None:
        """Forget failed actions (the operator's step after repairing a failure)."""
        self._crm(["crm_resource", "--cleanup", *(["--resource", resource] if resource else [])])

    def stop_services(self, node: str, *, timeout: float = 60.0) -> None:
        """Graceful stop of the cluster software on a node: pacemaker hands its groups over first."""
        t = self.testbed.node(node)

        def wait_gone(comm: str) -> None:
            deadline = time.monotonic() + timeout
            while t.run(["pidof", comm], timeout=10, check=False).ok:
                if time.monotonic() > deadline:
                    raise WaitTimeout(f"{comm} on {node} to stop", timeout)
                time.sleep(0.1)

        t.run("kill -TERM $(pidof pacemakerd)", timeout=10)
        wait_gone("pacemakerd")
        t.run(["corosync-cfgtool", "-H", "--force"], timeout=30, check=False)
        wait_gone("corosync")

    def start_services(self, node: str) -> None:
        self.testbed.start_services(node)

    def versions(self, node: str) -> dict[str, str]:
        out = {}
        for name, argv in (("pacemaker", ["pacemakerd", "--version"]), ("corosync", ["corosync", "-v"])):
            try:
                r = self.testbed.node(node).run(argv, timeout=10, check=False)
                out[name] = r.stdout.splitlines()[0] if r.stdout else "?"
            except TransportError:
                out[name] = "?"
        return out
