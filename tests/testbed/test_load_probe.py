"""Load, probe, ARP watch and write verification against the real embedded cluster during a planned move."""

import time
from pathlib import Path

import pytest

from harness.arpwatch import ArpWatch
from harness.drivers.pacemaker import PacemakerDriver
from harness.load import Load, verify
from harness.probe import Probe, transitions
from harness.testbed.base import Testbed
from harness.timeline import ARP_GRATUITOUS, PROBE_NODE_CHANGED, load_requests

pytestmark = [pytest.mark.testbed, pytest.mark.timeout(300)]


def mac_of(testbed: Testbed, node: str, iface: str) -> str:
    return testbed.node(node).run(["cat", f"/sys/class/net/{iface}/address"], timeout=5).stdout.strip()


def test_move_under_load_is_seen_by_probe_load_and_arpwatch(testbed: Testbed, cluster: PacemakerDriver,
                                                             tmp_path: Path) -> None:
    g = testbed.topology.group("app")
    home, other = g.nodes[0], g.nodes[1]
    assert cluster.state().group_node(g.name) == home  # type: ignore[union-attr]
    base = f"http://{g.service_ip}:{g.application.port}"
    other_mac = mac_of(testbed, other, g.network)
    log = tmp_path / "load.jsonl"
    probe = Probe(testbed, url=f"{base}/health", out=tmp_path / "probe.jsonl")
    arp = ArpWatch(testbed, iface=g.network, ips=[str(g.service_ip)], out=tmp_path / "arp.jsonl")
    with arp, probe, Load(testbed, log=log, host=base, users=5, run_id="moveit") as load:
        time.sleep(2)
        t_move = time.monotonic()
        # held on `other` (not move_group, which clears the move at once, and the cascading group
        # would leave `other` again before the load's users, 2 s timeouts, are back)
        with cluster.moved_to(g.name, other, timeout=60):
            t_there = time.monotonic()
            time.sleep(5)  # load and probe on the other node
        cluster.wait_settled(timeout=90)  # back home (cascading)
        time.sleep(2)
        assert load.running() and probe.running() and arp.running()
    samples = probe.samples()
    assert len(samples) > 100 * 8 * 0.8  # ~100 Hz for ≥ 9 s, allowing for a busy machine
    nodes_seen = [s.node for s in samples if s.ok]
    assert nodes_seen[0] == home and other in nodes_seen and nodes_seen[-1] == home
    changes = [(e.data["from"], e.data["to"]) for e in transitions(samples) if e.kind == PROBE_NODE_CHANGED]
    assert changes[0] == (home, other) and (other, home) in changes

    reqs = load.requests()
    puts = [r for r in reqs if r.kind == "put" and r.ok]
    assert any(r.mono < t_move and r.node == home for r in puts), "no acknowledged write before the move"
    assert any(r.mono > t_there and r.node == other for r in puts), "no acknowledged write on the other node"
    assert all(r.key and r.key.startswith("moveit-") for r in puts)

    verify(testbed, log, base)
    checked = [r for r in load_requests(log) if r.kind == "verify"]
    assert len(checked) == len({r.key for r in puts})
    assert [r for r in checked if not r.ok] == []  # every acknowledged write is readable after recovery

    garps = [e for e in arp.events() if e.kind == ARP_GRATUITOUS and e.mono > t_move]
    assert garps, "no gratuitous ARP for the service IP after the move"
    assert garps[0].data == {"ip": str(g.service_ip), "mac": other_mac}
