"""Audits without a cluster: declared SPOFs of good and broken topologies; the log audit on synthetic node logs."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from host_logs import HostLogs

from harness.audits import logs
from harness.audits.logs import CONSEQUENCES, IGNORE, LogAudit, LogLine, expected_for
from harness.audits.spof import DECLARED_CHECKS, Finding, audit_declared, parse_cfgtool
from harness.faults import FAULTS
from harness.topology import DEFAULT_TESTBED, Topology, load_topology


def topology(mutate: Callable[[dict[str, Any]], None] | None = None) -> Topology:
    raw = yaml.safe_load(DEFAULT_TESTBED.read_text())
    if mutate is not None:
        mutate(raw)
    return Topology.model_validate(raw)


def by_id(findings: list[Finding]) -> dict[str, Finding]:
    return {f.id: f for f in findings}


# -- declared SPOF audit ------------------------------------------------------------------------

def test_default_topology_has_no_error_only_the_one_disk_and_one_network_warnings() -> None:
    found = by_id(audit_declared(load_topology(DEFAULT_TESTBED)))
    assert list(found) == ["group-app-has-two-nodes", "group-app-has-two-service-networks",
                           "node-node1-has-two-heartbeat-paths", "node-node2-has-two-heartbeat-paths",
                           "node-node3-has-two-heartbeat-paths", "fencing-declared", "quorum-policy",
                           "disk-shared-mirrored"]
    assert [f.id for f in found.values() if f.failed] == []
    assert [(f.id, f.severity) for f in found.values() if not f.ok] == [
        ("group-app-has-two-service-networks", "warning"), ("disk-shared-mirrored", "warning")]
    assert found["disk-shared-mirrored"].detail == \
        "shared disk shared has no mirror: a pulled disk stops every group on it (app)"


def test_one_node_group_is_an_error_naming_the_node() -> None:
    f = by_id(audit_declared(topology(lambda r: r["groups"][0].update(nodes=["node2"]))))["group-app-has-two-nodes"]
    assert f.failed
    assert f.detail == "group app can only run on node2: one node is a single point of failure"


def test_a_group_listing_one_node_twice_still_has_one_node() -> None:
    f = by_id(audit_declared(topology(lambda r: r["groups"][0].update(nodes=["node1", "node1"]))))
    assert f["group-app-has-two-nodes"].failed


@pytest.mark.parametrize("how", ["one network", "standby without heartbeat"])
def test_one_heartbeat_path_is_an_error_on_every_node(how: str) -> None:
    def mutate(raw: dict[str, Any]) -> None:
        if how == "one network":
            raw["networks"] = raw["networks"][:1]
        else:
            raw["networks"][1]["heartbeat"] = False

    found = audit_declared(topology(mutate))
    bad = [f for f in found if f.check == "heartbeat-paths"]
    assert [f.subject for f in bad if f.failed] == ["node1", "node2", "node3"]
    assert bad[0].detail.startswith("node node1 has one heartbeat path (service): one cable or network is a single")


def test_stonith_false_is_an_error() -> None:
    f = by_id(audit_declared(topology(lambda r: r["cluster"].update(stonith=False))))["fencing-declared"]
    assert f.failed and "fencing is off (cluster.stonith: false)" in f.detail


def test_quorum_ignore_with_three_nodes_is_an_error() -> None:
    f = by_id(audit_declared(topology(lambda r: r["cluster"].update(no_quorum_policy="ignore"))))["quorum-policy"]
    assert f.failed and f.detail.startswith("no-quorum-policy is ignore with 3 nodes")


def two_nodes(policy: str, stonith: bool = True) -> Callable[[dict[str, Any]], None]:
    def mutate(raw: dict[str, Any]) -> None:
        raw["nodes"] = raw["nodes"][:2]
        raw["groups"][0]["nodes"] = ["node1", "node2"]
        raw["cluster"].update(no_quorum_policy=policy, stonith=stonith)
    return mutate


@pytest.mark.parametrize(("policy", "stonith", "severity"), [
    ("ignore", True, "warning"),   # the classic two-node setup: fencing decides
    ("ignore", False, "error"),    # nothing decides: split brain
    ("stop", True, "error"),       # no two_node in corosync.conf: the survivor has no quorum
])
def test_two_node_quorum(policy: str, stonith: bool, severity: str) -> None:
    f = by_id(audit_declared(topology(two_nodes(policy, stonith))))["quorum-policy"]
    assert (f.ok, f.severity) == (False, severity)


def test_two_nodes_with_corosync_two_node_keep_quorum_after_a_node_loss() -> None:
    def mutate(raw: dict[str, Any]) -> None:
        two_nodes("stop")(raw)
        raw["cluster"]["corosync"] = {"quorum": {"two_node": 1}}
    f = by_id(audit_declared(topology(mutate)))["quorum-policy"]
    assert f.ok, f


def test_a_disk_no_group_uses_is_not_reported() -> None:
    found = audit_declared(topology(lambda r: r["disks"].append({"name": "spare"})))
    assert [f.subject for f in found if f.check == "disk-mirror"] == ["shared"]


def test_every_declared_finding_has_a_known_check_and_a_one_line_detail() -> None:
    for f in audit_declared(topology(lambda r: r["cluster"].update(stonith=False, no_quorum_policy="ignore"))):
        assert f.check in DECLARED_CHECKS
        assert f.detail and "\n" not in f.detail


COROSYNC_ONE_LINK_DOWN = """\
Local node ID 2, transport knet
LINK ID 0 udp
\taddr\t= 10.77.1.12
\tstatus:
\t\tnodeid:          1:\tconnected
\t\tnodeid:          2:\tlocalhost
\t\tnodeid:          3:\tconnected
LINK ID 1 udp
\taddr\t= 10.77.2.12
\tstatus:
\t\tnodeid:          1:\tdisconnected
\t\tnodeid:          2:\tlocalhost
\t\tnodeid:          3:\tconnected
"""


def test_parse_cfgtool_counts_connected_links_per_peer() -> None:
    # recorded on node2 of the embedded testbed with node1's standby cable pulled
    assert parse_cfgtool(COROSYNC_ONE_LINK_DOWN) == {1: {0}, 3: {0, 1}}


# -- log audit --------------------------------------------------------------------------------------

PCMK_ERROR = ("Nov 25 15:40:01.123 node1 pacemaker-controld  [45] (do_lrm_invoke) \terror: "
              "Cannot execute action: resource not found")
PCMK_CRIT = ("Nov 25 15:40:01.123 node1 pacemaker-based     [40] (cib_cs_destroy) \tcrit: "
             "Lost connection to cluster layer, shutting down")
PCMK_WARNING = ("Nov 25 15:40:01.124 node3 pacemaker-schedulerd[44] (pe_fence_node) \twarning: "
                "Cluster node node1 will be fenced: peer is no longer part of the cluster")
PCMK_INFO_SAYING_ERROR = ("Nov 25 15:40:01.125 node1 pacemaker-execd     [44] (log_op_output) \tinfo: "
                          "app-fs_monitor_5000[123] error output [ error: nothing ]")
AGENT_ERROR = "Nov 25 15:40:02  Filesystem(app-fs)[259]:    ERROR: Failed to write status file /mnt/x: EIO"
AGENT_INFO = "Nov 25 15:40:02  Filesystem(app-fs)[259]:    INFO: Running start for /dev/loop0 on /mnt/app"
COROSYNC_ERROR = "Nov 25 15:40:03.001 [14] node1 corosync error   [KNET  ] rx: could not decrypt packet"
COROSYNC_WARNING = "Nov 25 15:40:03.001 [14] node1 corosync warning [MAIN  ] Could not increase RLIMIT_MEMLOCK"
APP_ERROR = "2026-11-25T15:40:04 fallover-app[404] node1 monitor: ERROR pid 593 alive but unhealthy: timed out"
KVAPP_ERROR = "2026-11-25T15:40:04 kvapp[593] node1 ERROR put: EIO: [Errno 5] Input/output error"
APP_INFO = "2026-11-25T15:40:04 fallover-app[404] node1 monitor: not running"


@pytest.mark.parametrize("line", [PCMK_ERROR, PCMK_CRIT, AGENT_ERROR, COROSYNC_ERROR, APP_ERROR, KVAPP_ERROR,
                                  "Traceback (most recent call last):"])
def test_bad_news_matches_error_lines_of_every_format(line: str) -> None:
    assert logs.is_bad(line)


@pytest.mark.parametrize("line", [PCMK_WARNING, PCMK_INFO_SAYING_ERROR, AGENT_INFO, COROSYNC_WARNING, APP_INFO])
def test_bad_news_ignores_lower_levels_even_when_the_message_says_error(line: str) -> None:
    assert not logs.is_bad(line)


# one real line per rule, from notes/pacemaker-in-namespaces.md §7 and the embedded testbed's logs
IGNORE_SAMPLES = [
    "corosync warning [MAIN  ] Could not increase RLIMIT_MEMLOCK, not locking memory: Operation not permitted (1)",
    "corosync warning [WD    ] Watchdog not enabled by configuration",
    "corosync warning [WD    ] resource load_15min missing a recovery key.",
    "corosync info    [KNET  ] host: host: 3 has no active links",
    "corosync error   [QB    ] Denied connection, is not ready (14-57-36)",
    "(cib_file_verify_digest) \twarning: No on-disk digest present at /var/lib/pacemaker/cib/cib.xml.sig",
    "(do_log) \twarning: Input I_DC_TIMEOUT received in state S_PENDING from crm_timer_popped",
    "warning: Fencing and resource management disabled due to lack of quorum",
    "Nov 29 15:11:49.623 node1 pacemaker-controld  [41] (qb_ipcs_dispatch_connection_request) \terror: error "
    "receiving from setup sock (/dev/shm/qb-41-18397-13-X8Y7na/qb): Transport endpoint is not connected (107)",
]


def test_every_ignore_rule_has_a_reason_and_matches_its_sample() -> None:
    assert len(IGNORE_SAMPLES) == len(IGNORE)
    for rule, sample in zip(IGNORE, IGNORE_SAMPLES, strict=True):
        assert len(rule.reason) > 20, f"{rule.regex.pattern}: say why it is harmless"
        assert rule.regex.search(sample), f"{rule.regex.pattern} does not match {sample!r}"


def test_consequences_name_real_faults_and_say_why() -> None:
    # every fault of the catalogue was measured; a new fault needs its measurement too
    assert set(CONSEQUENCES) == set(FAULTS)
    for fault, rules in CONSEQUENCES.items():
        for rule in rules:
            assert len(rule.reason) > 20, f"{fault}: {rule.regex.pattern}: say why it is expected"
    assert [p.pattern for p in expected_for("disk_full")] == [r"kvapp\[\d+\] \S+ ERROR .*: ENOSPC: "]
    with pytest.raises(KeyError, match="no_such_fault"):
        expected_for("no_such_fault")


def test_a_cable_pulled_as_admin_down_leaves_the_ping_without_a_route_and_that_is_expected() -> None:
    """Seen on the SSH lab (`ip link set service down` in the node): the ping agent cannot even send."""
    line = ("Nov 29 18:16:24  ping(reach-service)[73670]:    ERROR: Unexpected result for "
            "'ping -n -q -W 1 -c 3 -i 0.2 10.78.1.50' 2: ping: connect: Network is unreachable")
    for fault in ("adapter_down", "network_down_local", "network_down_global"):
        assert any(p.search(line) for p in expected_for(fault)), fault
    assert not any(p.search(line) for p in expected_for("node_power_off", "partition"))
    linkmon = "Nov 29 19:16:52  ethmonitor(linkmon-service)[39391]:    ERROR: Monitoring of linkmon-service failed."
    assert any(p.search(linkmon) for p in expected_for("network_down_global"))  # every adapter down on real hosts


def test_knet_giving_up_a_path_mtu_probe_is_expected_where_a_peer_is_cut_off_only() -> None:
    """Seen on node3 of the VMs 1 s into partition-node2 (2026-12-01); an error line, so a finding without the rule."""
    line = ("Dec 01 07:31:56.240 [435] node3 corosync error   [KNET  ] pmtud: Aborting PMTUD process: "
            "Too many attempts. MTU might have changed")
    assert logs.is_bad(line)
    for fault in ("partition", "heartbeat_loss", "packet_loss", "node_power_off", "partition_oneway"):
        assert any(p.search(line) for p in expected_for(fault)), fault
    assert not any(p.search(line) for p in expected_for("app_kill", "disk_pull", "group_move", "cpu_overload"))


def test_a_monitor_racing_the_apps_kill_is_expected_for_the_kill_faults_only() -> None:
    """Seen on a TCG guest: the monitor ran in the second of the SIGKILL; the pid was there, the port closed."""
    line = ("2026-11-30T14:30:47 fallover-app[4443] node1 monitor: ERROR pid 3869 alive but unhealthy: "
            "[Errno 111] Connection refused")
    reset = line.replace("[Errno 111] Connection refused", "[Errno 104] Connection reset by peer")  # mid-answer
    for fault in ("app_kill", "app_kill_threshold", "app_failure_expiry"):
        assert any(p.search(line) for p in expected_for(fault)), fault
        assert any(p.search(reset) for p in expected_for(fault)), fault
    assert not any(p.search(line) for p in expected_for("node_power_off", "app_start_fail", "adapter_down"))
    timed_out = line.replace("[Errno 111] Connection refused", "timed out")  # a hung app is news after a kill
    assert not any(p.search(timed_out) for p in expected_for("app_kill"))


@pytest.fixture
def fake_testbed(tmp_path: Path) -> HostLogs:
    tb = HostLogs(load_topology(DEFAULT_TESTBED), tmp_path)
    for node in tb.topology.node_names:
        write(tb, node, "pacemaker/pacemaker.log", PCMK_ERROR + "\n")  # old news: before the mark
        write(tb, node, "cluster/corosync.log", COROSYNC_ERROR + "\n")
    return tb


def write(tb: HostLogs, node: str, rel: str, text: str) -> None:
    path = tb.layout.node_dir(node) / "var" / "log" / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as f:
        f.write(text)


def test_findings_are_only_new_unexpected_error_lines(fake_testbed: HostLogs) -> None:
    audit = LogAudit(fake_testbed)
    audit.mark()
    assert audit.findings() == []
    write(fake_testbed, "node2", "pacemaker/pacemaker.log", f"{PCMK_WARNING}\n{AGENT_ERROR}\n{AGENT_INFO}\n")
    write(fake_testbed, "node3", "cluster/corosync.log", COROSYNC_WARNING + "\n")
    write(fake_testbed, "node1", "cluster/app-app.log", f"{APP_INFO}\n{APP_ERROR}\n")  # new since the mark
    assert audit.findings() == [LogLine("node1", "app-app.log", APP_ERROR),
                                LogLine("node2", "pacemaker.log", AGENT_ERROR)]


def test_expected_patterns_and_ignore_rules_remove_lines(fake_testbed: HostLogs) -> None:
    audit = LogAudit(fake_testbed)
    audit.mark()
    denied = "Nov 25 15:40:05.000 [14] node2 corosync error   [QB    ] Denied connection, is not ready (14-57-36)"
    write(fake_testbed, "node2", "cluster/corosync.log", f"{denied}\n{COROSYNC_ERROR}\n")
    write(fake_testbed, "node1", "pacemaker/pacemaker.log", AGENT_ERROR + "\n")
    assert [f.line for f in audit.findings()] == [AGENT_ERROR, COROSYNC_ERROR]
    assert [f.line for f in audit.findings([r"Failed to write status file", re.compile("could not decrypt")])] == []


def test_a_line_still_being_written_waits_for_its_newline(fake_testbed: HostLogs) -> None:
    audit = LogAudit(fake_testbed)
    audit.mark()
    write(fake_testbed, "node1", "pacemaker/pacemaker.log", PCMK_ERROR[:40])
    assert audit.findings() == []
    write(fake_testbed, "node1", "pacemaker/pacemaker.log", PCMK_ERROR[40:] + "\n")
    assert audit.findings() == [LogLine("node1", "pacemaker.log", PCMK_ERROR)]


def test_a_truncated_or_recreated_file_is_read_from_its_start(fake_testbed: HostLogs) -> None:
    audit = LogAudit(fake_testbed)
    audit.mark()
    log = fake_testbed.layout.node_dir("node3") / "var/log/pacemaker/pacemaker.log"
    short = "Nov 25 15:40:01.123 node3 pacemaker-based     [40] (x) \tcrit: gone"
    log.write_text(short + "\n")  # shorter than before: truncated
    assert audit.findings() == [LogLine("node3", "pacemaker.log", short)]
    audit.mark()
    new = log.with_name("new.log")  # a rebuilt testbed: a new file, longer than the one at the mark
    new.write_text(PCMK_ERROR + "\n" + PCMK_CRIT + "\n")
    new.replace(log)
    assert [f.line for f in audit.findings()] == [PCMK_ERROR, PCMK_CRIT]


def test_a_stall_logged_by_a_corosync_still_starting_is_harmless_but_one_of_a_member_is_a_finding(
        fake_testbed: HostLogs) -> None:
    """A TCG guest booting after a power-off: corosync's own knet/crypto start blocked its loop 2.5 s before the
    node joined any membership (no token to lose). The same warning from a member is a finding."""
    stall = ("Nov 30 10:43:22.480 [{pid}] node1 corosync warning [MAIN  ] Corosync main process was not scheduled "
             "(@1796035402480) for 2503.1692 ms (threshold is 2400.0000 ms). Consider token timeout increase.")
    boot = "\n".join([
        "Nov 30 10:43:19.808 [267] node1 corosync notice  [MAIN  ] Corosync Cluster Engine 3.1.7 starting up",
        "Nov 30 10:43:20.116 [267] node1 corosync notice  [TOTEM ] Initializing transport (Kronosnet).",
        stall.format(pid=267),
        "Nov 30 10:43:24.012 [267] node1 corosync notice  [TOTEM ] A new membership (1.16) was formed. Members joined: 1",
        stall.format(pid=267).replace("10:43:22", "10:45:01")])
    audit = LogAudit(fake_testbed)
    audit.mark()
    write(fake_testbed, "node1", "cluster/corosync.log", boot + "\n")
    res = audit.result()
    assert [f.line for f in res.findings] == [stall.format(pid=267).replace("10:43:22", "10:45:01")]
    assert len(res.expected) == 1 and "still starting, before it joined any membership" in res.expected[0][1]


def test_a_stall_every_node_logged_at_the_same_instant_is_the_machine_s_but_one_node_s_alone_is_a_finding(
        fake_testbed: HostLogs) -> None:
    """`make run`, 2026-12-02 (corosync_kill-node1): node2 and node3 stalled at the same instant of one monotonic
    clock (the embedded nodes share the host's kernel); a stall of node1 alone, or at another instant, stays."""
    line = ("Dec 02 09:41:{s} [{pid}] {node} corosync warning [MAIN  ] Corosync main process was not scheduled "
            "(@{mono}) for {ms} ms (threshold is 800.0000 ms). Consider token timeout increase.")
    node2 = line.format(s="52.712", pid=17, node="node2", mono=1796204512712, ms="1160.2576")
    node3 = line.format(s="52.712", pid=18, node="node3", mono=1796204512712, ms="899.6509")
    node1_later = line.format(s="58.100", pid=19, node="node1", mono=1796204518100, ms="950.0000")
    own_clock = line.format(s="58.150", pid=17, node="node2", mono=88021150, ms="930.0000")  # another kernel's
    audit = LogAudit(fake_testbed)
    audit.mark()
    write(fake_testbed, "node2", "cluster/corosync.log", node2 + "\n" + own_clock + "\n")
    write(fake_testbed, "node3", "cluster/corosync.log", node3 + "\n")
    write(fake_testbed, "node1", "cluster/corosync.log", node1_later + "\n")
    res = audit.result()
    assert sorted(f.line for f in res.findings) == sorted([node1_later, own_clock])
    why = dict((ln.line, w) for ln, w in res.expected)
    assert why[node2].startswith("the test machine stalled, not the cluster: node3 (900 ms) logged the same stall")
    assert "node2 (1160 ms)" in why[node3]
