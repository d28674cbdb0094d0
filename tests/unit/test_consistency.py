"""Cluster-consistency audits on literal views (CIB, DC per partition, primitives once, managed), the warning
signs of trouble (each with its reason), and the log-pipeline marker (a file the marker never reaches is unknown)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fake_testbed import FakeTestbed
from host_logs import HostLogs

from harness.audits import logpipe
from harness.audits.cluster import Consistency, canonical, judge_views
from harness.audits.logs import (
    CONSEQUENCES,
    WARNING_SIGNS,
    LogAudit,
    is_bad,
    warning_sign,
)
from harness.checkers import UNKNOWN
from harness.drivers.state import ClusterState, NodeState, ResourceState
from harness.faults import FAULTS, Target
from harness.faults.base import FaultNotInEffect
from harness.result import Result
from harness.topology import DEFAULT_TESTBED, load_topology

NODES = ("node1", "node2", "node3")
CONF = canonical('<configuration><crm_config/><resources><primitive id="app-ip" class="ocf"/></resources>'
                 '</configuration>')


def rsc(rid: str, *on: str, clone: bool = False, managed: bool = True, blocked: bool = False) -> ResourceState:
    return ResourceState(rid, "ocf:x", "Started" if on else "Stopped", bool(on), False, managed, tuple(on),
                         blocked=blocked, clone=clone)


def view(seen_from: str, members: tuple[str, ...] = NODES, dc: str | None = "node2",
         resources: tuple[ResourceState, ...] = (rsc("app-ip", "node1"), rsc("linkmon", *NODES, clone=True)),
         ) -> ClusterState:
    return ClusterState(seen_from, dc, True, {n: NodeState(n, n in members) for n in NODES}, {},
                        {r.id: r for r in resources})


def checks(views: dict[str, ClusterState], configs: dict[str, str] | None = None,
           unread: dict[str, str] | None = None, **kw: object) -> dict[str, object]:
    got = judge_views(views, configs if configs is not None else {n: CONF for n in views}, unread or {}, **kw)  # type: ignore[arg-type]
    return {c.name: c for c in got}


def test_a_whole_consistent_cluster_passes_every_check() -> None:
    c = checks({n: view(n) for n in NODES})
    assert all(x.valid is True for x in c.values()), c  # type: ignore[attr-defined]
    v = Consistency(tuple(c.values()), 0.4).verdict()  # type: ignore[arg-type]
    assert v.valid is True and "1 partition(s): node1+node2+node3 with DC node2" in v.explanation
    assert "configuration identical on node1, node2, node3" in v.explanation and "0.40 s" in v.explanation


def test_a_differing_configuration_is_named_with_the_difference() -> None:
    other = CONF.replace("app-ip", "app-vip")
    c = checks({n: view(n) for n in NODES}, {"node1": CONF, "node2": CONF, "node3": other})["cib"]
    assert c.valid is False and "node3 differs from node1's" in c.detail and "app-vip" in c.detail  # type: ignore[attr-defined]


def test_canonical_form_ignores_attribute_order_and_layout() -> None:
    assert canonical('<a y="1" x="2">\n  <b/>\n</a>') == canonical('<a x="2" y="1"><b></b></a>')


def test_two_dcs_in_one_partition_and_a_partition_without_dc_fail() -> None:
    two = checks({"node1": view("node1", dc="node1"), "node2": view("node2"), "node3": view("node3")})["dc"]
    assert two.valid is False and "has 2 DCs" in two.detail  # type: ignore[attr-defined]
    split = {"node1": view("node1", ("node1",), dc=None), "node2": view("node2", ("node2", "node3")),
             "node3": view("node3", ("node2", "node3"))}
    d = checks(split)["dc"]
    assert d.valid is False and "partition node1 has no DC" in d.detail  # type: ignore[attr-defined]
    good = {**split, "node1": view("node1", ("node1",), dc="node1")}
    assert checks(good)["dc"].valid is True  # type: ignore[attr-defined]


def test_a_primitive_active_twice_fails_within_a_view_and_across_partitions() -> None:
    twice = checks({n: view(n, resources=(rsc("app-ip", "node1", "node2"),)) for n in NODES})["primitives"]
    assert twice.valid is False and "app-ip active on node1, node2" in twice.detail  # type: ignore[attr-defined]
    split = {"node1": view("node1", ("node1",), "node1", (rsc("app-ip", "node1"),)),
             "node2": view("node2", ("node2", "node3"), "node2", (rsc("app-ip", "node2"),)),
             "node3": view("node3", ("node2", "node3"), "node2", (rsc("app-ip", "node2"),))}
    c = checks(split)["primitives"]
    assert c.valid is False and "in different partitions" in c.detail  # type: ignore[attr-defined]


def test_unmanaged_or_blocked_fails_unless_the_case_expects_it() -> None:
    views = {n: view(n, resources=(rsc("app-ip", "node1", managed=False), rsc("fence", "node2", blocked=True)))
             for n in NODES}
    c = checks(views)["managed"]
    assert c.valid is False and "app-ip unmanaged" in c.detail and "fence blocked" in c.detail  # type: ignore[attr-defined]
    assert checks(views, allow_unmanaged={"*"})["managed"].valid is True  # type: ignore[attr-defined]


def test_a_node_that_could_not_be_read_makes_its_checks_unknown_never_ok() -> None:
    views = {n: view(n) for n in ("node1", "node2")}
    c = checks(views, {"node1": CONF, "node2": CONF}, {"node3 view": "crm_mon exited 102", "node3 cib": "timeout"})
    assert {k: x.valid for k, x in c.items()} == {"cib": UNKNOWN, "dc": UNKNOWN, "primitives": UNKNOWN,  # type: ignore[attr-defined]
                                                   "managed": UNKNOWN}
    assert "node3 (crm_mon exited 102)" in c["dc"].detail  # type: ignore[attr-defined]
    assert Consistency(tuple(c.values()), 0.1).verdict().valid == UNKNOWN  # type: ignore[arg-type]
    assert checks({}, {}, {})["cib"].valid == UNKNOWN  # type: ignore[attr-defined]
    assert not Consistency((), 0.0, "keepalived has no CIB").verdict().judged


# -- warning signs ---------------------------------------------------------------------------------------

SIGNS = {
    "Nov 29 21:30:01.123 [14] node2 corosync warning [MAIN  ] Corosync main process was not scheduled (@1764451801123) "
    "for 2345.6789 ms (threshold is 800.0000 ms). Consider token timeout increase.": "starved",
    "Nov 29 21:30:01.123 node1 pacemaker-controld  [40] (election_count_vote) \twarning: Election storm detected: "
    "20 wins in 60 seconds": "election",
    "Nov 29 21:30:01.123 node1 pacemaker-controld  [40] (crm_timer_popped) \tnotice: We appear to be in an election "
    "loop, something may be wrong": "election",
    "Nov 29 21:30:01.123 node1 pacemaker-execd  [40] (x) \twarning: app-app_monitor_2000 is taking more than 2x its "
    "timeout": "overran",
    "Nov 29 21:30:01.123 node1 pacemaker-controld  [40] (peer_update_callback) \twarning: Receiving messages from a "
    "node we think is dead: node3[3]": "split brain",
    "Nov 29 21:30:01.123 node1 pacemaker-based  [40] (cib_process_ping) \tnotice: Local CIB 0.12.5.abc differs from "
    "node2: 0.12.5.def 0x55": "diverged",
}


@pytest.mark.parametrize("line, word", SIGNS.items())
def test_each_warning_sign_of_trouble_is_bad_news_and_keeps_its_reason(line: str, word: str) -> None:
    sign = warning_sign(line)
    assert sign is not None and is_bad(line) and word in sign.reason


def test_a_cib_one_update_behind_a_peer_is_an_update_in_flight_not_a_divergence() -> None:
    ahead = ("Nov 30 07:36:29.751 node1 pacemaker-based     [68] (process_ping_reply) \tnotice: Local CIB "
             "1.15.291.1893314bb99a6bbd4db0f268c29d7472 differs from node3: 1.15.292.39eb3373b92f5e6afe929e986291622a "
             "0x55bd90dcd750")
    assert warning_sign(ahead) is None and not is_bad(ahead)
    same = ahead.replace("1.15.292.", "1.15.291.")
    assert warning_sign(same) is not None and is_bad(same)


def test_every_warning_sign_is_matched_by_a_real_line_and_ordinary_warnings_are_not() -> None:
    assert {warning_sign(line) for line in SIGNS} == set(WARNING_SIGNS)
    assert not is_bad("Nov 29 21:30:01.123 node1 pacemaker-controld  [40] (x) \twarning: Node node3 is unclean")
    starved = next(iter(SIGNS))
    assert any(r.regex.search(starved) for r in CONSEQUENCES["cpu_overload"])  # expected only where a case starves


# -- the log pipeline --------------------------------------------------------------------------------------


class Nodes(HostLogs):
    """Host-side logs plus nodes that "log": each marker command lands in the file it names (or elsewhere)."""

    def __init__(self, root: Path, broken: str | None = None) -> None:
        super().__init__(load_topology(DEFAULT_TESTBED), root)
        self.broken = broken  # a file whose writes go somewhere the audit does not read

    def running(self, node: str) -> bool:
        return node != "node3" or self.broken != "off"

    def node(self, name: str) -> "Nodes._Node":
        return Nodes._Node(self, name)

    class _Node:
        def __init__(self, tb: "Nodes", name: str) -> None:
            self.tb, self.name = tb, name

        def run(self, argv: list[str], *, timeout: float, check: bool = True) -> Result:
            cmd = " ".join(argv)
            if "--delete" in argv:
                return Result(node=self.name, argv=tuple(argv), exit_status=0, stdout="", stderr="", duration_s=0)
            if argv[0] == "attrd_updater":
                path, token = "pacemaker/pacemaker.log", argv[argv.index("--update") + 1]
                text = f"Nov 29 21:30:01.1 {self.name} pacemaker-attrd [9] (x) \tnotice: Setting {argv[2]}[{self.name}]: " \
                       f"(unset) -> {token}"
            else:
                path = re.search(r">> '?/var/log/(\S+?)'?$", cmd)[1]  # type: ignore[index]
                text = re.search(r"printf '%s\\n' '([^']*)'", cmd)[1]  # type: ignore[index]
            if path.split("/")[-1] == self.tb.broken:
                path = "elsewhere/" + path
            f = self.tb.layout.node_dir(self.name) / "var/log" / path
            f.parent.mkdir(parents=True, exist_ok=True)
            with open(f, "a") as out:
                out.write(text + "\n")
            return Result(node=self.name, argv=tuple(argv), exit_status=0, stdout="", stderr="", duration_s=0)


def logs_of(tb: Nodes) -> None:
    for n in NODES:
        for rel in ("pacemaker/pacemaker.log", "cluster/corosync.log"):
            p = tb.layout.node_dir(n) / "var/log" / rel
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_text("old\n")


def test_markers_through_every_nodes_logging_arrive_and_leave_the_audit_ok(tmp_path: Path) -> None:
    tb = Nodes(tmp_path)
    logs_of(tb)
    audit = LogAudit(tb)  # type: ignore[arg-type]
    audit.mark()
    assert audit.check_pipeline(timeout=0.5) == []
    assert audit.result().status == "ok"


def test_a_file_the_marker_never_reaches_makes_the_log_audit_unknown(tmp_path: Path) -> None:
    tb = Nodes(tmp_path, broken="corosync.log")
    logs_of(tb)
    audit = LogAudit(tb)  # type: ignore[arg-type]
    audit.mark()
    missed = audit.check_pipeline(timeout=0.3)
    assert len(missed) == 3 and all("corosync.log: the marker written through a line appended" in m for m in missed)
    res = audit.result()
    assert res.status == "unknown" and res.verdict().valid == UNKNOWN


def test_a_powered_off_node_cannot_vouch_for_its_logging(tmp_path: Path) -> None:
    tb = Nodes(tmp_path, broken="off")
    logs_of(tb)
    audit = LogAudit(tb)  # type: ignore[arg-type]
    audit.mark()
    missed = audit.check_pipeline(timeout=0.3)
    assert missed and all(m.startswith("node3:") and "powered off" in m for m in missed)
    assert logpipe.ATTRIBUTE == "fallover-log-marker"


# -- fence faults against the fake -------------------------------------------------------------------------


def test_fence_fail_breaks_every_level_asks_it_powers_off_and_heals_by_fencing_first(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tb = FakeTestbed(tmp_path)
    order: list[str] = []
    monkeypatch.setattr(tb, "power_off", lambda node: (tb.powered.discard(node), order.append(f"off {node}")))

    class Driver:
        def admin(self, argv: list[str], timeout: float = 30.0) -> None:
            order.append(" ".join(argv[:3]))

    import harness.drivers
    import harness.faults.fencing as fencing
    monkeypatch.setattr(harness.drivers, "open_driver", lambda testbed: Driver())
    monkeypatch.setattr(fencing, "make_whole", lambda testbed, node: order.append(f"whole {node}"))
    fault, target, undo = FAULTS["fence_fail"], Target(node="node1"), {"id": "x"}
    fault.precheck(tb, target)  # type: ignore[arg-type]
    fault.inject(tb, target, undo)  # type: ignore[arg-type]
    fault.verify(tb, target, undo)  # type: ignore[arg-type]
    assert tb.fence == {"fence": "fail"} and order == ["off node1"]
    fault.heal(tb, target, undo)  # type: ignore[arg-type]
    assert tb.fence == {"fence": "ok"}
    assert order == ["off node1", "stonith_admin --fence node1", "whole node1"]  # mended, fenced, then powered on


def test_a_fence_fault_whose_device_still_answers_is_not_in_effect_and_powers_nothing_off(tmp_path: Path) -> None:
    tb = FakeTestbed(tmp_path)
    tb.set_fence_device = lambda device, mode: None  # type: ignore[method-assign]  # the switch does nothing
    fault, target, undo = FAULTS["fence_hang"], Target(node="node1"), {"id": "x"}
    with pytest.raises(FaultNotInEffect, match="fence device fence still answers OK"):
        fault.inject(tb, target, undo)  # type: ignore[arg-type]
    assert "powered_off" not in undo and "node1" in tb.powered
