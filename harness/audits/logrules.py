"""The log audit's rules: which lines are bad news, which are harmless, which a fault explains, each with why.

Kept apart from the audit itself (`logs.py`) because it grows with every fault of the catalogue: a
rule is a regex and the reason it is accepted, measured on the embedded testbed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Rule:
    """A line that looks bad but is explained, and why; a rule without a reason is not accepted in review."""

    regex: re.Pattern[str]
    reason: str


IgnoreRule = Rule  # the name older callers know


def _rule(regex: str, reason: str) -> Rule:
    return Rule(re.compile(regex), reason)


BAD_NEWS: tuple[re.Pattern[str], ...] = (
    # pacemaker daemons: `Nov 25 15:34:05.123 node1 pacemaker-controld  [45] (do_lrm_invoke) \terror: ...`
    re.compile(r"^\w{3} [ \d]\d [\d:.]+ \S+ \S+\s*\[\d+\] \(\S+\)\s+(?:error|crit|alert|emerg):"),
    # resource agents (ocf_log) in pacemaker.log: `Nov 25 15:34:05  Filesystem(app-fs)[259]:    ERROR: ...`
    re.compile(r"^\w{3} [ \d]\d [\d:.]+\s+\S+\(\S+\)\[\d+\]:\s+(?:ERROR|CRIT):"),
    # corosync: `Nov 25 15:33:57.864 [14] node1 corosync error   [KNET  ] ...`
    re.compile(r"^\w{3} [ \d]\d [\d:.]+ \[\d+\] \S+ corosync (?:error|crit|alert|emerg)\s+\["),
    # app agent and app: `2026-11-25T15:34:05 fallover-app[404] node1 monitor: ERROR ...`, `… kvapp[593] node1 ERROR …`
    re.compile(r"^\S+ (?:fallover-app|kvapp)\[\d+\] \S+ (?:[\w-]+: )?ERROR\b"),
    # the app (or a user command) died with a Python traceback; its stderr goes to the same file
    re.compile(r"^Traceback \(most recent call last\):"),
)

WARNING_SIGNS: tuple[Rule, ...] = (
    # Logged below error level, yet each is a sign of trouble that Pacemaker's CTS fails a test on (patterns.py
    # BadNews); the reason is why it matters. They are findings like BAD_NEWS, unless a case explains them.
    _rule(r"Corosync main process was not scheduled \(@[^)]*\) for [\d.]+ ms",
          "corosync was starved past its scheduling threshold (a share of the token timeout): a little longer and "
          "the token expires, and a healthy node is taken for dead and fenced"),
    _rule(r"(?i)election storm",
          "nodes keep winning and losing the DC election: the cluster cannot settle on a coordinator"),
    _rule(r"We appear to be in an election loop",
          "the controller's own alarm: the DC election keeps restarting"),
    _rule(r"is taking more than 2x its timeout",
          "an operation overran its timeout twice over (older Pacemaker's wording; CTS still flags it): the "
          "executor or the node is stalled"),
    _rule(r"Receiving messages from a node we think is dead",
          "membership and messaging disagree: a node the controller counted lost is still talking (a split "
          "brain in the making)"),
    # Only for the same version (admin_epoch.epoch.num_updates): with a peer one update ahead, the DC's
    # ping met an update still on its way (full suite, based_kill-node1 at load 28, 2026-11-30:
    # "Local CIB 1.15.291.… differs from node3: 1.15.292.…" 5 s before the kill), and the DC resyncs.
    _rule(r"Local CIB (\d+\.\d+\.\d+)\.\S+ differs from \S+: \1\.",
          "this node's CIB digest differs from the one a peer computed for the same version: the copies of the "
          "configuration have diverged"),
)
"""Warning-level signs of trouble, each with its reason (CTS's BadNews that Pacemaker logs below error)."""

IGNORE: tuple[Rule, ...] = (
    # The harmless lines of notes/pacemaker-in-namespaces.md §7. Most are warnings, below BAD_NEWS today (none
    # matched an error line in ~40 measured fault runs); listed so a stricter BAD_NEWS does not fail on them.
    _rule(r"Could not increase RLIMIT_MEMLOCK",
          "corosync cannot lock memory without CAP_SYS_RESOURCE in the node namespaces; it runs unlocked"),
    _rule(r"Watchdog not enabled by configuration",
          "the testbed has no watchdog device; fencing is done by the fence broker instead"),
    _rule(r"resource (?:load_15min|memory_used) missing a recovery key",
          "corosync's watchdog resources are unconfigured without a watchdog; informational"),
    _rule(r"host: \d+ has no active links",
          "knet prints it while peers start and after one dies (~200 lines a run); membership events say the rest"),
    _rule(r"Denied connection, is not ready",
          "pacemakerd connected a moment before corosync's services were ready at (re)start; it retries and works"),
    _rule(r"No on-disk digest present at \S+cib\.xml\.sig",
          "the seeded CIB has no .sig; pacemaker writes one on its first CIB write"),
    _rule(r"Input I_DC_TIMEOUT received in state S_PENDING",
          "dc-deadtime expiring at start-up, which is how the first election begins"),
    _rule(r"Fencing and resource management disabled due to lack of quorum",
          "crm_verify/crm on an offline CIB_file has no quorum by definition"),
    # The observer's own footprint, not the cluster's: measured under `-n 2` on a cluster that stayed settled,
    # between two of the poller's `crmadmin --status` pings that both got their S_IDLE answer.
    _rule(r"\(qb_ipcs_dispatch_connection_request\)\s+error: error receiving from setup sock "
          r"\(/dev/shm/qb-[^)]*\): Transport endpoint is not connected \(107\)",
          "an IPC client left during its connection handshake; fallover itself runs crm_mon, crmadmin and "
          "attrd_updater several times a second, and a client that exits or hits its timeout mid-handshake "
          "leaves this on the daemon it called, which goes on serving (only this exact handshake error)"),
)
# Deliberately NOT ignored, though §7 discusses them: "no STONITH resources have been defined" (the fence
# device is seeded, so this now means it is missing), "might be active on 2 nodes" (split brain), and
# "Corosync main process was not scheduled" (a real stall that causes false node losses at token 1000: a
# WARNING_SIGN, expected only where a case starves the node, cpu_overload, or stops corosync, corosync_pause_short).

_ETHMONITOR_DOWN = _rule(r"ethmonitor\(linkmon-\w+\)\[\d+\]:\s+ERROR: Monitoring of linkmon-\w+ failed",
                         "the link monitor reports the pulled service cable: that is its job")
_CONTROLLER_RESTART = (
    _rule(r"pacemaker-controld\s+\[\d+\] \(do_log\)\s+error: Input I_(?:ERROR|TERMINATE) received in state S_\w+ from "
          r"\w+",
          "the controller lost a daemon it cannot work without and exits through S_RECOVERY (CTS ComponentFail's "
          "patterns for pacemaker-based, -execd and -schedulerd)"),
    _rule(r"pacemaker-controld\s+\[\d+\] \(lrm_state_verify_stopped\)\s+error: \d+ resources? (?:were|was) active at "
          r"shutdown", "the exiting controller notes the resources it leaves running; its respawned successor probes them"),
    _rule(r"pacemaker-controld\s+\[\d+\] \(crmd_fast_exit\)\s+error: Could not recover from internal error",
          "the controller's last line before pacemakerd respawns it (CTS: 'Could not recover from internal error')"),
    _rule(r"pacemakerd\s+\[\d+\] \(pcmk_child_exit\)\s+error: pacemaker-controld\[\d+\] exited with status 1",
          "pacemakerd reports the controller's exit, then respawns it (CTS: 'pacemaker-controld[…] exited with status 1')"),
    _rule(r"attrd_updater\s+\[\d+\] \(connect_and_send_attrd_request\)\s+error: Could not connect to attrd",
          "a resource agent's attribute update meets an attrd that is exiting with the CIB manager it lost, or "
          "respawning (CTS: 'pacemaker-attrd[…] exited with status 102')"),
)
_ADOPTED_GONE = _rule(r"pacemakerd\s+\[\d+\] \(check_next_subdaemon\)\s+error: pacemaker-\w+\[\d+\] terminated$",
                      "a pacemakerd that adopted running subdaemons (started again after pacemakerd_kill) watches them "
                      "by PID, and reports each one the lost cluster layer ends (CTS's Pat:ChildKilled)")
_LOST_FENCER = _rule(r"pacemaker-controld\s+\[\d+\] \(log_executor_event\)\s+error: Result of (?:probe|monitor) "
                     r"operation for \S+ on \S+: Error \(Lost connection to fencer\)",
                     "the fence device's probe or monitor ran while the fencer restarted (CTS ignores 'Result of … "
                     "operation for Fencing … Error (Lost connection to fencer)' for pacemaker-based and -fenced kills)")
_UNREACHABLE = _rule(r"ping\(reach-\S+\)\[\d+\]:\s+ERROR: Unexpected result for 'ping [^']*' \d+: ping: "
                     r"connect: Network is unreachable",
                     "an adapter set administratively down (`ip link set … down`: the SSH provider's cable pull) "
                     "takes its routes along, so the client reachability ping cannot even send")
_FENCE_AGENT_FAILED = _rule(r"pacemaker-fenced\s*\[\d+\] \(log_async_result\)\s+error: Operation '(?:off|reboot)' "
                            r"\[\d+\] targeting \S+ using \S+ returned \d+",
                            "the fence agent reports that the broken device failed: that is the fault")
_FENCE_OP_FAILED = _rule(r"pacemaker-fenced\s*\[\d+\] \(finalize_op\)\s+error: Operation '(?:off|reboot)' targeting "
                         r"\S+ by \S+ for \S+: (?:Error occurred|Timer expired|No route to host)",
                         "the fencer gives the fencing of the node up as failed (no device could fence it): the fault")
_APP_DYING = _rule(r"fallover-app\[\d+\] \S+ monitor: ERROR pid \d+ alive but unhealthy: "
                  r"\[Errno (?:111\] Connection refused|104\] Connection reset by peer)",
                  "a monitor that ran as the SIGKILL landed: the process was still exiting (its pid there), its "
                  "port already closed, or its answer cut off (seen on TCG guests, where a process's exit takes a "
                  "while)")
_PMTUD_ABORTED = _rule(r"corosync error\s+\[KNET\s*\] pmtud: Aborting PMTUD process: Too many attempts",
                       "knet's path-MTU discovery (every 30 s per link) was probing a peer the fault had cut off, "
                       "gave up, and starts again on its next round (node3 during partition-node2 on the VMs, "
                       "2026-12-01, 1 s into the cut)")
CONSEQUENCES: dict[str, tuple[Rule, ...]] = {
    # Pacemaker 2.1.5 logs a node loss, its fencing ("will be fenced: peer is no longer part of the
    # cluster", "Stonith/shutdown ... was not expected"), a failed monitor and a refused start at
    # warning or notice level: below BAD_NEWS. The IPC noise of killed, stopped and restarted
    # daemons is not listed here: harness.audits.noise derives it from what each fault disrupted.
    "node_power_off": (), "node_hang": (), "partition": (), "heartbeat_loss": (), "pacemaker_kill": (),
    "corosync_kill": (), "node_stop": (), "packet_loss": (),
    "cpu_overload": (_rule(r"Corosync main process was not scheduled \(@[^)]*\) for [\d.]+ ms",
                           "the CPU hogs starve corosync (on the embedded testbed every node shares the host's "
                           "cores): the scheduling stall is what the fault makes, the cluster must ride it out"),),
    "app_kill": (_APP_DYING,), "app_start_fail": (),
    # knet keeps the other link (300 ms delay, 30-50 % corrupt packets on one adapter: nothing at error level)
    "packet_delay": (), "packet_corrupt": (),
    # planned operations are clean by definition: any error line during one, beyond noise, is news
    "group_move": (), "node_standby": (), "node_maintenance": (), "rolling_restart": (),
    # the service cable: the link monitor says so (a standby cable: nothing at error level)
    "adapter_down": (_ETHMONITOR_DOWN, _UNREACHABLE),
    "network_down_local": (_ETHMONITOR_DOWN, _UNREACHABLE),
    # a dead switch leaves every node's link up: nothing notices it (see the SPOF audit); on real
    # hosts the network fails as every node's adapter set down: the link monitors say so, and no
    # route is left, as for one adapter
    "network_down_global": (_ETHMONITOR_DOWN, _UNREACHABLE),
    "disk_pull": (
        _rule(r"Filesystem\(\S+-fs\)\[\d+\]:\s+ERROR: Failed to write status file",
              "the Filesystem monitor (OCF_CHECK_LEVEL=20) cannot write to the pulled disk: that is how it notices"),
        _rule(r"Filesystem\(\S+-fs\)\[\d+\]:\s+ERROR: dd said: .*(?:Input/output error|Read-only file system)",
              "the same monitor quoting dd: EIO, or EROFS once ext4 remounted read-only on the errors"),
        _rule(r"Filesystem\(\S+-fs\)\[\d+\]:\s+ERROR: Couldn't mount device",
              "takeover nodes cannot mount a disk that returns I/O errors"),
        _rule(r"kvapp\[\d+\] \S+ ERROR .*: (?:EIO|EROFS): ",
              "the app's writes under load fail on the pulled disk (errors=remount-ro gives EROFS)"),
    ),
    "disk_read_errors": (_rule(r"Filesystem\(\S+-fs\)\[\d+\]:\s+ERROR: Cannot read the status file",
                               "the Filesystem monitor (OCF_CHECK_LEVEL=20) cannot read back its status file: that "
                               "is how it notices read errors"),),  # and disk_pull's, below
    "disk_write_errors": (),
    "disk_hang": (_rule(r"pacemaker-controld\s*\[\d+\] \(log_executor_event\)\s+error: Result of monitor operation "
                        r"for \S+-fs on \S+: Timed Out",
                        "the Filesystem monitor times out on the hung disk: that is how the cluster notices a hang"),
                  _rule(r"Filesystem\(\S+-fs\)\[\d+\]:\s+ERROR: Couldn't unmount \S+; trying cleanup with (?:TERM|KILL)",
                        "the stop after the timed-out monitor finds the filesystem busy (the application's I/O was "
                        "held by the hang), so the agent signals what holds it: its normal escalation")),
    "fence_fail": (_FENCE_AGENT_FAILED, _FENCE_OP_FAILED),
    "fence_hang": (_FENCE_OP_FAILED, _rule(
        r"pacemaker-fenced\s*\[\d+\] \(log_async_result\)\s+error: Operation '(?:off|reboot)' \[\d+\] targeting \S+ "
        r"using \S+ could not be executed: Timed Out",
        "the fencer kills the agent of the hung device at its timeout (stonith-timeout): that is the fault")),
    "disk_full": (_rule(r"kvapp\[\d+\] \S+ ERROR .*: ENOSPC: ", "the app's writes under load fail on the full disk"),),
    "app_hang": (_rule(r"fallover-app\[\d+\] \S+ monitor: ERROR pid \d+ alive but unhealthy",
                       "the app's monitor reports the stopped (SIGSTOP) process: that is its job"),),
    # issue 14 (suites/cluster): partition shapes, single-daemon kills and whole-cluster operations; their IPC
    # noise comes from harness.audits.noise (what each one disrupts), anything else on a log is news
    "partition_majority": (), "partition_oneway": (), "partition_bridge": (),
    # a single subdaemon killed: what CTS ComponentFail expects of each (python/pacemaker/_cts/patterns.py)
    "based_kill": (*_CONTROLLER_RESTART, _LOST_FENCER), "schedulerd_kill": _CONTROLLER_RESTART, "controld_kill": _CONTROLLER_RESTART,
    "attrd_kill": _CONTROLLER_RESTART,
    "execd_kill": (*_CONTROLLER_RESTART,
                   _rule(r"pacemaker-controld\s+\[\d+\] \(lrm_connection_destroy\)\s+crit: Connection to executor failed",
                         "the controller loses its local executor, killed (CTS: 'Lost connection to local executor')")),
    "fenced_kill": (_LOST_FENCER, _rule(r"pacemaker-controld\s+\[\d+\] \(tengine_stonith_connection_destroy\)\s+crit: Fencing "
                          r"daemon connection failed",
                          "the controller loses the fencer, killed, and reconnects to its respawned successor (CTS: "
                          "'Lost fencer connection')"),),
    "pacemakerd_kill": (), "corosync_kill_loop": (_ADOPTED_GONE,),
    # corosync checks its own scheduling every token/3 and warns above 0.8 x token: a stop of token/2 that
    # begins just after a check measures up to token/2 + token/3 (seen: 811.98 ms against the 800 ms threshold)
    "corosync_pause_short": (_rule(r"Corosync main process was not scheduled \(@[^)]*\) for [\d.]+ ms",
                                   "the fault stopped corosync for half the token; corosync's own check (every "
                                   "token/3, threshold 0.8 x token) can measure the stop plus up to a third of the "
                                   "token. Had the stall outlasted the token, the node loss would fail the case"),),
    "corosync_pause_long": (_ADOPTED_GONE,),
    "cluster_simul_restart": (), "cluster_one_by_one": (),
    "cluster_reattach": (Rule(_CONTROLLER_RESTART[1].regex, "the stack stops under maintenance mode, leaving the "
                              "resources running: that is what a reattach is (CTS's Reattach ignores the same line)"),),
    "app_kill_threshold": (_APP_DYING,), "app_failure_expiry": (_APP_DYING,),
}
for _f in ("disk_read_errors", "disk_write_errors", "disk_hang"):
    CONSEQUENCES[_f] = CONSEQUENCES["disk_pull"] + CONSEQUENCES[_f]
for _f in ("node_power_off", "node_hang", "partition", "heartbeat_loss", "packet_loss", "packet_corrupt",
           "partition_majority", "partition_oneway", "partition_bridge", "adapter_down", "network_down_local",
           "network_down_global"):  # every fault that cuts a live peer off (or garbles its probes)
    CONSEQUENCES[_f] = CONSEQUENCES[_f] + (_PMTUD_ABORTED,)
"""Per fault (`fallover faults`), the error lines that are its expected consequence, each with why. Measured on
the embedded testbed: each fault injected for 8 s (node faults on the active node, the DC and a spare; disk and
app faults also under a write load), then `fallover up` and `crm_resource --cleanup`."""


def consequences_for(*faults: str) -> tuple[tuple[str, Rule], ...]:
    """(fault, rule) of every consequence rule of some faults; an unknown fault is a KeyError, not a silent pass."""
    unknown = [f for f in faults if f not in CONSEQUENCES]
    if unknown:
        raise KeyError(f"no expected log patterns for fault(s) {', '.join(unknown)}; "
                       f"known: {', '.join(sorted(CONSEQUENCES))}")
    return tuple((f, r) for f in faults for r in CONSEQUENCES[f])


def expected_for(*faults: str) -> tuple[re.Pattern[str], ...]:
    """The consequence patterns of some faults, for :meth:`LogAudit.findings` (no noise: see :meth:`result`).

    >>> any(p.search("… ethmonitor(linkmon-service)[9]:    ERROR: Monitoring of linkmon-service failed.")
    ...     for p in expected_for("adapter_down", "app_kill"))
    True
    """
    return tuple(r.regex for _, r in consequences_for(*faults))


def is_bad(line: str) -> bool:
    """An error line (BAD_NEWS), or a warning-level sign of trouble (WARNING_SIGNS)."""
    return any(p.search(line) for p in BAD_NEWS) or warning_sign(line) is not None


def warning_sign(line: str) -> Rule | None:
    """The WARNING_SIGNS rule a line matches: what trouble it is a sign of."""
    return next((r for r in WARNING_SIGNS if r.regex.search(line)), None)


def ignored_by(line: str) -> Rule | None:
    return next((r for r in IGNORE if r.regex.search(line)), None)
