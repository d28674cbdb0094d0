"""Cluster-software faults: the membership layer (corosync) or the resource manager (pacemaker) killed."""

from __future__ import annotations

from typing import Any, ClassVar

from harness.errors import FalloverError, TransportError
from harness.faults.base import Fault, Target, look_until, mark
from harness.faults.ops import SYSTEMD_RUN, make_whole, pids
from harness.testbed.base import Testbed
from harness.transport.armed import arm_kill


HOLD_CONF = "fallover-hold.conf"
"""A runtime drop-in (/run: gone at the next boot) that keeps systemd from restarting a killed unit."""
_UNITS = SYSTEMD_RUN
_HOLD = (f"[ -d {_UNITS} ] || exit 0\n"  # no systemd on the node (the embedded testbed): nothing restarts
         f"for u in \"$@\"; do d={_UNITS}/$u.service.d; mkdir -p \"$d\" && "
         f"printf '[Service]\\nRestart=no\\n' > \"$d/{HOLD_CONF}\"; done\n"
         "systemctl daemon-reload && echo held")
_RELEASE = (f"held=; for u in \"$@\"; do f={_UNITS}/$u.service.d/" + HOLD_CONF +
            "; [ -e \"$f\" ] && rm -f \"$f\" && held=1; done\n"
            "[ -z \"$held\" ] || systemctl daemon-reload")


def hold_restarts(testbed: Testbed, node: str, units: tuple[str, ...]) -> bool:
    """Keep systemd from restarting `units` on the node until `release_restarts`.

    The fault is "the daemon dies", and the catalogue expects what follows from that (the node leaves
    and is fenced). Debian's pacemaker.service has Restart=on-failure: on the VMs a killed pacemakerd was
    back a second later and its controller rejoined 2.5 s after it left, before the DC's scheduler had
    fenced the node (pacemaker_kill-node1, 2026-11-30), so the outcome was a race, not the fault.
    True when the node has systemd (then its units, not the harness, start the daemon again)."""
    if not units:
        return False
    out = testbed.node(node).run(["sh", "-c", _HOLD, "hold", *units], timeout=60).stdout
    return out.strip().endswith("held")


def release_restarts(testbed: Testbed, node: str, units: tuple[str, ...]) -> None:
    testbed.node(node).run(["sh", "-c", _RELEASE, "release", *units], timeout=60)


def under_systemd(testbed: Testbed, node: str) -> bool:
    """Whether systemd runs the node (its units, not the harness, start the cluster software)."""
    return testbed.node(node).run(["sh", "-c", f"[ -d {_UNITS} ]"], timeout=15, check=False).ok


def _release(testbed: Testbed, node: str, units: tuple[str, ...]) -> None:
    """Release the hold; a node that drops off meanwhile is made whole first, then released again.

    The DC fences a node whose daemons died, and on the VMs that fence came 25 s after the kill, in the
    middle of a heal that had already restarted the stack (pacemaker_kill-node2 and corosync_kill-node2,
    2026-12-01: the release's SSH connect timed out and the heal was called failed, on a cluster that did
    what it should). Once the node is whole again its /run is new, so the second release finds nothing."""
    try:
        release_restarts(testbed, node, units)
    except TransportError:
        make_whole(testbed, node)
        release_restarts(testbed, node, units)


class _KillDaemon(Fault):
    family: ClassVar[str] = "cluster"
    event: ClassVar[str] = "clstrmgr_kill"
    target_kind: ClassVar[str] = "node"
    needs: ClassVar[tuple[str, ...]] = ("pacemaker",)
    processes: ClassVar[tuple[str, ...]] = ()
    units: ClassVar[tuple[str, ...]] = ()
    """systemd units that would restart what the fault kills (held for the fault's window)."""

    def precheck(self, testbed: Testbed, target: Target) -> None:
        node = target.need("node")
        self.require_running(testbed, target, node, "its daemons are dead already")
        if not any(pids(testbed, node, comm) for comm in self.processes):
            raise self.refused(target, f"none of {', '.join(self.processes)} is running on {node}: nothing to kill")

    def inject(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = target.need("node")
        undo["held"] = list(self.units)
        undo["systemd"] = hold_restarts(testbed, node, self.units)
        killed = {comm: pids(testbed, node, comm) for comm in self.processes}
        undo["killed"] = killed
        found = sorted({p for ps in killed.values() for p in ps})
        if not found:
            raise FalloverError(f"{node}: none of {', '.join(self.processes)} was running")
        # one kill for all of them, measured from here: the restart hold and the lookups took seconds on a
        # busy TCG guest (20 s for the hold's daemon-reload, pacemaker_kill-node1 2026-11-30), not the fault;
        # so did an SSH session's start for the kill itself (0.9-3.4 s), hence a shell armed beforehand
        armed = arm_kill(testbed.node(node), "KILL", found)
        mark(undo, "kill", fault_start=True)
        if armed is not None:
            armed.fire()
        else:
            testbed.node(node).run(["kill", "-KILL", *map(str, found)], timeout=10, check=False)

    def verify(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        """Every killed PID is gone (a respawned daemon has a new PID; a node fenced meanwhile took them all)."""
        node = target.need("node")

        def survivors() -> list[str]:
            try:
                return [f"{comm} (pid {pid})" for comm, killed in undo["killed"].items()
                        for pid in set(killed) & set(pids(testbed, node, comm))] if testbed.running(node) else []
            except TransportError:
                return []  # the node vanished while we looked

        left = look_until(survivors, lambda s: not s)
        if left:
            raise self.not_in_effect(target, f"still running on {node} after SIGKILL: {', '.join(left)}")

    def heal(self, testbed: Testbed, target: Target, undo: dict[str, Any]) -> None:
        node = target.need("node")
        # the journal has `held` only once inject returned: a run killed during the inject still releases
        # (idempotent; a node fenced meanwhile boots with a new /run, and is not asked)
        units = tuple(undo.get("held") or self.units)
        held = bool(units) and testbed.running(node)
        try:
            self.repair(testbed, node, undo)
        finally:
            if held:
                _release(testbed, node, units)

    def repair(self, testbed: Testbed, node: str, undo: dict[str, Any]) -> None:
        """What the heal does before the restart hold is released: by default, the node made whole."""
        make_whole(testbed, node)


class CorosyncKill(_KillDaemon):
    name: ClassVar[str] = "corosync_kill"
    summary: ClassVar[str] = "corosync (membership, heartbeat) SIGKILLed on the node"
    mechanism: ClassVar[str] = ("kill -KILL of the node's corosync (systemd, where there is one, may not restart it "
                                "or pacemaker meanwhile); heal: restart the stack (or power on if fenced)")
    processes: ClassVar[tuple[str, ...]] = ("corosync",)
    units: ClassVar[tuple[str, ...]] = ("corosync", "pacemaker")  # pacemaker exits with corosync, and its
    # restart would start corosync again (Requires=corosync)


class PacemakerKill(_KillDaemon):
    name: ClassVar[str] = "pacemaker_kill"
    summary: ClassVar[str] = "pacemakerd and its controller SIGKILLed on the node; corosync stays"
    mechanism: ClassVar[str] = ("kill -KILL of pacemakerd and pacemaker-controld (systemd, where there is one, may "
                                "not restart pacemaker meanwhile); heal: restart the stack "
                                "(or power on if fenced)")
    processes: ClassVar[tuple[str, ...]] = ("pacemakerd", "pacemaker-controld")
    units: ClassVar[tuple[str, ...]] = ("pacemaker",)
