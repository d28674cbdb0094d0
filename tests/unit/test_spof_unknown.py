"""The live SPOF audit on scripted command answers: an unread setting is "unknown", never its default nor ok."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest

from harness.audits.spof import CRM_EX_NOSUCH, LIVE_CHECKS, Finding, audit_live
from harness.errors import CommandTimedOut, TransportError
from harness.result import Result
from harness.topology import DEFAULT_TESTBED, load_topology

Answer = Callable[[str, tuple[str, ...]], Result]


def result(node: str, argv: tuple[str, ...], rc: int | None = 0, out: str = "", err: str = "") -> Result:
    return Result(node=node, argv=argv, exit_status=rc, stdout=out, stderr=err, duration_s=0.01)


class FakeNode:
    def __init__(self, name: str, answer: Answer) -> None:
        self.name, self.answer = name, answer
        self.ran: list[tuple[str, ...]] = []

    def run(self, argv: Any, *, timeout: float, check: bool = True, **_: Any) -> Result:
        argv = tuple(argv)
        self.ran.append(argv)
        r = self.answer(self.name, argv)
        if r.exit_status is None:
            raise CommandTimedOut(r, timeout)
        return r


def fake_tb(answer: Answer, running: tuple[str, ...] = ("node1", "node2", "node3")) -> SimpleNamespace:
    topo = load_topology(DEFAULT_TESTBED)
    nodes = {n: FakeNode(n, answer) for n in topo.node_names}

    def node(name: str) -> FakeNode:
        if name not in running:
            raise TransportError(name, "node is not running")
        return nodes[name]
    return SimpleNamespace(topology=topo, node=node, running=lambda n: n in running, nodes=nodes)


def driver(state: Any = None) -> SimpleNamespace:
    return SimpleNamespace(state=lambda: state)


def properties(values: dict[str, tuple[int | None, str, str]]) -> Answer:
    """crm_attribute answers by property name; corosync-cmapctl: two_node not set."""
    def answer(node: str, argv: tuple[str, ...]) -> Result:
        if argv[0] == "crm_attribute":
            rc, out, err = values[argv[argv.index("--name") + 1]]
            return result(node, argv, rc, out, err)
        if argv[0] == "corosync-cmapctl":
            return result(node, argv, 1, err="Can't get key quorum.two_node. Error CS_ERR_NOT_EXIST")
        raise AssertionError(f"unexpected command {argv}")
    return answer


NOT_CONNECTED = (102, "", "crm_attribute: Could not connect to the CIB: Transport endpoint is not connected")
UNSET = (CRM_EX_NOSUCH, "", "crm_attribute: Error performing operation: No such device or address")


def test_unset_stonith_enabled_is_the_default_true() -> None:
    (f,) = audit_live(fake_tb(properties({"stonith-enabled": UNSET})), driver(), ["stonith-enabled"])
    assert f.ok and f.detail == "stonith-enabled is true (default)" and not f.unknown


def test_a_failed_query_is_unknown_not_the_default() -> None:
    (f,) = audit_live(fake_tb(properties({"stonith-enabled": NOT_CONNECTED})), driver(), ["stonith-enabled"])
    assert not f.ok and f.unknown and f.failed and f.status == "unknown"
    assert "exited 102" in f.detail and "Could not connect to the CIB" in f.detail
    assert "default" not in f.detail and str(f).startswith("[unknown] stonith-enabled-local: cannot tell:")


def test_a_timed_out_query_on_every_node_is_unknown() -> None:
    (f,) = audit_live(fake_tb(properties({"stonith-enabled": (None, "", "")})), driver(), ["stonith-enabled"])
    assert f.unknown and "no running node could run crm_attribute" in f.detail


def test_no_running_node_is_unknown_not_an_exception() -> None:
    findings = audit_live(fake_tb(properties({}), running=()), driver(), ["stonith-enabled", "no-quorum-policy"])
    assert [f.unknown for f in findings] == [True, True]
    assert "no node is running" in findings[0].detail


def test_no_quorum_policy_unreadable_or_its_cmap_key_unreadable_is_unknown() -> None:
    ok = {"stonith-enabled": (0, "true\n", ""), "no-quorum-policy": (0, "stop\n", "")}
    (f,) = audit_live(fake_tb(properties(ok)), driver(), ["no-quorum-policy"])
    assert f.ok and not f.unknown
    (f,) = audit_live(fake_tb(properties({**ok, "no-quorum-policy": NOT_CONNECTED})), driver(), ["no-quorum-policy"])
    assert f.unknown

    def cmap_down(node: str, argv: tuple[str, ...]) -> Result:
        if argv[0] == "corosync-cmapctl":
            return result(node, argv, 1, err="Failed to initialize the cmap API. Error CS_ERR_LIBRARY")
        return properties(ok)(node, argv)
    (f,) = audit_live(fake_tb(cmap_down), driver(), ["no-quorum-policy"])
    assert f.unknown and "CS_ERR_LIBRARY" in f.detail


def test_crm_mon_without_answer_is_unknown_and_the_agent_is_not_run_anywhere() -> None:
    tb = fake_tb(lambda node, argv: pytest.fail(f"no command may run: {argv}"))
    (f,) = audit_live(tb, driver(None), ["stonith-resource-started"])
    assert f.unknown
    (f,) = audit_live(tb, driver(None), ["app-agent-idempotent"])
    assert f.unknown and "not run anywhere" in f.detail
    assert all(not n.ran for n in tb.nodes.values())


def test_corosync_links_unreadable_is_unknown() -> None:
    def answer(node: str, argv: tuple[str, ...]) -> Result:
        return result(node, argv, 1, err="Could not initialize corosync configuration API error 2")
    findings = audit_live(fake_tb(answer, running=("node1", "node2")), driver(), ["corosync-links"])
    assert [(f.subject, f.unknown) for f in findings] == [("node1", True), ("node2", True), ("node3", True)]


def test_shared_disk_device_query_failure_is_unknown_but_a_missing_parameter_is_a_finding() -> None:
    def answer(rc: int, out: str, err: str) -> Answer:
        def a(node: str, argv: tuple[str, ...]) -> Result:
            if argv[0] == "crm_resource":
                return result(node, argv, rc, out, err)
            return result(node, argv, 0)  # test -b
        return a
    (f,) = audit_live(fake_tb(answer(*NOT_CONNECTED)), driver(), ["shared-disk-device"])
    assert f.unknown
    (f,) = audit_live(fake_tb(answer(0, "", "Attribute 'device' not found for 'app-fs'")), driver(),
                      ["shared-disk-device"])
    assert not f.ok and not f.unknown and "no device parameter" in f.detail
    found = audit_live(fake_tb(answer(0, "/dev/loop3\n", "")), driver(), ["shared-disk-device"])
    assert all(f.ok for f in found) and len(found) == 3


def test_every_live_finding_status_is_ok_unknown_or_a_severity() -> None:
    assert Finding("x", "y", True, "fine").status == "ok"
    assert Finding("x", "y", False, "bad", "warning").status == "warning"
    assert Finding.unreadable("x", "y", "why").status == "unknown"
    assert set(LIVE_CHECKS) >= {"stonith-enabled", "no-quorum-policy"}
