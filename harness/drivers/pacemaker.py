"""The Pacemaker driver: read a typed ClusterState from crm_mon and steer groups with crm tools."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress

from harness.drivers.settle import RUN_AGAIN_S, SETTLE_QUERY, in_a_transition, parse_settle_query
from harness.drivers.pcmk_backup import PacemakerBackup
from harness.drivers.polling import Polling, every_node_answers
from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import CommandFailed, CommandTimedOut, TransportError, WaitTimeout
from harness.result import Result
from harness.testbed.base import Capabilities, Progress, Testbed, pace_of, quiet
from harness.wait import wait_until

CRM_MON = ["crm_mon", "--one-shot", "--inactive", "--output-as=xml"]
CRM_EX_DISCONNECT = 102  # pacemaker's exit code for "not connected" (the CIB or a daemon is not up yet)

SETTLE_QUIET_S = 3.0
"""How long after a fault change (inject or heal) wait_settled and the poller wait before they call the
cluster settled. Some results are in flight across a heal and nothing shows them — not crm_mon, not the
DC, not attrd — until they land: a ping monitor that sent its probes into the dead network returns up to its
last reply timeout later (~1.4 s on the embedded testbed: 3 pings 0.2 s apart, 1 s timeout), the link monitor
within about 1 s; its attribute change then waits in attrd, where ``busy`` sees it. 3 s covers both with a margin."""

RECOVER_ROUND_S = 20.0
"""How long `recover` waits for the cluster to settle before it looks for failed actions to clean up again."""

STACK_PROCESSES = ("corosync", "pacemakerd", "pacemaker-controld", "pacemaker-based", "pacemaker-fenced",
                   "pacemaker-execd", "pacemaker-attrd", "pacemaker-schedulerd")
"""Every process of the stack on a node; the first three must run for the node to be whole."""


class PacemakerDriver(Polling, PacemakerBackup):
    """Talks to the cluster through any live node, preferring one that knows the DC.

    A just-rejoined node reports no DC and its peers as unclean, so a view without a DC
    is used only when no node has a better one.
    """

    membership = True

    def __init__(self, testbed: Testbed, *, query_timeout: float | None = None, quiet_s: float = SETTLE_QUIET_S) -> None:
        self.testbed = testbed
        self.topology = testbed.topology
        pace = pace_of(testbed)
        self.query_timeout = query_timeout or pace.query_timeout_s
        self.admin_timeout = pace.admin_timeout_s
        self.poll_interval = pace.poll_s
        self.quiet_s = quiet_s
        self._preferred: str | None = None
        self._first: tuple[str, ...] = ()

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
        """Every running node's view: different answers mean a partitioned cluster.

        Asked in parallel: `recover` asks every poll until each node answers, at the start and the
        end of every case, and one at a time the nodes' crm_mon calls added up (a frozen one's to its timeout)."""
        nodes = [n for n in self.topology.node_names if self.testbed.running(n)]
        if len(nodes) < 2:
            return {n: self.view(n) for n in nodes}
        with ThreadPoolExecutor(max_workers=len(nodes)) as pool:
            return dict(zip(nodes, pool.map(self.view, nodes)))

    def state(self) -> ClusterState | None:
        """The first view that knows a DC, asking first the node that gave the last good one, then those
        `ask_first` named.

        Sticking to the last good node keeps a poll fast when another node cannot answer for a
        while (a frozen node makes its crm_mon wait out ``query_timeout``); without a DC view
        anywhere, the first view at all.
        """
        fallback = None
        order = sorted(self._query_order(), key=lambda n: (n != self._preferred, n not in self._first))
        for node in order:
            s = self.view(node)
            if s is None:
                continue
            if s.dc is not None:
                self._preferred = node
                return s
            fallback = fallback or s
        return fallback

    def ask_first(self, nodes: Iterable[str]) -> None:
        """Read the cluster from these nodes first, from now on (the recording names those its case does not time).

        One crm_mon costs an emulated guest ~1.5 s of CPU: in node_stop-node1 on the VMs the poller asked node2, the
        node taking the group over, every 3-5 s (up to a third of the CPU its starts waited for). A spare pays
        instead; with no spare, the order is the topology's."""
        self._first = tuple(nodes)
        self._preferred = None

    def _query_order(self) -> list[str]:
        return [n for n in self.topology.node_names if self.testbed.running(n)]

    def expected_node(self, group: str, state: ClusterState) -> str | None:
        """Where the topology's priority list puts a group, given which nodes are online."""
        for n in self.topology.group(group).nodes:
            if n in state.online:
                return n
        return None

    # -- settled: nothing missing, nothing pending ------------------------------------------------
    #
    # One definition for everyone who asks "is the cluster done?": the poller (CLUSTER_REDUNDANT),
    # wait_settled (the runner's end of recovery, `fallover up`), and the redundancy verdict that
    # reads the poller's events. A good-looking crm_mon snapshot is not enough: right after a heal
    # the cluster may still be about to act (a DC transition running, an attribute change waiting
    # out its dampening in attrd, a monitor result still in flight) and move the group 1-2 s later.

    def snapshot_gap(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None:
        """Why a crm_mon snapshot is not a settled, fully redundant cluster; None when it looks like one.

        Nothing beyond the snapshot but the testbed's link states: a DC; every powered-on node
        online (every declared node with ``every_node``: a powered-off node is missing redundancy);
        every adapter of a running node up; no failed action; every group started, where its policy
        puts it (``placement``); node attributes at the value crm_mon expects (a ping that reaches
        its hosts); nothing in flight in the snapshot (a node joining, an operation recorded pending).
        """
        if s.dc is None:
            return f"{s.seen_from} knows no DC"
        want = self.topology.node_names if every_node else self._query_order()
        gap = self.members_gap(s, want, "nodes not online")
        if gap:
            return gap
        for g in self.topology.groups:
            node = s.group_node(g.name)
            if node is None:
                return f"group {g.name} not started"
            if placement and g.policy == "cascading" and node != self.expected_node(g.name, s):
                return f"group {g.name} on {node}, not on {self.expected_node(g.name, s)}"
        off = s.attributes_off()
        if off:
            return off[0]
        pending = s.pending_actions()
        if pending:
            return f"in flight: {', '.join(pending)}"
        return None

    def adapters_down(self) -> list[str]:
        """Adapters (node/network) of running nodes whose link is not up, where the testbed can tell."""
        links = getattr(self.testbed, "adapter_states", None)  # one netlink dump, where the testbed has it
        if links is not None:
            return [f"{node}/{net}" for (node, net), st in links().items()
                    if st != "up" and self.testbed.running(node)]
        return [f"{node}/{net.name}" for node in self._query_order() for net in self.topology.networks
                if self.testbed.carrier(node, net.name) is False]

    def busy(self, s: ClusterState) -> str | None:
        """What the cluster is still doing that a crm_mon snapshot does not show; None when idle.

        One command on one node (see SETTLE_QUERY; ~20-40 ms): the DC's controller must be in
        S_IDLE (not computing or running a transition, not electing, not integrating a node), and
        every node attribute the CIB holds must have the value attrd holds — attrd keeps a change
        back for the attribute's dampening (the ping's 1 s, the link monitor's 5 s) before it writes
        it, and the cluster only reacts once it is written.
        """
        if s.dc is None:
            return f"{s.seen_from} knows no DC"
        names = sorted({name for attrs in s.attributes.values() for name in attrs})
        why = self._settle_query(s, names)
        if in_a_transition(why, s.dc):
            time.sleep(RUN_AGAIN_S)  # an empty recheck run is over by then
            why = self._settle_query(s, names)
        return why

    def _settle_query(self, s: ClusterState, names: list[str]) -> str | None:
        """SETTLE_QUERY on the node that gave ``s``: the DC's state, then attrd's value of each of ``names``."""
        assert s.dc is not None
        order = self._query_order()
        node = s.seen_from if s.seen_from in order else (order[0] if order else None)
        if node is None:
            return "no running node to ask whether the DC is idle"
        try:
            r = self.testbed.node(node).run(["sh", "-c", SETTLE_QUERY, "sh", s.dc, *names],
                                            timeout=self.query_timeout, check=False)
        except (TransportError, CommandFailed) as e:
            return f"cannot ask {node} whether the DC is idle: {e}"
        return parse_settle_query(r.stdout, s, names, stderr=r.stderr)

    def unsettled(self, s: ClusterState, placement: bool = True, *, every_node: bool = False) -> str | None:
        """Why the cluster is not settled right now (None when it is): ``snapshot_gap``, then ``busy``."""
        return self.snapshot_gap(s, placement, every_node=every_node) or self.busy(s)

    def settled(self, s: ClusterState, placement: bool = True) -> bool:
        """Settled now: the snapshot is whole and nothing is pending (``unsettled``).

        Fast: crm_mon is already read; only a whole-looking snapshot costs one more query (``busy``).
        Instantaneous: results still in flight across a heal are ``wait_settled``'s business.
        """
        return self.unsettled(s, placement) is None

    def wait_settled(self, *, timeout: float = 90.0, progress: Progress = quiet,
                     placement: bool = True) -> ClusterState:
        """Until the cluster is settled (``settled``) and ``quiet_s`` have passed since the last fault change.

        All powered-on nodes online, adapters up, no failed action, every group started (where its
        policy puts it, with ``placement``), nothing pending (DC idle, no attribute change waiting in
        attrd, no operation in flight) — the poller's definition of CLUSTER_REDUNDANT. The quiet
        period covers what nothing shows: a monitor that probed the network before the heal reports
        after it (see SETTLE_QUIET_S). On timeout, WaitTimeout says what was still missing.
        """
        what = "cluster settling" if placement else "cluster whole (groups anywhere)"
        last: list[ClusterState | None] = [None]
        why = ["no node answered crm_mon"]
        shown = [""]
        pause = [self.poll_interval]

        def check() -> ClusterState | None:
            t_look = time.monotonic()
            s = self.state()
            last[0] = s
            pause[0] = self.poll_interval
            reason = "no node answers crm_mon" if s is None else self.unsettled(s, placement)
            if reason is None and (left := self.quiet_left()) > 0:
                # settled but for the quiet period: no look before it ends can answer yes, so the next
                # look is when it ends (rather than ~12 crm_mon and settle queries at 4 Hz meanwhile)
                pause[0] = max(self.poll_interval, left)
                reason = f"waiting {left:.1f} s more for results in flight since the last fault change"
            why[0] = reason or ""
            line = f"{s.summary() if s else 'no node answers'}" + (f" ({reason})" if reason else "")
            if line != shown[0]:
                progress(f"{what}: {line}")
                shown[0] = line
            if reason is not None or s is None:
                return None
            self.remember_settled(t_look, s)  # the runner's recovery may take it as its placed look
            return s

        def describe() -> str:
            return f"{last[0].summary() if last[0] else 'no node answers crm_mon'}; not settled: {why[0]}"

        settled = wait_until(check, timeout=timeout, what=what, interval=lambda: pause[0], describe=describe)
        assert settled is not None  # wait_until returns only a truthy answer
        return settled

    def recover(self, *, timeout: float = 90.0, progress: Progress = quiet, placement: bool = True) -> ClusterState:
        """The operator's step after a repair: forget failures, then wait for the cluster to settle.

        Failed actions (and the fail counts behind them) keep a cascading group away from its home node
        for good; clearing them lets it fail back. Each round cleans up again: a failure may land just after a
        cleanup, and crm_resource waits for every node's controller, which one (re)joining may not answer.
        """
        deadline = time.monotonic() + timeout
        while True:
            s = self.state()
            if s is not None and s.failed_actions:
                progress(f"cleaning up {len(s.failed_actions)} failed action(s)")
                try:
                    self.cleanup()
                except CommandTimedOut:
                    progress(f"the cleanup waited {self.admin_timeout:.0f} s for a controller: again next round")
            left = deadline - time.monotonic()
            try:
                state = self.wait_settled(timeout=max(1.0, min(left, RECOVER_ROUND_S)), progress=progress,
                                          placement=placement)
                break
            except WaitTimeout:
                if left <= RECOVER_ROUND_S:
                    raise
                if self.dc_idle():  # a DC at work is the cluster recovering: a refresh would abort its transition
                    self.refresh_attributes()
        # A node killed and restarted within the token timeout still looks online to its peers
        # while its own stack is starting: whole means every running node answers for itself too.
        every_node_answers(self.views, timeout=max(1.0, deadline - time.monotonic()), interval=self.poll_interval,
                           progress=progress)
        return state

    def dc_idle(self) -> bool:
        """Whether the DC's controller is in S_IDLE (or there is no DC to ask: nothing runs that could be upset).

        attrd's refresh writes every attribute to the CIB again, and the DC aborts the transition it is
        running on such a change: a failback under way then waits for its in-flight operations and a new
        transition (seen: 3-4 s more outage on a loaded host). It is the repair for a stuck cluster only.
        """
        s = self.state()
        return s is None or s.dc is None or self._settle_query(s, []) is None

    def refresh_attributes(self) -> None:
        """`attrd_updater --refresh` on every running node: attrd writes all its values to the CIB again.

        The operator's repair for a node whose transient attributes were erased from the CIB while attrd
        kept them (Pacemaker 2.1.5 after its controller restarted: attrd holds the link monitor's 1 and
        never writes it back, and the group stays banned from the node).
        """
        for node in self._query_order():
            with suppress(TransportError):
                self.testbed.node(node).run(["attrd_updater", "--refresh"], timeout=10, check=False)

    # -- steering -------------------------------------------------------------------------------

    def admin(self, argv: list[str], timeout: float | None = None, *, connect_timeout: float = 60.0,
              input: str | None = None) -> Result:
        """Run a cluster command on the first node that can take it.

        A node that was just powered on answers 102 (CRM_EX_DISCONNECT: "Could not connect to
        the CIB") until its own CIB manager is up: that is "not yet", not the cluster's answer.
        Such a node is skipped, and the command retried on every node until ``connect_timeout``;
        any other failure is the cluster's answer and raised as it is. Returns the answer (a query's output).
        """
        deadline = time.monotonic() + connect_timeout
        while True:
            last: Exception | None = None
            for node in self._query_order():
                try:
                    return self.testbed.node(node).run(argv, timeout=timeout or self.admin_timeout, input=input)
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
        """Planned move (rg_move): ban-free move constraint, wait until started there, then clear it. A cascading
        group fails back as soon as the constraint is cleared: to use it where it was moved, hold it with `moved_to`."""
        with self.moved_to(group, node, timeout=timeout, progress=progress) as state:
            return state

    @contextmanager
    def moved_to(self, group: str, node: str, *, timeout: float = 60.0,
                 progress: Progress = quiet) -> Iterator[ClusterState]:
        """Move the group to the node and keep it there for the block (the move constraint is cleared
        however the block ends); yields the state that shows it started there."""
        self.admin(["crm_resource", "--resource", group, "--move", "--node", node])
        try:
            yield self.wait_until(lambda s: s.group_node(group) == node, timeout=timeout,
                                  what=f"{group} started on {node}", progress=progress)
        finally:
            self.clear_move(group)

    def clear_move(self, group: str) -> None:
        self.admin(["crm_resource", "--resource", group, "--clear"])

    def cleanup(self, resource: str | None = None) -> None:
        """Forget failed actions (the operator's step after repairing a failure)."""
        self.admin(["crm_resource", "--cleanup", *(["--resource", resource] if resource else [])])

    def stop_services(self, node: str, *, timeout: float = 60.0, signalled: Callable[[], None] = lambda: None) -> None:
        """Graceful stop of the cluster software on a node: pacemaker hands its groups over first."""
        t = self.testbed.node(node)

        def wait_gone(comm: str) -> None:
            deadline = time.monotonic() + timeout
            while t.run(["pidof", comm], timeout=10, check=False).ok:
                if time.monotonic() > deadline:
                    raise WaitTimeout(f"{comm} on {node} to stop", timeout)
                time.sleep(0.1)

        t.run("kill -TERM $(pidof pacemakerd)", timeout=10)
        signalled()
        wait_gone("pacemakerd")
        t.run(["corosync-cfgtool", "-H", "--force"], timeout=30, check=False)
        wait_gone("corosync")

    def start_services(self, node: str) -> None:
        self.testbed.start_services(node)

    def stack_processes(self) -> tuple[str, ...]:
        return STACK_PROCESSES

    def capabilities(self) -> Capabilities:
        """Pacemaker has all of them; a shared disk only where the topology declares a group on one."""
        no_disk = None if any(getattr(g, "disk", None) for g in self.topology.groups) else \
            "no group of the topology has a shared disk"
        return {"fencing": None if self.topology.cluster.stonith else "the topology disables stonith",
                "resource_manager": None, "pacemaker": None, "shared_disk": no_disk, "quorum": None}

    def versions(self, node: str) -> dict[str, str]:
        out = {}
        for name, argv in (("pacemaker", ["pacemakerd", "--version"]), ("corosync", ["corosync", "-v"])):
            try:
                r = self.testbed.node(node).run(argv, timeout=10, check=False)
                out[name] = r.stdout.splitlines()[0] if r.stdout else "?"
            except TransportError:
                out[name] = "?"
        return out
