"""What a case overlaps to save time, and what it must not: the recorders prespawned gated before the reset
(starting the recording only opens gates), and the read-back of the writes beside the recorders' stop
(only after a good recovery: after a failed one it asks the probe first, so it runs before they stop).

Fake recorders and a fake read-back that log what was done to them, in order; no testbed, no process.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import harness.runner as runner_mod
from harness import recording
from harness.recording import CaseRun, Recording
from harness.runner import Runner
from harness.steps import Steps
from harness.timeline import Timeline

BASE, NET, VIP = "http://10.77.1.100:8080", "service", "10.77.1.100"
STALE: set[str] = set()


class FakeProc:
    """A client process that logs each call as (what, call[, gated])."""

    what = "proc"

    def __init__(self, log: list[tuple[Any, ...]], gated: bool) -> None:
        self.calls, self.gated, self.proc, self.stopped = log, gated, None, False

    def spawn(self) -> FakeProc:
        self.proc = object()
        self.calls.append((self.what, "spawn", self.gated))
        return self

    def open_gate(self) -> None:
        self.calls.append((self.what, "open gate"))

    def wait_ready(self) -> FakeProc:
        self.calls.append((self.what, "ready"))
        return self

    def running(self) -> bool:
        return self.proc is not None and not self.stopped

    def terminate(self) -> None:
        self.calls.append((self.what, "terminate"))

    def stale(self) -> bool:  # in a client namespace a rebuilding reset replaced
        return self.what in STALE

    def stop(self, grace: float = 10.0) -> int:
        self.stopped = True
        self.calls.append((self.what, "stop"))
        return 0


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Any, ...]]:
    """Fakes for every recorder ``harness.recording`` starts; the list of what was done to them."""
    log: list[tuple[Any, ...]] = []
    calls_ = log  # what `Load` logs to: its own `log` is locust's request log

    class Probe(FakeProc):
        what = "probe"

        def __init__(self, tb: Any, *, url: str, out: Path, gated: bool = False, **_: Any) -> None:
            super().__init__(log, gated)
            self.url, self.out = url, out

    class ArpWatch(FakeProc):
        what = "arp"

        def __init__(self, tb: Any, *, iface: str, ips: list[str], out: Path, gated: bool = False, **_: Any) -> None:
            super().__init__(log, gated)
            self.iface, self.ips, self.out = iface, list(ips), out

    class Load(FakeProc):
        what = "load"

        def __init__(self, tb: Any, *, log: Path, host: str, gated: bool = False, **_: Any) -> None:
            super().__init__(calls_, gated)
            self.log = self.out = log
            self.host, self.stdout_log = host, log.with_name(log.name + ".stdout")

        def adopt(self, log: Path, run_id: str) -> None:
            self.log = self.out = log
            self.calls.append((self.what, "adopt", run_id))

        def stop_sending(self) -> None:
            self.calls.append((self.what, "stop sending"))

    monkeypatch.setattr(recording, "Probe", Probe)
    monkeypatch.setattr(recording, "ArpWatch", ArpWatch)
    monkeypatch.setattr(recording, "Load", Load)
    monkeypatch.setattr(recording, "Nemesis", lambda *a, **k: SimpleNamespace(heal_all=lambda: None))
    monkeypatch.setattr(recording, "ClusterPoller", lambda *a, **k: SimpleNamespace(
        start=lambda: log.append(("poller", "start")), stop=lambda: log.append(("poller", "stop"))))
    monkeypatch.setattr(recording, "LogAudit", lambda tb: SimpleNamespace(mark=lambda: log.append(("logs", "mark"))))
    monkeypatch.setattr(recording, "testbed_tails", lambda tb: [])
    return log


class Rec(Recording):
    def __init__(self) -> None:
        self.testbed = self.driver = SimpleNamespace(poll_interval=0.25)  # type: ignore[assignment]
        self.load, self.users, self.spawn_ahead = True, 10, True
        self.log = lambda _: None


def _case(tmp_path: Path) -> CaseRun:
    return CaseRun(SimpleNamespace(id="c"), tmp_path, Steps(), t_start=time.monotonic(),  # type: ignore[arg-type]
                   timeline=Timeline(meta={}))


def test_starting_the_recording_only_opens_the_gates_of_what_was_spawned_before_the_reset(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    rec, c = Rec(), _case(tmp_path)
    rec._prespawn(c, base=BASE, network=NET, service_ip=VIP)
    assert calls == [("probe", "spawn", True), ("arp", "spawn", True), ("load", "spawn", True)]
    early = (*c.early, c.load)
    calls.clear()
    rec._start_recording(c, base=BASE, network=NET, service_ip=VIP)
    assert not [x for x in calls if x[1] in ("spawn", "stop")], calls
    assert (c.probe, c.arp, c.load) == early and c.early == []
    opened = [i for i, x in enumerate(calls) if x[1] == "open gate"]
    ready = [i for i, x in enumerate(calls) if x[1] == "ready"]
    assert len(opened) == len(ready) == 3
    # the recording starts where it always did: poller and log mark, then the gates, then each seen working
    assert calls.index(("poller", "start")) < opened[0] and calls.index(("logs", "mark")) < opened[0]
    assert max(opened) < min(ready)


def test_a_recorder_prespawned_for_another_network_is_stopped_and_replaced(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    rec, c = Rec(), _case(tmp_path)
    rec._prespawn(c, base=BASE, network=NET, service_ip=VIP)
    probe = next(p for p in c.early if p.what == "probe")  # type: ignore[attr-defined]
    calls.clear()
    rec._start_recording(c, base=BASE, network="standby", service_ip=VIP)
    assert ("arp", "stop") in calls and ("arp", "spawn", False) in calls  # the case's network, not the first group's
    assert c.arp is not None and c.arp.iface == "standby"
    assert c.probe is probe and ("probe", "spawn", False) not in calls


def test_what_was_prespawned_into_a_client_namespace_the_reset_rebuilt_is_replaced(
        calls: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rec, c = Rec(), _case(tmp_path)
    rec._prespawn(c, base=BASE, network=NET, service_ip=VIP)
    monkeypatch.setattr(f"{__name__}.STALE", {"probe", "arp", "load"})
    calls.clear()
    rec._start_recording(c, base=BASE, network=NET, service_ip=VIP)
    for what in ("probe", "arp", "load"):
        assert calls.index((what, "stop")) < calls.index((what, "spawn", False)), calls


def test_the_next_cases_locust_is_spawned_ahead_and_given_that_case(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    rec = Rec()
    first = _case(tmp_path / "a")
    rec._prespawn(first, base=BASE, network=NET, service_ip=VIP)
    calls.clear()
    rec._spawn_ahead(first)  # once the first case is timed
    assert calls == [("load", "spawn", True)]
    second = _case(tmp_path / "b")
    calls.clear()
    rec._prespawn(second, base=BASE, network=NET, service_ip=VIP)
    assert ("load", "adopt", "b") in calls and ("load", "spawn", True) not in calls  # no second locust
    assert second.load is not None and second.load.log == tmp_path / "b" / "load.jsonl"
    rec._spawn_ahead(second)
    calls.clear()
    rec.close()  # the session ends: the one spawned for a third case is stopped
    assert calls == [("load", "stop")] and rec._ahead is None


def test_no_locust_is_spawned_ahead_for_an_owner_that_does_not_close_its_runner(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    """`Runner(tb, dir).run(case)` once, as the live tests do: nothing may outlive the case."""
    rec = Rec()
    rec.spawn_ahead = False
    first = _case(tmp_path / "a")
    rec._prespawn(first, base=BASE, network=NET, service_ip=VIP)
    calls.clear()
    rec._spawn_ahead(first)
    assert calls == [] and rec._ahead is None


def test_a_locust_spawned_ahead_for_another_service_is_stopped_not_given_the_case(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    rec = Rec()
    first = _case(tmp_path / "a")
    rec._prespawn(first, base=BASE, network=NET, service_ip=VIP)
    rec._spawn_ahead(first)
    calls.clear()
    rec._prespawn(_case(tmp_path / "b"), base="http://10.77.1.101:8080", network=NET, service_ip="10.77.1.101")
    assert ("load", "stop") in calls and ("load", "spawn", True) in calls
    assert not [x for x in calls if x[1] == "adopt"]


def test_the_wind_down_stops_recorders_that_were_spawned_but_never_started(
        calls: list[tuple[Any, ...]], tmp_path: Path) -> None:
    rec, c = Rec(), _case(tmp_path)
    rec._prespawn(c, base=BASE, network=NET, service_ip=VIP)  # then the reset failed: no recording
    calls.clear()
    rec._wind_down(c)
    assert {("probe", "stop"), ("arp", "stop"), ("load", "stop")} <= set(calls) and c.early == []
    assert all(s.ok for s in c.steps.done)


# -- the read-back of the writes ---------------------------------------------------------------------------


def _reader(calls: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
            release: threading.Event) -> tuple[Runner, CaseRun]:
    """A runner whose read-back (`verify`) logs what had been done to the recorders when it began."""
    rec, c = Rec(), _case(tmp_path)
    rec._prespawn(c, base=BASE, network=NET, service_ip=VIP)
    rec._start_recording(c, base=BASE, network=NET, service_ip=VIP)
    calls.clear()
    r = Runner.__new__(Runner)
    r.testbed, r.log = SimpleNamespace(), lambda _: None  # type: ignore[assignment]

    def verify(tb: Any, log: Path, url: str, **kw: Any) -> Path:
        calls.append(("verify", "start"))
        assert release.wait(10)
        calls.append(("verify", "end"))
        return log

    monkeypatch.setattr(runner_mod, "verify", verify)
    monkeypatch.setattr(r, "_wait_probe_ok", lambda *a, **k: calls.append(("probe", "answered")))
    monkeypatch.setattr(r, "_forget_step", lambda c, group: calls.append(("keys", "forget")))
    return r, c


def test_after_a_good_recovery_the_read_back_runs_beside_the_recorders_stop(
        calls: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    r, c = _reader(calls, tmp_path, monkeypatch, release)
    with c.steps("heal"), c.steps("operator recovery"):
        pass
    r._start_read_back(c, BASE, "app")  # returns while the read-back still reads
    for _ in range(1000):
        if ("verify", "start") in calls:
            break
        time.sleep(0.01)
    assert ("verify", "start") in calls and ("verify", "end") not in calls
    begun = calls.index(("verify", "start"))
    # locust's users stopped first (every acknowledgement logged), every recorder told to stop at once
    assert {("load", "terminate"), ("probe", "terminate"), ("arp", "terminate"), ("load", "stop sending")} \
        <= set(calls[:begun])
    assert ("probe", "answered") not in calls  # a good recovery needs no probe answer first
    release.set()
    r._join_beside(c)
    assert calls.index(("verify", "end")) < calls.index(("keys", "forget"))  # nothing deleted before it is read
    assert c.steps.get("verify writes") is not None and c.steps.get("verify writes").ok  # type: ignore[union-attr]


def test_after_a_failed_recovery_the_read_back_asks_the_probe_before_the_recorders_stop(
        calls: list[tuple[Any, ...]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = threading.Event()
    release.set()
    r, c = _reader(calls, tmp_path, monkeypatch, release)
    c.steps.fail("operator recovery", "the cluster did not settle")
    r._start_read_back(c, BASE, "app")
    assert ("verify", "end") in calls  # done before it returned: in line, as it always was
    assert calls.index(("probe", "answered")) < calls.index(("verify", "start"))
    assert ("probe", "terminate") not in calls and ("arp", "terminate") not in calls
