"""The keepalived testbed for real: VIP on the home node, the app answers through it, a dead master's VIP moves, and
the application keeps its data where it ran (no shared disk); `down` leaves nothing."""

from __future__ import annotations

import time
import uuid
from pathlib import Path

import pytest

from harness.drivers import open_driver
from harness.drivers.keepalived import KeepalivedDriver
from harness.status import service_answer
from harness.testbed.local import LocalTestbed
from harness.topology import load_topology

pytestmark = pytest.mark.testbed

TOPOLOGY = Path(__file__).resolve().parents[2] / "testbeds" / "local-keepalived.yaml"


def _until(what: str, timeout: float, pred):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while (value := pred()) in (None, False):
        assert time.monotonic() < deadline, f"timed out after {timeout}s waiting for {what}"
        time.sleep(0.05)
    return value


def test_keepalived_serves_from_home_falls_over_on_power_off_fails_back_and_leaves_nothing() -> None:
    tb = LocalTestbed(load_topology(TOPOLOGY))
    tb.down()
    try:
        tb.up()
        driver = open_driver(tb)
        assert isinstance(driver, KeepalivedDriver)
        g = tb.topology.groups[0]
        s = driver.state()
        assert s is not None and s.online == ["node1", "node2", "node3"], s
        assert s.group_node(g.name) == "node1" and s.groups[g.name].resources[0].nodes == ("node1",), s.summary()
        assert service_answer(tb, g.name, timeout=3) == "node1"
        key = f"ka-{uuid.uuid4().hex[:8]}"
        tb.client().run(["curl", "-sf", "-m", "5", "-X", "PUT", "--data", "v1",
                         f"http://{g.service_ip}:{g.application.port}/kv/{key}"], timeout=10)

        t0 = time.monotonic()
        tb.power_off("node1")
        _until("node2 to answer", 15, lambda: service_answer(tb, g.name, timeout=0.5) == "node2")
        took = time.monotonic() - t0
        assert took < 5, f"keepalived took {took:.2f} s to move the VIP"
        s = driver.wait_until(lambda s: s.group_node(g.name) == "node2", timeout=10, what="app on node2")
        assert "node1" in s.offline
        # no shared disk: the write acknowledged on node1 stayed on node1's own disk
        r = tb.client().run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-m", "5",
                             f"http://{g.service_ip}:{g.application.port}/kv/{key}"], timeout=10, check=False)
        assert r.stdout == "404"
        log = tb.layout.notification_log.read_text()
        assert '"desc": "lost"' in log and '"node": "node1"' in log, log[-2000:]

        tb.up()  # powers node1 on; cascading: the group goes home
        s = driver.wait_settled(timeout=60)
        assert s.group_node(g.name) == "node1"
        assert service_answer(tb, g.name, timeout=3) == "node1"
    finally:
        tb.down()
    assert tb.leftovers() == []
