"""What a fault and the recovery disrupted (which node, which daemons, when), and the log noise that follows from it.

A daemon that is killed, stopped or restarted takes its IPC with it: it, and every local peer
talking to it, logs connection errors at error level. Those lines are the disruption itself, not
news, but only by construction: the line comes from the disrupted node's own log, falls in the
disruption's window, and is an IPC / connection / cluster-layer-gone error of a disrupted daemon
or of a peer talking to one. Anything else on that node, and every line of the other nodes, stays
a finding. Growing a regex list per false alarm is what this replaces.

Everything here is a pure function of a saved timeline and log text, so a run can be judged again
offline.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from harness.timeline import (CLUSTER_NODE_JOINED, CLUSTER_NODE_LOST, FAULT_HEALED, FAULT_INJECTED, FENCED,
                              TEST_MARK, Event, Timeline)
from harness.topology import Topology

__all__ = ["DISRUPTS", "END_MARGIN_S", "NOISE", "START_MARGIN_S", "WHOLE_NODE", "Disruption", "Effect", "NoiseRule",
           "daemon_of", "disruptions_from", "explain", "line_span", "match_noise"]

WHOLE_NODE: frozenset[str] = frozenset({"*"})
"""Every process of the node: all cluster daemons, corosync, resource agents, the application, and any client
tool (attrd_updater, crm_*, cibadmin) running there when it goes down or comes back."""

START_MARGIN_S = 0.25
"""Before an injection or a fence: the event is stamped before the harness acts, so this only absorbs clock
reading order between processes; a line's own timestamp resolution is handled by :func:`line_span`."""
END_MARGIN_S = 5.0
"""After the last moment a node may have restarted (heal, rejoin, end of recovery): a restarted daemon keeps
connecting to its peers, and failing while they start, for a couple of seconds."""

RECOVERY_START, RECOVERY_END = "recovery start", "recovery end"  # the runner's test.mark labels


@dataclass(frozen=True)
class Disruption:
    """Daemons of one node that were killed, stopped or restarted between two wall-clock times, and why."""

    node: str
    daemons: frozenset[str]   # process names as they appear in the logs, or WHOLE_NODE
    start_wall: float
    end_wall: float | None    # None: still disrupted when the recording ended
    why: str                  # "corosync_kill injected on node1", "node1 fenced", ...

    def covers(self, daemon: str | None) -> bool:
        return "*" in self.daemons or (daemon is not None and daemon in self.daemons)

    def during(self, t0: float, t1: float) -> bool:
        """Whether a line stamped within [t0, t1) may have been written inside the window."""
        return t1 > self.start_wall and (self.end_wall is None or t0 <= self.end_wall)


@dataclass(frozen=True)
class Effect:
    """What a fault does to the cluster software: on which nodes, which daemons, and why we believe it."""

    scope: Literal["target", "cluster", "none"]  # the injected event's node(s), every node, or nothing
    daemons: frozenset[str]
    reason: str


_NONE = frozenset[str]()


def _stack(reason: str) -> Effect:
    return Effect("target", WHOLE_NODE, reason)


def _nothing(reason: str) -> Effect:
    return Effect("none", _NONE, reason)


DISRUPTS: dict[str, Effect] = {
    "node_power_off": _stack("every task of the node is SIGKILLed at once; heal or recovery powers it on and the "
                             "whole stack starts afresh"),
    "node_stop": _stack("pacemakerd stops every child, corosync-cfgtool -H stops corosync; heal starts the stack"),
    "node_hang": _stack("the node is frozen, then fenced (SIGKILL of its cgroup) or thawed with every peer "
                        "timeout expired; heal or recovery restarts what is gone"),
    "cpu_overload": _nothing("nothing is killed or restarted; should the cluster fence the starved node, the fence "
                             "event disrupts it"),
    "adapter_down": _nothing("a cable: corosync keeps the other link, no daemon stops (the link monitor's ERROR is "
                             "a consequence rule)"),
    "network_down_local": _nothing("one network of one node: as adapter_down"),
    "network_down_global": _nothing("a dead switch: every link stays up, knet keeps the other network"),
    "partition": _stack("the cut-off side loses quorum and is fenced, then powered on by heal or recovery"),
    "packet_loss": _nothing("knet retransmits and keeps the other link; nothing stops"),
    "heartbeat_loss": _stack("the node's corosync traffic is dropped on every network: it is fenced, then powered "
                             "on by heal or recovery"),
    "packet_delay": _nothing("knet keeps the other link; nothing stops"),
    "packet_corrupt": _nothing("receivers drop the corrupt packets; knet keeps the other link; nothing stops"),
    "disk_pull": _nothing("I/O errors reach the app and the Filesystem agent (consequence rules); a stop that "
                          "fails on the dead disk gets the node fenced, and the fence event disrupts it"),
    "disk_read_errors": _nothing("as disk_pull, for reads only"),
    "disk_write_errors": _nothing("as disk_pull, for writes only"),
    "disk_hang": _nothing("I/O blocks: the monitor times out (a warning-level failed action); a stop that "
                          "times out gets the node fenced, and the fence event disrupts it"),
    "disk_full": _nothing("ENOSPC reaches the app only (a consequence rule)"),
    "app_kill": _nothing("the application is not a cluster daemon; its monitor notices at info level"),
    "app_hang": _nothing("the application is not a cluster daemon; its monitor's ERROR is a consequence rule"),
    "app_start_fail": _nothing("a start that fails is a warning-level failed action; nothing stops"),
    "corosync_kill": _stack("every pacemaker daemon loses the cluster layer and exits (status 102); the node is "
                            "fenced or restarted by heal"),
    "pacemaker_kill": _stack("pacemakerd and the controller die; the remaining daemons lose their peers, the node "
                             "is fenced or restarted by heal"),
    "fence_fail": _stack("the node is powered off once its fence device is broken (every task SIGKILLed); the heal "
                         "fences it through the mended device and powers it on"),
    "fence_hang": _stack("as fence_fail: the node is powered off while its fence device hangs"),
    "group_move": _nothing("a planned move: resources stop and start, no daemon does"),
    "node_standby": _nothing("a planned standby: the node stays a member, no daemon stops"),
    "node_maintenance": _nothing("resources are unmanaged, no daemon stops"),
    "rolling_restart": Effect("cluster", WHOLE_NODE, "every node in turn: graceful stop of the whole stack, start, "
                                                     "wait until settled"),
    "partition_majority": _stack("the minority loses quorum and is fenced, then powered on by heal or recovery"),
    "partition_oneway": _stack("nobody hears the node: it is fenced, then powered on by heal or recovery"),
    "partition_bridge": _nothing("which half is fenced is corosync's choice: the fence event disrupts it"),
    **{f"{d}_kill": _stack(f"pacemaker-{d} is SIGKILLed: it and every local peer lose its IPC until pacemakerd "
                           "respawns it (a controller that restarts may get the node fenced)")
       for d in ("based", "fenced", "execd", "attrd", "schedulerd", "controld")},
    "pacemakerd_kill": _stack("pacemakerd is SIGKILLed; its children lose their parent's IPC until heal starts it again"),
    "corosync_kill_loop": _stack("corosync is SIGKILLed until the node is fenced: every pacemaker daemon loses the "
                                 "cluster layer"),
    "corosync_pause_short": _nothing("corosync is stopped for less than the token: nobody may notice"),
    "corosync_pause_long": _stack("corosync is stopped past token + consensus: the node is lost and fenced"),
    "cluster_simul_restart": Effect("cluster", WHOLE_NODE, "every node's stack stopped and started at once"),
    "cluster_one_by_one": Effect("cluster", WHOLE_NODE, "every node's stack stopped, then started, one by one"),
    "cluster_reattach": Effect("cluster", WHOLE_NODE, "every node's stack stopped and started under maintenance mode"),
    "app_kill_threshold": _nothing("the application is not a cluster daemon (as app_kill), however often it dies"),
    "app_failure_expiry": _nothing("the application is not a cluster daemon (as app_kill)"),
}
"""Per fault (`fallover faults`), which daemons of which nodes it kills, stops or restarts, from what the fault's
inject() and heal() do (harness/faults/*.py). Faults that stop nothing rely on the fence events instead."""


# -- log lines ------------------------------------------------------------------------------------

_SYSLOG_TIME = re.compile(r"^(?P<mon>[A-Z][a-z]{2}) (?P<day>[ \d]\d) (?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
                          r"(?:\.(?P<frac>\d+))?\s")
_ISO_TIME = re.compile(r"^(?P<y>\d{4})-(?P<mo>\d\d)-(?P<d>\d\d)T(?P<h>\d\d):(?P<m>\d\d):(?P<s>\d\d)"
                       r"(?:\.(?P<frac>\d+))?\s")
_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                                       "Dec"), 1)}


def line_span(line: str, near: float) -> tuple[float, float] | None:
    """The wall-clock interval [t0, t1) a line's timestamp stands for, or None if it has none we can read.

    Node logs are written in the host's local time (the nodes share its clock and /etc/localtime),
    so they are read with this process's local time. Syslog-style stamps have no year: the year
    that puts the line closest to ``near`` (the audit's mark) wins, so a run across New Year reads
    right. A stamp is truncated, not rounded: `15:34:05` covers [05.000, 06.000).
    """
    if m := _SYSLOG_TIME.match(line):
        month = _MONTHS.get(m["mon"])
        if month is None:
            return None
        year = time.localtime(near).tm_year
        fields = (month, int(m["day"]), int(m["h"]), int(m["m"]), int(m["s"]))
        candidates = [t for y in (year - 1, year, year + 1) if (t := _local(y, *fields)) is not None]
        if not candidates:
            return None
        t0 = min(candidates, key=lambda t: abs(t - near))
    elif m := _ISO_TIME.match(line):
        t = _local(int(m["y"]), int(m["mo"]), int(m["d"]), int(m["h"]), int(m["m"]), int(m["s"]))
        if t is None:
            return None
        t0 = t
    else:
        return None
    frac = m["frac"]
    if not frac:
        return t0, t0 + 1.0
    step = 10.0 ** -len(frac)
    return t0 + int(frac) * step, t0 + (int(frac) + 1) * step


def _local(year: int, month: int, day: int, h: int, mi: int, s: int) -> float | None:
    try:
        return time.mktime((year, month, day, h, mi, s, 0, 0, -1))
    except (OverflowError, ValueError):
        return None


_PCMK_DAEMON = re.compile(r"^\w{3} [ \d]\d [\d:.]+ \S+ (?P<d>[^\s\[]+)\s*\[\d+\] \(")
_AGENT = re.compile(r"^\w{3} [ \d]\d [\d:.]+\s+\S+\(\S+\)\[\d+\]:")
_COROSYNC = re.compile(r"^\w{3} [ \d]\d [\d:.]+ \[\d+\] \S+ corosync ")
_APP = re.compile(r"^\S+ (?P<d>fallover-app|kvapp)\[\d+\] ")


def daemon_of(line: str) -> str | None:
    """The process that wrote a line, as named in the log: `pacemaker-controld`, `attrd_updater`, `corosync`,
    `resource-agent` (any OCF agent), `fallover-app`, `kvapp`; None for an unknown format."""
    if m := _PCMK_DAEMON.match(line):
        return m["d"]
    if _AGENT.match(line):
        return "resource-agent"
    if _COROSYNC.match(line):
        return "corosync"
    if m := _APP.match(line):
        return m["d"]
    return None


# -- the noise of a disrupted daemon -------------------------------------------------------------------

PEERS: dict[str, str] = {
    # how pacemaker 2.1 names the peer a message is about → the process that serves it
    "cluster layer": "corosync", "CPG": "corosync", "CFG": "corosync", "CMAP": "corosync", "quorum": "corosync",
    "the CIB manager": "pacemaker-based", "cib_rw": "pacemaker-based", "cib_ro": "pacemaker-based",
    "cib_shm": "pacemaker-based", "cib": "pacemaker-based",
    "stonith-ng": "pacemaker-fenced", "fencer": "pacemaker-fenced",
    "attrd": "pacemaker-attrd", "lrmd": "pacemaker-execd", "executor": "pacemaker-execd",
    "crmd": "pacemaker-controld", "controller": "pacemaker-controld",
    "pengine": "pacemaker-schedulerd", "scheduler": "pacemaker-schedulerd",
    # the names pcmk_ipc_name() gives in log messages
    "CIB manager": "pacemaker-based", "attribute manager": "pacemaker-attrd", "launcher": "pacemakerd",
}


@dataclass(frozen=True)
class NoiseRule:
    """An error a daemon logs when it, or the local peer it talks to, goes away; and why that is not news."""

    regex: re.Pattern[str]
    reason: str
    peer: str | None = None  # the daemon the message is about, when the regex has no `peer` group

    def peer_of(self, m: re.Match[str]) -> str | None:
        named = m.groupdict().get("peer")
        if named is None:
            return self.peer
        return PEERS.get(named, named)


def _noise(regex: str, reason: str, peer: str | None = None) -> NoiseRule:
    return NoiseRule(re.compile(regex), reason, peer)


NOISE: tuple[NoiseRule, ...] = (
    _noise(r"crit: Lost connection to (?P<peer>cluster layer|the CIB manager), shutting down",
           "a daemon exits when corosync or the CIB manager it depends on is gone; the stack is restarted"),
    _noise(r"error: Connection to the (?P<peer>CPG) API failed: Library error",
           "CPG is corosync's group messaging: every user of it gets a library error when corosync is gone"),
    _noise(r"crit: Could not connect to Corosync (?P<peer>CFG|CMAP|CPG|quorum)\b",
           "pacemakerd retries corosync's API once per second while corosync is gone"),
    _noise(r"error: Connection to (?:the )?(?P<peer>[\w-]+(?: manager)?) (?:IPC failed|closed)",
           "a daemon's IPC to a local peer broke because that peer exited"),
    _noise(r"error: (?P<peer>[\w-]+) IPC provider disconnected while waiting for message",
           "a daemon was waiting for a reply from a local peer that exited"),
    _noise(r"error: (?P<peer>pacemaker-\w+|pacemakerd)\[\d+\] exited with status 102 \(Not connected\)",
           "pacemakerd reaps a child that exited because it lost its cluster connection"),
    _noise(r"error: Could not get executable for PID \d+",
           "pacemakerd checks a child whose process already vanished (killed with the stack)"),
    _noise(r"error: Could not connect to (?:the )?(?P<peer>[\w-]+(?: manager)?)(?: IPC)?: Connection refused",
           "a client (daemon, agent helper such as attrd_updater, crm_* tool) found no listener: the daemon it "
           "talks to is down or not up yet"),
    _noise(r"\(update_attrd\)\s+error: Could not update attribute \S+ for cluster node \S+: Connection refused",
           "the starting controller asks the attribute manager before it listens (a TCG guest booting after its "
           "fence: partition-node2, 2026-11-30)", peer="pacemaker-attrd"),
    _noise(r"error: Error in connection setup \(/dev/shm/qb-[^)]*\): (?:Broken pipe|Operation not permitted)",
           "libqb's server side: a local client went away during the IPC handshake, or the daemon refused it "
           "because it is shutting down (the CIB manager answers -EPERM then), as happens while either end is "
           "stopped or restarted (IPC never leaves the node)"),
    _noise(r"error: Result of \w+ operation for \S+ on \S+: Error \(Resource agent interrupted by Killed signal\)",
           "an operation was running when the node's processes were SIGKILLed", peer="resource-agent"),
    # The CIB manager writes cib.xml and cib.xml.sig as two temporary files renamed one after the other;
    # a node powered off (or a CIB manager killed) between the renames leaves a new cib.xml with the old
    # digest. Its next start says so and sets both aside, then reads the newest good backup and takes the
    # DC's CIB on joining (full suite, partition-node1 on node1 as it rejoined, 2026-11-30; reproduced by
    # a wrong cib.xml.sig and a power cycle: these three lines, and nothing else at error level).
    _noise(r"\(pcmk__verify_digest\)\s+error: Digest comparison failed: expected \S+",
           "the CIB manager, starting, finds cib.xml and its digest from two different writes: the node lost "
           "power, or its CIB manager was killed, between the two renames of a CIB write", peer="pacemaker-based"),
    _noise(r"\(cib_rename\)\s+error: Archiving unusable file \S+/cib\.xml(?:\.sig)? as \S+",
           "the starting CIB manager sets the torn cib.xml and its digest aside (then reads the newest good "
           "backup, and takes the DC's CIB on joining)", peer="pacemaker-based"),
)
"""IPC, connection and cluster-layer-gone errors (embedded testbed: the stack faults, rolling_restart; false alarms
of earlier runs; a slow start on the VMs), and the torn CIB write a power cut leaves, repaired at the next start."""


def match_noise(line: str) -> tuple[NoiseRule, str | None] | None:
    """The noise rule a line matches and the peer daemon it names (None if the rule names none)."""
    for rule in NOISE:
        if m := rule.regex.search(line):
            return rule, rule.peer_of(m)
    return None


def explain(node: str, line: str, disruptions: Sequence[Disruption], *, near: float) -> str | None:
    """Why a line of ``node``'s log is expected noise (the disruption and the rule), or None: then it is news."""
    mine = [d for d in disruptions if d.node == node]
    if not mine:
        return None
    found = match_noise(line)
    span = line_span(line, near)
    if found is None or span is None:
        return None
    rule, peer = found
    daemon = daemon_of(line)
    for d in mine:
        if d.during(*span) and (d.covers(daemon) or d.covers(peer)):
            return f"{d.why}: {rule.reason}"
    return None


# -- from a timeline ------------------------------------------------------------------------------

def disruptions_from(timeline: Timeline, topology: Topology) -> list[Disruption]:
    """Every disruption a recorded case caused: injected faults (by :data:`DISRUPTS`), fencing, and recovery.

    A fault's window runs from its injection to its heal. A fenced node's runs from its loss (when
    the loss led to the fencing; the poller sees a loss up to the detection SLA after it happened) or
    from the fence request, to its rejoin. A node disrupted before the end of a recovery
    (`test.mark` "recovery start" … "recovery end") may restart during it, so its window reaches the
    end of the recovery. Every window ends :data:`END_MARGIN_S` late; one without an end stays open.

    A node lost with no fault and no fence on it is *not* a disruption: an unexplained death is what
    the audit exists to surface, and its noise stays a finding.
    """
    events = timeline.sorted_events()
    out = [*_from_faults(events, topology), *_from_fencing(events, topology)]
    recoveries = _recoveries(events)
    return [_through_recovery(d, recoveries) for d in out]


def _from_faults(events: list[Event], topology: Topology) -> Iterable[Disruption]:
    for i, ev in enumerate(events):
        if ev.kind != FAULT_INJECTED:
            continue
        fault = str(ev.data.get("fault"))
        effect = DISRUPTS.get(fault)
        if effect is None:
            raise KeyError(f"no disruption known for fault {fault!r}; known: {', '.join(sorted(DISRUPTS))}")
        if effect.scope == "none":
            continue
        nodes = topology.node_names if effect.scope == "cluster" \
            else list(ev.data.get("nodes") or ([ev.node] if ev.node else []))
        healed = next((e for e in events[i + 1:] if e.kind == FAULT_HEALED and e.data.get("fault") == fault
                       and e.data.get("target") == ev.data.get("target")), None)
        end = healed.wall + END_MARGIN_S if healed else None
        target = ev.data.get("target") or ",".join(nodes)
        for node in nodes:
            yield Disruption(node, effect.daemons, ev.wall - START_MARGIN_S, end,
                             f"{fault} injected on {target} ({effect.reason})")


def _from_fencing(events: list[Event], topology: Topology) -> Iterable[Disruption]:
    lookback = topology.sla.max_detection_s
    for i, ev in enumerate(events):
        if ev.kind != FENCED or not ev.node or ev.data.get("outcome", "OK") != "OK":
            continue
        start = ev.wall - START_MARGIN_S
        for prev in reversed(events[:i]):  # the loss that got it fenced: no rejoin in between
            if prev.node == ev.node and prev.kind == CLUSTER_NODE_JOINED:
                break
            if prev.node == ev.node and prev.kind == CLUSTER_NODE_LOST:
                start = min(start, prev.wall - lookback)
                break
        joined = next((e for e in events[i + 1:] if e.kind == CLUSTER_NODE_JOINED and e.node == ev.node), None)
        action = ev.data.get("action", "off")
        yield Disruption(ev.node, WHOLE_NODE, start, joined.wall + END_MARGIN_S if joined else None,
                         f"{ev.node} fenced ({action}): every process killed, then powered on again")


def _recoveries(events: list[Event]) -> list[tuple[float, float | None]]:
    out: list[tuple[float, float | None]] = []
    start: float | None = None
    for ev in events:
        if ev.kind != TEST_MARK:
            continue
        if ev.data.get("label") == RECOVERY_START:
            start = ev.wall
        elif ev.data.get("label") == RECOVERY_END and start is not None:
            out.append((start, ev.wall))
            start = None
    if start is not None:
        out.append((start, None))
    return out


def _through_recovery(d: Disruption, recoveries: list[tuple[float, float | None]]) -> Disruption:
    """A node disrupted before a recovery ended may restart during it; an unfinished recovery leaves it open."""
    end = d.end_wall
    for _, r_end in recoveries:
        if end is None:
            break
        if r_end is None:
            end = None
        elif d.start_wall < r_end:
            end = max(end, r_end + END_MARGIN_S)
    return d if end == d.end_wall else Disruption(d.node, d.daemons, d.start_wall, end,
                                                  f"{d.why}, held through the recovery")
