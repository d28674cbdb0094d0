"""Unit tests for the pure parts of the client-side instruments: probe transitions, notification parsing, tails."""

import json
import socket
from pathlib import Path

import pytest

from harness.arpwatch import ARP_HEAD, classify
from harness.arpwatch import events as arp_events
from harness.notifications import FenceTail, NotificationTail, fence_event, notification_event, raised_wall
from harness.probe import load_samples, outages, parse_response, transitions
from harness.timeline import (ARP_GRATUITOUS, ARP_REPLY, FENCED, NOTIFICATION, PROBE_DOWN, PROBE_NODE_CHANGED,
                              PROBE_UP, ProbeSample, Request)
from harness.verify import acknowledged


def s(mono: float, ok: bool, node: str | None = None, error: str | None = None) -> ProbeSample:
    return ProbeSample(mono=mono, wall=1000 + mono, ok=ok, latency_s=0.001, node=node if ok else None,
                       error=None if ok else (error or "connect: ECONNREFUSED"))


# -- probe ---------------------------------------------------------------------------------------

def test_failover_gives_down_up_and_node_change():
    samples = [s(0.00, True, "node1"), s(0.01, True, "node1"), s(0.02, False, error="timeout"),
               s(0.03, False), s(0.04, True, "node2"), s(0.05, True, "node2")]
    ev = transitions(samples)
    assert [e.kind for e in ev] == [PROBE_DOWN, PROBE_UP, PROBE_NODE_CHANGED]
    down, up, changed = ev
    assert (down.mono, down.node, down.data["error"]) == (0.02, "node1", "timeout")
    assert (up.mono, up.node) == (0.04, "node2")
    assert up.data["failed"] == 2 and abs(up.data["outage_s"] - 0.02) < 1e-9
    assert changed.data == {"from": "node1", "to": "node2"} and changed.wall == 1000.04


def test_node_change_without_outage_and_unsorted_input():
    ev = transitions([s(0.02, True, "node2"), s(0.00, True, "node1"), s(0.01, True, "node1")])
    assert [(e.kind, e.data) for e in ev] == [(PROBE_NODE_CHANGED, {"from": "node1", "to": "node2"})]


def test_failures_before_first_success_are_no_transition():
    assert transitions([s(0.0, False), s(0.01, False), s(0.02, True, "node1")]) == []
    assert transitions([]) == []


def test_several_outages_and_one_still_open():
    samples = [s(0, True, "n1"), s(1, False), s(2, True, "n1"), s(3, False), s(4, False)]
    assert [e.kind for e in transitions(samples)] == [PROBE_DOWN, PROBE_UP, PROBE_DOWN]
    assert outages(samples) == [(1, 2, 1), (3, None, 2)]


def test_parse_response():
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\nX-Fallover-Node: node3\r\n\r\nnode3\n"
    assert parse_response(ok) == (200, "node3", True)
    assert parse_response(ok[:-3]) is None  # body incomplete
    assert parse_response(b"HTTP/1.1 200 OK\r\nContent-Len") is None
    assert parse_response(b"HTTP/1.0 503 x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n") == (503, None, False)
    assert parse_response(b"garbage\r\n\r\n") == (0, None, False)


def test_load_samples_skips_torn_line(tmp_path: Path):
    p = tmp_path / "probe.jsonl"
    p.write_text(json.dumps({"mono": 2.0, "wall": 3.0, "ok": True, "latency_s": 0.001, "node": "n1",
                             "error": None}) + "\n" + '{"mono": 1.0, "wall"')
    assert [x.mono for x in load_samples(p)] == [2.0]


# -- notifications and fencing ---------------------------------------------------------------------

ALERT = {"desc": "ok", "exec_time": "151", "from": "node1", "interval": "2000", "kind": "resource",
         "node": "node2", "rc": "0", "rsc": "app-ip", "status": "0", "target_rc": "0", "task": "start",
         "timestamp": "2026-11-25T15:12:27.540742+0000", "version": "2.1.5", "wall": 1000.5}


def test_notification_event_mono_from_wall():
    e = notification_event(ALERT, (500.0, 1001.0))  # read 0.5 s after the agent wrote it
    assert (e.kind, e.node, e.wall, e.mono) == (NOTIFICATION, "node2", 1000.5, 499.5)
    assert e.data["rsc"] == "app-ip" and e.data["task"] == "start" and e.data["kind"] == "resource"
    assert e.data["rc"] == 0 and e.data["interval"] == 2000 and e.data["version"] == "2.1.5"
    assert "wall" not in e.data


def test_an_alert_says_when_pacemaker_raised_it_on_the_harness_clock():
    """The wait for the agent is read on the node's clock alone (a TCG guest's clock drifts from the host's)."""
    vm = dict(ALERT, wall=2000.0, guest_wall=1500.0, timestamp_epoch=1493, timestamp_usec=250000)
    assert raised_wall(vm) == 1993.25
    assert raised_wall(dict(ALERT, timestamp_epoch="1000", timestamp_usec="400000")) == pytest.approx(1000.4)
    assert raised_wall(ALERT) is None  # no Pacemaker stamp
    assert raised_wall(dict(ALERT, timestamp_epoch=5000)) is None  # the agent ran before the event: a clock stepped


def test_node_alert_without_rsc_and_fence_event():
    e = notification_event({"kind": "node", "node": "node3", "desc": "lost", "wall": 10.0}, (5.0, 10.0))
    assert (e.node, e.mono, e.data["desc"]) == ("node3", 5.0, "lost")
    f = fence_event({"wall": 20.0, "done": 20.4, "action": "off", "node": "node1", "outcome": "OK"}, (7.0, 21.0))
    assert (f.kind, f.node, f.mono, f.data) == (FENCED, "node1", 6.0, {"done": 20.4, "action": "off", "outcome": "OK"})


def test_tail_reads_incrementally_and_waits_for_whole_lines(tmp_path: Path):
    log = tmp_path / "notifications.log"
    tail = NotificationTail(log)
    assert tail.poll() == []  # not there yet
    line = json.dumps(ALERT)
    log.write_text(line + "\n" + line[:20])  # second line half-written
    assert len(tail.poll((0.0, 0.0))) == 1 and tail.offset == len(line) + 1
    with open(log, "a") as f:
        f.write(line[20:] + "\nnot json\n")
    second = tail.poll((0.0, 0.0))
    assert len(second) == 1 and second[0].data["rsc"] == "app-ip"
    assert tail.bad == 1 and tail.poll() == []
    log.write_text(line + "\n")  # truncated (a new testbed): start over
    assert len(tail.poll()) == 1


def test_fence_tail(tmp_path: Path):
    log = tmp_path / "fence-events.jsonl"
    log.write_text(json.dumps({"wall": 1.0, "done": 2.0, "action": "reboot", "node": "node2", "outcome": "OK"}) + "\n")
    assert [(e.kind, e.node) for e in FenceTail(log).poll()] == [(FENCED, "node2")]


# -- ARP classification and the load log's acknowledged writes ----------------------------------------

VIP = socket.inet_aton("10.77.1.100")


def frame(oper: int, spa: bytes, tpa: bytes, mac: bytes = b"\x02\x00\x00\x00\x00\x02") -> bytes:
    return b"\xff" * 6 + mac + b"\x08\x06" + ARP_HEAD.pack(1, 0x800, 6, 4, oper, mac, spa, bytes(6), tpa)


def test_classify_arp():
    client = socket.inet_aton("10.77.1.50")
    assert classify(frame(1, VIP, VIP), {VIP}) == (ARP_GRATUITOUS, "10.77.1.100", "02:00:00:00:00:02")
    assert classify(frame(2, VIP, VIP), {VIP})[0] == ARP_GRATUITOUS
    assert classify(frame(2, VIP, client), {VIP})[0] == ARP_REPLY
    assert classify(frame(1, VIP, client), {VIP}) is None  # the owner asking for the client: no claim
    assert classify(frame(2, client, VIP), {VIP}) is None  # not about a watched IP
    assert classify(frame(2, VIP, client)[:30], {VIP}) is None  # truncated


def test_arp_events_map_macs_to_nodes(tmp_path: Path):
    p = tmp_path / "arp.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in [
        {"mono": 1, "wall": 2, "kind": "arpwatch.started", "ip": "10.77.1.50", "mac": "aa"},
        {"mono": 3, "wall": 4, "kind": ARP_GRATUITOUS, "ip": "10.77.1.100", "mac": "bb"}]) + "\n")
    (ev,) = arp_events(p, {"bb": "node2"})
    assert (ev.kind, ev.node, ev.data) == (ARP_GRATUITOUS, "node2", {"ip": "10.77.1.100", "mac": "bb"})


def test_acknowledged_takes_ok_puts_only():
    def r(kind: str, ok: bool, key: str, value: str, mono: float) -> Request:
        return Request(mono=mono, wall=mono, kind=kind, ok=ok, latency_s=0.0, key=key, value=value)
    reqs = [r("put", True, "a", "1", 1), r("put", False, "b", "2", 2), r("get", True, "c", "3", 3),
            r("put", True, "a", "4", 4)]
    assert acknowledged(reqs) == {"a": "4"}


def test_the_probe_asks_at_the_testbeds_pace(tmp_path: Path):
    """An emulated guest's app answered 17 % of 100 Hz probes late and then failed its own monitor: a testbed
    that declares a slower pace gets a probe at that rate and patience (no process is started here)."""
    from harness.probe import Probe
    from harness.testbed.base import Pace

    class Slow:
        pace = Pace(probe_hz=10.0, probe_timeout_s=2.0)

    class Embedded:  # no pace: the embedded testbed's
        pass

    slow = Probe(Slow(), url="http://10.0.0.1/health", out=tmp_path / "p.jsonl")  # type: ignore[arg-type]
    assert slow.argv[slow.argv.index("--hz") + 1] == "10.0" and slow.argv[slow.argv.index("--timeout") + 1] == "2.0"
    assert slow.hz == 10.0
    fast = Probe(Embedded(), url="http://10.0.0.1/health", out=tmp_path / "q.jsonl")  # type: ignore[arg-type]
    assert fast.argv[fast.argv.index("--hz") + 1] == "100.0" and fast.argv[fast.argv.index("--timeout") + 1] == "0.5"


def test_a_nodes_mac_is_read_from_the_adapter_named_after_the_network_or_else_the_one_with_its_address(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """VMs name their adapters eth1, eth2: without the fallback the MAC → node map was empty there, and an
    ARP answer of node1 in the evidence named no node (packet_corrupt-node1-service, 2026-12-01)."""
    import ipaddress
    import subprocess
    from types import SimpleNamespace

    from harness.arpwatch import node_macs
    from harness.result import Result

    def run(argv: list[str], **_: object) -> Result:  # this machine's own shell: its loopback holds 127.0.0.1
        p = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return Result("n", tuple(argv), p.returncode, p.stdout, p.stderr, 0.0)

    lo = open("/sys/class/net/lo/address").read().strip()
    topo = SimpleNamespace(node_names=["node1", "node2"], address=lambda n, net: ipaddress.IPv4Address(
        "127.0.0.1" if n == "node1" else "192.0.2.77"))  # node2 holds no such address here: left out
    tb = SimpleNamespace(topology=topo, running=lambda n: True, node=lambda n: SimpleNamespace(run=run))
    assert node_macs(tb, "no-such-network") == {lo: "node1"}  # type: ignore[arg-type]
    assert node_macs(tb, "lo") == {lo: "node2"}  # an adapter named after the network wins (the last node's)
