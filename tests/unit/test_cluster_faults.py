"""Issue 14 items 2, 4 and 5 without a cluster: daemon kills, corosync pauses and whole-cluster operations
(expectations, effects that are not there, marks on the timeline) and the `starts` / `untouched` verdicts."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from fake_testbed import FakeTestbed

from harness.checkers import CHECKERS, Context, check_safe
from harness.checkers.whole import check_starts, check_untouched
from harness.faults import FAULTS, Nemesis, Target, base, cluster
from harness.faults.base import FaultNotInEffect, mark
from harness.faults.daemons import effective_token_ms, loss_after_s
from harness.plan import Case, expect, plan
from harness.runner import ASSERTED
from harness.timeline import (
    CLUSTER_GROUP_STARTED,
    CLUSTER_GROUP_STOPPED,
    CLUSTER_QUORUM,
    TEST_MARK,
    ProbeSample,
    Timeline,
)
from harness.topology import DEFAULT_TESTBED, load_topology

TOPO = load_topology(DEFAULT_TESTBED)
HOME = {"app": "node1"}
CLUSTER_SUITE = {name for name, f in FAULTS.items() if f.suite == "cluster"}


@pytest.fixture(autouse=True)
def quick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(base, "SETTLE_S", 0.2)


@pytest.fixture
def tb(tmp_path: Path) -> FakeTestbed:
    return FakeTestbed(tmp_path)


def describe(fault: str, **target: Any) -> tuple[str, str | None, str]:
    e = expect(TOPO, Case(fault, Target(**target)), HOME)[0]
    return e.outcome, e.takeover, e.describe()


# -- the plan -------------------------------------------------------------------------------------


def test_the_cluster_suite_holds_the_new_faults_on_the_groups_home_node() -> None:
    assert {"based_kill", "fenced_kill", "execd_kill", "attrd_kill", "schedulerd_kill", "controld_kill",
            "pacemakerd_kill", "corosync_kill_loop", "corosync_pause_short", "corosync_pause_long",
            "cluster_simul_restart", "cluster_one_by_one", "cluster_reattach"} <= CLUSTER_SUITE
    ids = [c.id for c in plan(TOPO, sorted(CLUSTER_SUITE), capabilities={c: None for c in (
        "power", "spawn", "rules", "pacemaker", "quorum")})]
    assert "controld_kill-node1" in ids and "controld_kill-node2" not in ids
    assert "cluster_one_by_one-cluster" in ids and "corosync_pause_short-node1" in ids
    for f in CLUSTER_SUITE:
        assert FAULTS[f].family and FAULTS[f].event and FAULTS[f].summary and FAULTS[f].mechanism


def test_corosync_faults_follow_the_token() -> None:
    assert effective_token_ms(TOPO) == 1000 and loss_after_s(TOPO) == pytest.approx(2.2)
    assert describe("corosync_pause_short", node="node1")[:2] == ("stay", None)
    assert "0.5 s pause is shorter than the 1000 ms token" in describe("corosync_pause_short", node="node1")[2]
    assert describe("corosync_pause_long", node="node1")[:2] == ("fallover", "node2")
    assert describe("corosync_pause_long", node="node2")[:2] == ("stay", None)
    assert describe("corosync_kill_loop", node="node1")[:2] == ("fallover", "node2")
    coefficient = TOPO.model_copy(update={"cluster": TOPO.cluster.model_copy(update={"token_coefficient_ms": 650})})
    assert effective_token_ms(coefficient) == 1650


def test_whole_cluster_operations_expect_one_start_on_the_first_node() -> None:
    for fault in ("cluster_simul_restart", "cluster_one_by_one"):
        outcome, _, text = describe(fault)
        assert outcome == "restart" and "starts once, on node1" in text
        assert "starts" in FAULTS[fault].extra_asserted and "starts" in ASSERTED["restart"]
    outcome, _, text = describe("cluster_reattach")
    assert outcome == "stay" and "target outage: none" in text
    assert FAULTS["cluster_reattach"].expectation["max_outage_s"] == 0.0
    assert FAULTS["cluster_reattach"].extra_asserted == ("untouched",)


# -- effects that are not there -------------------------------------------------------------------


def test_corosync_kill_loop_on_a_node_that_is_never_fenced_is_reported(tb: FakeTestbed,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.faults import cluster, daemons

    monkeypatch.setattr(daemons, "KILL_LOOP_S", 0.3)
    monkeypatch.setattr(cluster, "make_whole", lambda testbed, n: None)
    tb.shell = lambda node, cmd: (0, "42") if cmd == "pidof corosync" else (0, "")
    with pytest.raises(FaultNotInEffect, match="node1 was never fenced: corosync killed"):
        Nemesis(tb, Timeline()).start("corosync_kill_loop", node="node1")


def test_corosync_pause_that_never_stops_corosync_is_reported(tb: FakeTestbed,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.faults import daemons

    monkeypatch.setattr(daemons, "make_whole", lambda testbed, n: None)
    tb.shell = lambda node, cmd: (0, "42") if cmd == "pidof corosync" else (0, "S") if "stat" in cmd else (0, "")
    with pytest.raises(FaultNotInEffect, match=r"corosync \(pid 42\) on node1 never stopped: state S"):
        Nemesis(tb, Timeline()).start("corosync_pause_short", node="node1")
    spawned = [s for s in tb.switched if s[0] == "spawn"]
    assert spawned == [("spawn", "node1", "sh", "-c", "kill -STOP 42; sleep 0.500; kill -CONT 42")]


def test_pacemakerd_heal_starts_pacemakerd_alone(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.faults import daemons

    monkeypatch.setattr(daemons, "make_whole", lambda testbed, n: pytest.fail("the whole stack was restarted"))
    alive = {"corosync": "7", "pacemaker-controld": "9"}
    tb.shell = lambda node, cmd: (0, alive[cmd[6:]]) if cmd[6:] in alive else \
        ((0, "") if cmd.endswith("release pacemaker") else (1, ""))  # nothing held: the release does nothing
    spawned: list[Any] = []
    monkeypatch.setattr(tb, "spawn", lambda node, argv, pidfile: (spawned.append(argv), alive.update(pacemakerd="11")))
    FAULTS["pacemakerd_kill"].heal(tb, Target(node="node1"), {})  # a replayed journal: nothing but the id
    assert spawned == [["pacemakerd"]]  # no systemd on the node (asked, since the journal did not say)
    assert any("[ -d " in c for _, c in tb.commands) and tb.commands[-1][1].endswith("release pacemaker")


# -- marks and verdicts --------------------------------------------------------------------------


def test_marks_of_a_long_fault_land_on_the_timeline_at_their_time() -> None:
    undo: dict[str, Any] = {}
    mark(undo, "cluster stopped")
    mark(undo, "application before", processes={"app": ["node1:5:77"]})
    timeline = Timeline()
    n = Nemesis.__new__(Nemesis)
    n.timeline = timeline
    n._marks(type("E", (), {"undo": undo})())  # type: ignore[arg-type]
    marks = timeline.of(TEST_MARK)
    assert [m.data["label"] for m in marks] == ["cluster stopped", "application before"]
    assert marks[1].data["processes"] == {"app": ["node1:5:77"]}
    assert marks[0].mono == undo["marks"][0][1]


def whole_ctx(events: list[tuple[str, str | None, float, dict[str, Any]]], answered_at: float = 12.0,
              **expectation: Any) -> Context:
    t = Timeline()
    t.add("fault.injected", None, mono=0.0, fault="cluster_one_by_one", family="planned")
    for kind, node, mono, data in events:
        t.add(kind, node, mono=mono, data=data)
    t.probe.extend([ProbeSample(mono=1.0, wall=1.0, ok=True, latency_s=0.01, node="node1"),
                    ProbeSample(mono=answered_at - 1, wall=0, ok=False, latency_s=0.5),
                    ProbeSample(mono=answered_at, wall=0, ok=True, latency_s=0.01, node="node1")])
    return Context(t, (), TOPO, fault_start=0.0,
                   expectation={"whole_cluster": True, "home": "node1", "group": "app", **expectation})


START = (TEST_MARK, None, 5.0, {"label": "cluster start"})


def test_starts_passes_one_start_on_the_first_node_with_quorum() -> None:
    v = check_starts(whole_ctx([(CLUSTER_QUORUM, "node1", 3.0, {"quorate": False, "running": ["app"]}),
                                (CLUSTER_GROUP_STOPPED, "node1", 4.0, {"group": "app"}), START,
                                (CLUSTER_GROUP_STARTED, "node1", 9.0, {"group": "app", "quorate": True})]))
    assert v.valid is True, v
    assert v.measured == 7.0 and "started once, on node1" in v.explanation and "time to service 7 s from cluster start" in v.explanation


@pytest.mark.parametrize("events, words", [
    ([START, (CLUSTER_GROUP_STARTED, "node1", 6.0, {"group": "app", "quorate": False})],
     "started on node1 at +6.00 s in a partition without quorum"),
    ([START, (CLUSTER_GROUP_STARTED, "node2", 6.0, {"group": "app", "quorate": True}),
      (CLUSTER_GROUP_STARTED, "node1", 8.0, {"group": "app", "quorate": True})],
     "app started 2 times after the cluster start (node2 at +6.00 s, node1 at +8.00 s), not once"),
    ([START, (CLUSTER_GROUP_STARTED, "node3", 6.0, {"group": "app", "quorate": True})],
     "app first started on node3, not on node1"),
    ([(CLUSTER_QUORUM, "node1", 2.0, {"quorate": False, "running": ["app"]}), START,
      (CLUSTER_GROUP_STARTED, "node1", 6.0, {"group": "app", "quorate": True})],
     "app kept running without quorum from +2.00 s until the recording ended"),
    ([START], "app started 0 times"),
])
def test_starts_fails_and_names_what_went_wrong(events: list[Any], words: str) -> None:
    v = check_starts(whole_ctx(events))
    assert v.valid is False and words in v.explanation, v.explanation


def test_starts_fails_a_slow_start_and_is_not_judged_elsewhere() -> None:
    slow = whole_ctx([START, (CLUSTER_GROUP_STARTED, "node1", 40.0, {"group": "app", "quorate": True})],
                     answered_at=41.0)
    v = check_starts(slow)
    assert v.valid is False and "time to service 36 s exceeds 30 s" in v.explanation
    other = Context(Timeline(), (), TOPO, expectation={})
    assert not check_starts(other).judged and not check_untouched(other).judged
    assert {"starts", "untouched"} <= set(CHECKERS)
    assert check_safe(CHECKERS["starts"], other).valid is True


def test_untouched_compares_the_application_before_and_after() -> None:
    def ctx(after: list[str]) -> Context:
        t = Timeline()
        t.add(TEST_MARK, None, mono=1.0, label="application before", processes={"app": ["node1:5:77"]})
        t.add(TEST_MARK, None, mono=9.0, label="application after", processes={"app": after})
        return Context(t, (), TOPO)

    assert check_untouched(ctx(["node1:5:77"])).valid is True
    v = check_untouched(ctx(["node1:88:901"]))
    assert v.valid is False and "app's application was restarted: ['node1:5:77'] before" in v.explanation


def test_untouched_names_the_attributes_a_reattach_lost_when_the_group_stopped() -> None:
    t = Timeline()
    t.add(TEST_MARK, None, mono=1.0, label="application before", processes={"app": ["node1:5:77"]})
    t.add(TEST_MARK, None, mono=5.0, label="attributes lost", attributes={"node1": ["gw-ok"], "node2": ["gw-ok"]})
    t.add(TEST_MARK, None, mono=8.0, label="not settled after maintenance", why="app stopped once maintenance "
          "mode ended")
    t.add(TEST_MARK, None, mono=9.0, label="application after", processes={"app": []})
    v = check_untouched(Context(t, (), TOPO))
    assert v.valid is False and v.measured == 1
    assert "app's application is not running after the reattach (['node1:5:77'] before)" in v.explanation
    assert "nothing set again before maintenance mode ended (node1: gw-ok; node2: gw-ok)" in v.explanation
    assert "after maintenance mode: app stopped once maintenance mode ended" in v.explanation


def test_time_to_service_counts_from_the_start_that_makes_a_majority() -> None:
    v = check_starts(whole_ctx([START, (TEST_MARK, None, 8.0, {"label": "cluster start with quorum"}),
                                (CLUSTER_GROUP_STARTED, "node1", 10.0, {"group": "app", "quorate": True})]))
    assert v.valid is True and v.measured == 4.0
    assert "time to service 4 s from cluster start with quorum at +8.00 s" in v.explanation


class _LiftDriver:
    """The driver as a reattach sees it once maintenance mode ends: a scripted list of (group node, DC busy)."""

    def __init__(self, looks: list[tuple[str | None, str | None]]) -> None:
        self.looks, self.settle_waits = looks, 0

    def wait_until(self, predicate: Any, *, timeout: float, what: str) -> Any:
        for node, busy in self.looks:
            s = type("S", (), {"group_node": lambda self, g, n=node: n, "summary": lambda self, n=node:
                               f"app={n or 'stopped'}", "busy": busy})()
            if predicate(s):
                return s
        from harness.errors import WaitTimeout
        raise WaitTimeout(what, timeout)

    def settled(self, s: Any) -> bool:
        return s.group_node("app") == "node1" and s.busy is None

    def busy(self, s: Any) -> str | None:
        return s.busy

    def wait_settled(self, *, timeout: float) -> None:
        self.settle_waits += 1


def test_after_maintenance_a_group_the_cluster_stopped_ends_the_wait_and_is_reported() -> None:
    from harness.faults.whole import _settle_after_lift

    stopping = _LiftDriver([("node1", "transition running"), (None, "transition running"), (None, None)])
    assert _settle_after_lift(stopping, ["app"], 60) == "app stopped once maintenance mode ended: app=stopped"  # type: ignore[arg-type]
    assert stopping.settle_waits == 0  # nothing more will come: no wait for the quiet period
    calm = _LiftDriver([("node1", "transition running"), ("node1", None)])
    assert _settle_after_lift(calm, ["app"], 60) is None and calm.settle_waits == 1  # type: ignore[arg-type]
    stuck = _LiftDriver([("node1", "transition running")])
    assert "the cluster settled after maintenance mode" in (_settle_after_lift(stuck, ["app"], 60) or "")  # type: ignore[arg-type]


# -- systemd would restart a killed daemon: held for the fault's window ------------------------------


def _sh(script: str, root: Path, *units: str) -> subprocess.CompletedProcess[str]:
    bin_ = root / "bin"
    bin_.mkdir(exist_ok=True)
    (bin_ / "systemctl").write_text(f'#!/bin/sh\necho "$*" >> {root}/systemctl.calls\n')
    (bin_ / "systemctl").chmod(0o755)
    return subprocess.run(["sh", "-c", script, "x", *units], capture_output=True, text=True, timeout=30,
                          env={**os.environ, "PATH": f"{bin_}:{os.environ['PATH']}",
                               "FALLOVER_SYSTEMD_RUN": str(root / "units")})


def test_the_restart_hold_is_a_runtime_drop_in_that_the_release_removes(tmp_path: Path) -> None:
    assert _sh(cluster._HOLD, tmp_path, "pacemaker").returncode == 0  # no systemd: nothing written, nothing run
    assert not (tmp_path / "units").exists() and not (tmp_path / "systemctl.calls").exists()
    (tmp_path / "units").mkdir()
    assert _sh(cluster._HOLD, tmp_path, "corosync", "pacemaker").returncode == 0
    for u in ("corosync", "pacemaker"):
        conf = tmp_path / "units" / f"{u}.service.d" / cluster.HOLD_CONF
        assert conf.read_text() == "[Service]\nRestart=no\n"
    assert (tmp_path / "systemctl.calls").read_text() == "daemon-reload\n"
    assert _sh(cluster._HOLD, tmp_path, "corosync").stdout == "held\n"  # the node has systemd: say so
    assert _sh(cluster._RELEASE, tmp_path, "corosync", "pacemaker").returncode == 0
    assert not list((tmp_path / "units").glob("*/*.conf"))
    assert (tmp_path / "systemctl.calls").read_text() == "daemon-reload\n" * 3
    assert _sh(cluster._RELEASE, tmp_path, "pacemaker").returncode == 0  # released already: no reload
    assert (tmp_path / "systemctl.calls").read_text() == "daemon-reload\n" * 3


@pytest.mark.parametrize("fault,units", [("pacemaker_kill", "pacemaker"), ("corosync_kill", "corosync pacemaker"),
                                         ("pacemakerd_kill", "pacemaker")])
def test_a_daemon_kill_holds_restarts_before_the_kill_and_releases_them_after_the_heal(
        tb: FakeTestbed, fault: str, units: str) -> None:  # and kills every daemon at once, after the lookups
    tb.shell = lambda node, cmd: (0, "4242\n") if cmd.startswith("pidof") else (0, "")
    f = FAULTS[fault]
    undo: dict[str, Any] = {}
    f.inject(tb, Target(node="node1"), undo)
    lines = [c for n, c in tb.commands if n == "node1"]
    hold = next(i for i, c in enumerate(lines) if "Restart=no" in c)
    kill = next(i for i, c in enumerate(lines) if c.startswith("kill -KILL"))
    assert hold < kill and lines[hold].endswith(f"hold {units}")
    assert undo["held"] == units.split()
    assert [m[0] for m in undo["marks"]] == ["kill"] and undo["marks"][0][2] == {"fault_start": True}
    assert lines[kill] == "kill -KILL 4242" and len([c for c in lines if c.startswith("kill")]) == 1
    tb.commands.clear()
    f.heal(tb, Target(node="node1"), undo)
    assert tb.commands[-1][1].endswith(f"release {units}")  # after the stack was made whole


def test_a_node_fenced_during_a_daemon_kill_has_no_hold_left_to_release(tb: FakeTestbed,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cluster, "make_whole", lambda testbed, node: testbed.powered.add(node))
    tb.powered.discard("node1")  # fenced (powered off): the drop-in was in its /run
    FAULTS["pacemaker_kill"].heal(tb, Target(node="node1"), {"held": ["pacemaker"]})
    assert tb.commands == []



@pytest.mark.parametrize("systemd,started", [(True, [("start_services", "node1")]), (False, [])])
def test_pacemakerd_killed_alone_is_started_again_by_its_unit_where_systemd_runs_it(
        tb: FakeTestbed, systemd: bool, started: list[tuple[str, ...]]) -> None:
    """Under systemd a pacemakerd spawned beside the unit would be one systemctl cannot stop; without systemd
    (the embedded testbed) the harness starts it itself. Either way it adopts the running children."""
    gone = {"pacemakerd"}
    tb.shell = lambda node, cmd: (1, "") if cmd.startswith("pidof") and cmd.split()[-1] in gone else \
        (0, "4242\n" if cmd.startswith("pidof") else "")
    spawned: list[str] = []
    tb.spawn = lambda node, argv, pidfile: (spawned.append(argv[-1]), gone.clear())  # type: ignore[method-assign]
    tb.start_services = lambda node: (tb.switched.append(("start_services", node)), gone.clear())  # type: ignore[method-assign]
    FAULTS["pacemakerd_kill"].heal(tb, Target(node="node1"), {"held": ["pacemaker"], "systemd": systemd})
    assert tb.switched == started and spawned == ([] if systemd else ["pacemakerd"])
    assert tb.commands[-1][1].endswith("release pacemaker")


def test_a_node_fenced_while_the_heal_releases_its_hold_is_made_whole_then_released(
        tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fence of a node whose daemons died can land in the middle of the heal (25 s after the kill on the
    VMs): the release's SSH connect times out. That is the cluster doing its job, not a failed heal."""
    from harness.errors import TransportError

    calls: list[str] = []

    def release(testbed: object, node: str, units: tuple[str, ...]) -> None:
        calls.append("release")
        if calls.count("release") == 1:
            raise TransportError(node, "unreachable: connection timed out")

    monkeypatch.setattr(cluster, "release_restarts", release)
    monkeypatch.setattr(cluster, "make_whole", lambda testbed, node: calls.append("make_whole"))
    FAULTS["corosync_kill"].heal(tb, Target(node="node2"), {"held": ["corosync", "pacemaker"]})
    assert calls == ["make_whole", "release", "make_whole", "release"]


def test_node_stop_counts_from_the_sigterm_not_from_the_call(tb: FakeTestbed, monkeypatch: pytest.MonkeyPatch) -> None:
    """The driver's first SSH call on a loaded TCG guest took seconds; the graceful stop begins at its signal."""
    import time
    from types import SimpleNamespace

    from harness import drivers
    from harness.drivers.pacemaker import PacemakerDriver
    from harness.result import Result

    seen: list[str] = []
    signalled_at: list[float] = []

    def run(cmd: Any, **kw: Any) -> Result:
        line = cmd if isinstance(cmd, str) else " ".join(cmd)
        seen.append(line)
        gone = line.startswith("pidof")  # pacemakerd and corosync have gone at the first look
        return Result("node1", ("sh", "-c", line), 1 if gone else 0, "", "", 0.0)

    driver = PacemakerDriver.__new__(PacemakerDriver)
    driver.testbed = SimpleNamespace(node=lambda n: SimpleNamespace(run=run))  # type: ignore[assignment]
    driver.stop_services("node1", signalled=lambda: signalled_at.append(len(seen)))
    assert seen[0] == "kill -TERM $(pidof pacemakerd)" and signalled_at == [1]  # right after the signal
    monkeypatch.setattr(drivers, "open_driver", lambda testbed: driver)
    undo: dict[str, Any] = {}
    before = time.monotonic()
    FAULTS["node_stop"].inject(tb, Target(node="node1"), undo)
    (label, mono, data), = undo["marks"]
    assert label == "SIGTERM" and data == {"fault_start": True} and mono >= before
