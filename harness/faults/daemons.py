"""Single-daemon faults (CTS ComponentFail, crmsh crash_test): one Pacemaker subdaemon killed, pacemakerd
alone killed, corosync killed until the node is fenced, corosync paused shorter or longer than the token.

The prose docs say pacemakerd "spawns all the other daemons, and respawns them if they unexpectedly
exit" (*Pacemaker Administration*, "Pacemaker Architecture"; PCMK_fail_fast defaults to no), which
reads as: a subdaemon killed alone changes nothing a client sees. The source says more
(`pcmk_source.py` holds what was read, per daemon, with the version range): a kill that takes the
node's controller down with it (based, execd, the DC's schedulerd, controld itself) leaves the DC
free to fence the node, and the expected outcome follows the installed version's source, not the
prose. pacemakerd killed alone leaves its children running, and the resources with them (crm cluster
crash_test --kill-pacemakerd); corosync gone or silent past the token and consensus timeouts means
the node has left the membership, and a node that leaves without a clean shutdown is fenced
(*Pacemaker Explained*, "Fencing"). The suites run these against the node the group runs on.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from harness.errors import FalloverError, TransportError
from harness.faults.base import Fault, Target, look_until
from harness.faults.cluster import _KillDaemon, under_systemd
from harness.faults.ops import make_whole, pids
from harness.faults.pcmk_source import SUBDAEMONS, Subdaemon, expected_after_kill
from harness.testbed.base import Testbed
from harness.topology import Topology

if TYPE_CHECKING:
    from harness.drivers.state import ClusterState

PAUSE_TIMER = "/run/fallover-corosync-pause.pid"
RESPAWN_WAIT_S = 30.0
"""How long a subdaemon kill's heal waits for pacemakerd to respawn the daemon before it restarts the stack."""
KILL_LOOP_S = 60.0
"""How long `corosync_kill_loop` keeps killing before it says the node was never fenced."""


def home_nodes(topology: Topology) -> list[Target]:
    """One target per node some group starts on: a daemon fault elsewhere only repeats the standby case."""
    homes = {g.nodes[0] for g in topology.groups} or {topology.node_names[0]}
    return [Target(node=n) for n in topology.node_names if n in homes]


def effective_token_ms(topology: Topology) -> int:
    """corosync's real token: the configured one plus the coefficient per node beyond two."""
    c = topology.cluster
    return c.token_ms + c.token_coefficient_ms * max(0, len(topology.node_names) - 2)


def loss_after_s(topology: Topology) -> float:
    """How long a silent corosync takes to be declared lost: token + consensus (1.2 × token)."""
    return effective_token_ms(topology) * 2.2 / 1000


class _Subdaemon(_KillDaemon):
    """SIGKILL of one of pacemakerd's children; what follows is the installed version's (`pcmk_source`).

    One class for the six: each catalogue entry is a subclass made from its row of `SUBDAEMONS`
    (`_kill_fault`), so that `fallover faults` and the registry keep one name per daemon.
    """

    event: ClassVar[str] = "clstrmgr_kill (one subdaemon, CTS ComponentFail)"
    suite: ClassVar[str | None] = "cluster"
    facts: ClassVar[Subdaemon]

    def targets(self, topology: Topology) -> list[Target]:
        return home_nodes(topology)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        return self.expect_seen(topology, target, group, home, None)

    def expect_seen(self, topology: Topology, target: Target, group: str, home: str,
                    seen: ClusterState | None) -> tuple[str, str, set[str]]:
        if target.node != home:
            return "stay", f"{target.node} is not the node running {group}", set()
        return expected_after_kill(self.facts, topology, group, home, seen)

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Give pacemakerd its chance to respawn the daemon first: restarting the stack over a respawn in
        progress would be our doing, not the cluster's. Only a node still missing it (or more) is made whole.

        After a kill that took the controller down, the node's attrd is asked to write its attributes again
        (`attrd_updater --refresh`): the DC erased them from the CIB when the controller left, and attrd
        does not write back values it thinks unchanged (pcmk_source), so the group would stay banned from
        a node that is whole again. That is the operator's repair, and the policy verdict judges what follows.
        """
        node = target.need("node")
        if testbed.running(node):
            try:
                look_until(lambda: pids(testbed, node, self.processes[0]), bool, timeout=RESPAWN_WAIT_S)
            except TransportError:
                pass  # fenced meanwhile: make_whole powers it on
        make_whole(testbed, node)
        if self.facts.either and testbed.running(node):
            try:
                testbed.node(node).run(["attrd_updater", "--refresh"], timeout=10, check=False)
            except TransportError:
                pass  # fenced after all: a node that starts again has its attributes written afresh


def _kill_fault(facts: Subdaemon) -> _Subdaemon:
    """The catalogue entry for one row of `SUBDAEMONS` (a subclass, since a fault's name is a class attribute)."""
    daemon = facts.daemon
    attrs = {"name": f"{facts.short}_kill", "facts": facts, "processes": (daemon,),
             "summary": f"{daemon} alone SIGKILLed on the node; pacemakerd respawns it",
             "mechanism": f"kill -KILL of the node's {daemon}; heal: the stack restarted if it is not whole",
             # a move after this kill must follow a fence of the node, or a clean stop while it stayed a member
             "extra_asserted": ("fencing",) if facts.either else (),
             "expectation": {"clean_move_ok": True} if facts.either else {}}
    cls = type(f"{facts.short.capitalize()}Kill", (_Subdaemon,), attrs)
    return cls()


SUBDAEMON_KILLS: list[_Subdaemon] = [_kill_fault(f) for f in SUBDAEMONS]


class PacemakerdKill(_KillDaemon):
    name: ClassVar[str] = "pacemakerd_kill"
    event: ClassVar[str] = "clstrmgr_kill (pacemakerd alone, crash_test --kill-pacemakerd)"
    summary: ClassVar[str] = "pacemakerd alone SIGKILLed; its children and the resources keep running"
    mechanism: ClassVar[str] = ("kill -KILL of pacemakerd only (systemd, where there is one, may not restart it "
                                "meanwhile); heal: start pacemakerd again (through its unit under systemd), which "
                                "takes its running children over")
    processes: ClassVar[tuple[str, ...]] = ("pacemakerd",)
    units: ClassVar[tuple[str, ...]] = ("pacemaker",)  # KillMode=process: systemd would start pacemakerd
    # again a second later (it adopts the children), and the fault is "pacemakerd gone until the heal"
    needs: ClassVar[tuple[str, ...]] = ("pacemaker", "spawn")
    suite: ClassVar[str | None] = "cluster"

    def targets(self, topology: Topology) -> list[Target]:
        return home_nodes(topology)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        return "stay", "the subdaemons outlive pacemakerd and keep the resources running", set()

    def repair(self, testbed: Testbed, node: str, undo: dict[str, Any]) -> None:
        """Start pacemakerd alone (it adopts the running children); never restart the whole stack for it.
        Under systemd through its unit (a pacemakerd started beside it would be one systemd cannot stop)."""
        if not testbed.running(node):
            make_whole(testbed, node)
            return
        if not pids(testbed, node, "corosync") or not pids(testbed, node, "pacemaker-controld"):
            make_whole(testbed, node)  # more than pacemakerd died meanwhile: the stack's own repair
            return
        if not pids(testbed, node, "pacemakerd"):
            if undo["systemd"] if "systemd" in undo else under_systemd(testbed, node):  # (a replayed journal)
                testbed.start_services(node)  # corosync runs already: this starts pacemaker.service
            else:
                env = [f"{k}={v}" for k, v in sorted(testbed.topology.cluster.pacemaker_env.items())]
                testbed.spawn(node, ["env", *env, "pacemakerd"] if env else ["pacemakerd"],
                              pidfile="/run/fallover-pacemakerd.pid")
        if not look_until(lambda: pids(testbed, node, "pacemakerd"), bool):
            raise FalloverError(f"{node}: pacemakerd did not start again")


class CorosyncKillLoop(_KillDaemon):
    name: ClassVar[str] = "corosync_kill_loop"
    event: ClassVar[str] = "clstrmgr_kill (corosync, again until fenced: crash_test --kill-corosync -l)"
    summary: ClassVar[str] = "corosync SIGKILLed, and again whenever it comes back, until the node is fenced"
    mechanism: ClassVar[str] = (f"kill -KILL of corosync every 0.5 s until the node is powered off by its fencing "
                                f"(at most {KILL_LOOP_S:g} s); heal: power on")
    processes: ClassVar[tuple[str, ...]] = ("corosync",)
    needs: ClassVar[tuple[str, ...]] = ("pacemaker", "power")
    suite: ClassVar[str | None] = "cluster"

    def targets(self, topology: Topology) -> list[Target]:
        return home_nodes(topology)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        if target.node == home:
            return "fallover", f"{home} leaves the membership without a clean shutdown and is fenced", {home}
        return "stay", f"{target.node} is not the node running {group}", set()

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = target.need("node")
        deadline = time.monotonic() + KILL_LOOP_S
        kills = 0
        while testbed.running(node) and time.monotonic() < deadline:
            try:
                killed = pids(testbed, node, "corosync")
                if killed:
                    testbed.node(node).run(["kill", "-KILL", *map(str, killed)], timeout=10, check=False)
                    kills += 1
                    undo["killed"] = {"corosync": killed}
            except TransportError:
                break  # fenced while we looked
            time.sleep(0.5)
        undo["kills"] = kills

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """The node was fenced (powered off) while corosync was being killed."""
        if testbed.running(target.need("node")):
            raise self.not_in_effect(target, f"{target.node} was never fenced: corosync killed {undo.get('kills')} "
                                             f"times in {KILL_LOOP_S:g} s, the node still runs")


class _CorosyncPause(Fault):
    """SIGSTOP of corosync for a while, then SIGCONT (by a timer inside the node)."""

    family: ClassVar[str] = "cluster"
    target_kind: ClassVar[str] = "node"
    needs: ClassVar[tuple[str, ...]] = ("pacemaker", "spawn")
    suite: ClassVar[str | None] = "cluster"

    def pause_s(self, topology: Topology) -> float:
        raise NotImplementedError

    def targets(self, topology: Topology) -> list[Target]:
        return home_nodes(topology)

    def precheck(self, testbed: Testbed, target: Target) -> None:
        node = target.need("node")
        self.require_running(testbed, target, node, "it has no corosync to pause")
        if len(pids(testbed, node, "corosync")) != 1:
            raise self.refused(target, f"{node} does not run exactly one corosync")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """One shell inside the node stops corosync, sleeps, continues it: the pause is not stretched by us."""
        node = target.need("node")
        pid = pids(testbed, node, "corosync")[0]
        pause = self.pause_s(testbed.topology)
        undo.update(pid=pid, pause_s=pause)
        testbed.spawn(node, ["sh", "-c", f"kill -STOP {pid}; sleep {pause:.3f}; kill -CONT {pid}"],
                      pidfile=PAUSE_TIMER)

    def _state(self, testbed: Testbed, node: str, pid: int) -> str:
        r = testbed.node(node).run(["sh", "-c", f"cut -d' ' -f3 /proc/{pid}/stat"], timeout=5, check=False)
        return r.stdout.strip() if r.ok else "gone"

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """corosync shows state T (stopped) once, within the pause."""
        node = target.need("node")
        try:
            seen = look_until(lambda: self._state(testbed, node, undo["pid"]), lambda s: s in ("T", "gone"),
                              timeout=min(2.0, undo["pause_s"]), interval=0.02)
        except TransportError:
            return  # fenced already: the pause was long enough to matter
        if seen not in ("T", "gone"):
            raise self.not_in_effect(target, f"corosync (pid {undo['pid']}) on {node} never stopped: state {seen}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Continue corosync (the timer may have done it) and end the timer; a fenced node is powered on."""
        node = target.need("node")
        if testbed.running(node) and undo.get("pid"):
            testbed.node(node).run(f"kill -KILL $(cat {PAUSE_TIMER} 2>/dev/null) 2>/dev/null; "
                                   f"kill -CONT {undo['pid']} 2>/dev/null; rm -f {PAUSE_TIMER}; true", timeout=10)
        make_whole(testbed, node)


class CorosyncPauseShort(_CorosyncPause):
    name: ClassVar[str] = "corosync_pause_short"
    event: ClassVar[str] = "false_takeover (membership daemon stalled shorter than the token)"
    destructive: ClassVar[bool] = False
    summary: ClassVar[str] = "corosync stopped (SIGSTOP) for half the token timeout, then continued"
    mechanism: ClassVar[str] = "kill -STOP corosync; sleep token/2; kill -CONT, from one shell inside the node"

    def pause_s(self, topology: Topology) -> float:
        return effective_token_ms(topology) / 2000

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        return "stay", (f"a {self.pause_s(topology):g} s pause is shorter than the {effective_token_ms(topology)} ms "
                        "token: nobody misses corosync, nothing happens"), set()


class CorosyncPauseLong(_CorosyncPause):
    name: ClassVar[str] = "corosync_pause_long"
    event: ClassVar[str] = "node_down (membership daemon stalled past token + consensus)"
    summary: ClassVar[str] = "corosync stopped (SIGSTOP) well past token + consensus: the node is lost and fenced"
    mechanism: ClassVar[str] = ("kill -STOP corosync; continued 30 s later by a timer inside the node, unless "
                                "fencing powered the node off first")

    def pause_s(self, topology: Topology) -> float:
        return max(30.0, loss_after_s(topology) * 5)

    def expect(self, topology: Topology, target: Target, group: str, home: str) -> tuple[str, str, set[str]]:
        if target.node == home:
            return "fallover", (f"the pause outlasts token + consensus ({loss_after_s(topology):g} s): {home} is "
                                "lost and fenced"), {home}
        return "stay", f"{target.node} is not the node running {group}", set()
