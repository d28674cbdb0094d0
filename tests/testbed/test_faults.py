"""Every fault on the embedded testbed: its effect is real, and heal restores the pre-fault state."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from harness.drivers.pacemaker import PacemakerDriver
from harness.faults import Nemesis
from harness.testbed import nfqueue
from harness.faults.base import FaultNotApplicable
from harness.faults.disk import space_on
from harness.testbed import disk, network, wire
from harness.testbed.local import LocalTestbed
from harness.wait import wait_until

pytestmark = pytest.mark.testbed


@pytest.fixture
def nemesis(testbed: LocalTestbed, cluster: PacemakerDriver) -> Iterator[Nemesis]:
    """A nemesis on a whole cluster; afterwards nothing of the fault may remain, and the cluster is whole again."""
    n = Nemesis(testbed)
    yield n
    n.heal_all()
    assert n.journal.entries() == [], "the journal must be empty after heal"
    assert wire.filters(testbed.layout) == [], "no filter table may remain on the switch"
    testbed.up()  # power fenced nodes on, clean failed actions, wait until settled
    # one loop device per running node and disk; none for a powered-off node (its went with its dead
    # namespace's mount). A node may be off here: a fence owed from the case can land after up() returned.
    wait_until(lambda: loops_per_node(testbed) == {n: len(testbed.topology.disks) if testbed.running(n) else 0
                                                   for n in testbed.topology.node_names},
               timeout=15, what="one loop device per running node and disk",
               describe=lambda: f"loop devices per node: {loops_per_node(testbed)}")


def loops_per_node(tb: LocalTestbed) -> dict[str, int]:
    return {n: sum(len(disk.node_loops(tb.layout, d.name, n)) for d in tb.topology.disks)
            for n in tb.topology.node_names}


def links(tb: LocalTestbed, node: str) -> dict[str, str]:
    return network.links(f"/proc/{tb.node(node).target()}/ns/net")  # type: ignore[attr-defined]


def can_ping(tb: LocalTestbed, src: str, dst_ip: str) -> bool:
    t = tb.client() if src == "client" else tb.node(src)
    # a node restarted by an earlier test has new MACs: resolve afresh rather than trust the cache
    t.run(["ip", "neigh", "flush", "to", dst_ip], timeout=10, check=False)
    return t.run(["ping", "-c", "1", "-W", "1", dst_ip], timeout=10, check=False).ok


def reachable_again(tb: LocalTestbed, src: str, dst_ip: str) -> bool:
    """After a heal, neighbour entries that failed during the fault take a moment to recover."""
    return bool(wait_until(lambda: can_ping(tb, src, dst_ip), timeout=15, what=f"{src} reaching {dst_ip}"))


def ip(tb: LocalTestbed, node: str, net: str) -> str:
    return str(tb.topology.address(node, net))


def pidof(tb: LocalTestbed, node: str, comm: str) -> list[str]:
    return tb.node(node).run(["pidof", comm], timeout=10, check=False).stdout.split()


def mnt(tb: LocalTestbed) -> str:
    return str(tb.layout.mountpoint("app"))


# -- node ---------------------------------------------------------------------------------------

def test_node_power_off_kills_every_process_and_heal_powers_it_on(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("node_power_off", node="node3"):
        assert not testbed.running("node3")
        assert not testbed.layout.node_cgroup("node3").joinpath("cgroup.procs").read_text().strip()
        # its cables died with it, at once: a namespace the kernel frees later must not answer ARP meanwhile
        states = testbed.adapter_states()
        assert [states[("node3", n.name)] for n in testbed.topology.networks] == ["absent", "absent"]
        # no silent no-op: a fault on the powered-off node is refused before it is journaled
        with pytest.raises(FaultNotApplicable, match="node3 is powered off: its cable cannot be pulled"):
            nemesis.start("adapter_down", node="node3", network="service")
        assert [e.fault for e in nemesis.journal.entries()] == ["node_power_off"]
        # its view of the shared disk was cut: whatever it had not flushed is gone, and its link with it
        views = disk.node_views(testbed.layout, "shared", "node3")
        assert all(v["state"] == "cut" for v in views.values()), views
        assert not testbed.layout.node_disk_link("node3", "shared").exists()
    assert testbed.running("node3")
    # powered on again: a fresh view on a loop device of its own, which the node sees at the Filesystem's path
    views = disk.node_views(testbed.layout, "shared", "node3")
    assert [v["state"] for v in views.values()].count("on") == 1, views
    inside = testbed.node("node3").run(["readlink", "-f", str(testbed.layout.disk_link("shared"))], timeout=10)
    assert inside.stdout.strip() == str(testbed.layout.node_disk_link("node3", "shared").resolve())
    wait_until(lambda: pidof(testbed, "node3", "corosync"), timeout=30, what="corosync in the powered-on node3")


def test_node_stop_stops_the_stack_but_not_the_node(testbed: LocalTestbed, cluster: PacemakerDriver,
                                                    nemesis: Nemesis) -> None:
    with nemesis.inject("node_stop", node="node1"):
        assert testbed.running("node1")
        assert pidof(testbed, "node1", "pacemakerd") == [] and pidof(testbed, "node1", "corosync") == []
        s = cluster.wait_until(lambda s: "node1" in s.offline and s.group_node("app") == "node2", timeout=30,
                               what="takeover by node2")
        assert s.group_node("app") == "node2"
    wait_until(lambda: pidof(testbed, "node1", "pacemakerd"), timeout=30, what="pacemakerd back on node1")


def test_node_hang_freezes_the_node_and_heal_thaws_or_powers_it_on(testbed: LocalTestbed,
                                                                   nemesis: Nemesis) -> None:
    with nemesis.inject("node_hang", node="node3"):
        assert testbed.freezer_state("node3") == "FROZEN"
        # the kernel still answers for a frozen node (the dead-man-switch case)
        assert can_ping(testbed, "node1", ip(testbed, "node3", "service"))
    assert not testbed.frozen("node3") and testbed.running("node3")


def test_cpu_overload_runs_stress_ng_in_the_node_and_heal_stops_it(testbed: LocalTestbed,
                                                                    nemesis: Nemesis) -> None:
    with nemesis.inject("cpu_overload", node="node2", rate=0.2):
        assert pidof(testbed, "node2", "stress-ng")
    assert pidof(testbed, "node2", "stress-ng") == []


# -- network ------------------------------------------------------------------------------------

def test_adapter_down_pulls_one_cable_only(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    before = links(testbed, "node1")
    with nemesis.inject("adapter_down", node="node1", network="service"):
        now = links(testbed, "node1")
        assert now["service"] != "up" and now["standby"] == "up"
        assert wire.carrier(testbed.layout, "node1", "service") is False  # what verify() saw
        assert wire.carrier(testbed.layout, "node1", "standby") is True
        assert not can_ping(testbed, "node2", ip(testbed, "node1", "service"))
        assert can_ping(testbed, "node2", ip(testbed, "node1", "standby"))
    assert links(testbed, "node1") == before
    assert reachable_again(testbed, "node2", ip(testbed, "node1", "service"))


def test_network_down_local_cuts_one_node_off_one_network(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("network_down_local", node="node2", network="standby"):
        assert links(testbed, "node2")["standby"] != "up"
        assert not can_ping(testbed, "node1", ip(testbed, "node2", "standby"))
        assert can_ping(testbed, "node1", ip(testbed, "node3", "standby"))
    assert reachable_again(testbed, "node1", ip(testbed, "node2", "standby"))


def test_network_down_global_stops_a_whole_network(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("network_down_global", network="standby"):
        assert wire.bridge_up(testbed.layout, "standby") is False and wire.bridge_up(testbed.layout, "service")
        assert not can_ping(testbed, "node1", ip(testbed, "node2", "standby"))
        assert not can_ping(testbed, "node3", ip(testbed, "node1", "standby"))
        assert can_ping(testbed, "node1", ip(testbed, "node2", "service"))  # the other network lives
    assert reachable_again(testbed, "node1", ip(testbed, "node2", "standby"))


def test_partition_splits_corosync_membership(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("partition", nodes=("node3",)):
        assert not can_ping(testbed, "node3", ip(testbed, "node1", "standby"))
        assert can_ping(testbed, "node1", ip(testbed, "node2", "standby"))
        # corosync on the majority side soon sees only its side (the minority is then fenced)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            members = testbed.node("node1").run(["corosync-quorumtool", "-l"], timeout=10).stdout
            if "node3" not in members:
                break
            time.sleep(0.2)
        assert "node3" not in members and "node2" in members
        (table,) = wire.filters(testbed.layout)
        assert len(wire.filter_rules(testbed.layout, table) or []) == 2
    assert wire.filters(testbed.layout) == []


def test_packet_loss_drops_the_declared_share(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    target = ip(testbed, "node2", "service")
    assert can_ping(testbed, "client", target)  # resolve ARP first: lossy ARP would dominate the figure
    with nemesis.inject("packet_loss", node="node2", network="service", rate=0.5):
        r = testbed.client().run(["ping", "-q", "-c", "100", "-i", "0.02", "-W", "1", target], timeout=60,
                                 check=False)
    # each direction loses half: about 75 % of round trips; 0 % or 100 % would mean no effect or no randomness
    loss = float(r.stdout.split("% packet loss")[0].split()[-1])
    assert 30 <= loss <= 98, r.stdout
    assert reachable_again(testbed, "client", target)


def test_heartbeat_loss_leaves_client_traffic_flowing(testbed: LocalTestbed, cluster: PacemakerDriver,
                                                      nemesis: Nemesis) -> None:
    with nemesis.inject("heartbeat_loss", node="node3"):
        assert can_ping(testbed, "client", ip(testbed, "node3", "service"))
        cluster.wait_until(lambda s: "node3" in s.offline and s.seen_from != "node3", timeout=30,
                           what="node3 lost by the others")


def rtt_ms(tb: LocalTestbed, dst: str) -> float:
    r = tb.client().run(["ping", "-q", "-c", "5", "-i", "0.05", "-W", "3", dst], timeout=30)
    return float(r.stdout.split("min/avg/max/mdev = ")[1].split("/")[1])


def test_packet_delay_adds_the_delay_each_way(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    target = ip(testbed, "node2", "service")
    before = rtt_ms(testbed, target)
    with nemesis.inject("packet_delay", node="node2", network="service", delay_ms=100) as inj:
        during = rtt_ms(testbed, target)
        assert nfqueue.missing(testbed.layout.net_ns, inj.entry.undo["table"]) == []
        assert nfqueue.worker_alive(inj.entry.undo["pid"])
    assert nfqueue.tables(testbed.layout.net_ns, inj.entry.undo["table"]) == []
    assert not nfqueue.worker_alive(inj.entry.undo["pid"])
    after = rtt_ms(testbed, target)
    # the port is matched in both directions: a round trip crosses the delay twice
    assert 150 < during - before < 1000, (before, during)
    assert after < during - 150


def test_packet_corrupt_breaks_packets_and_heal_repairs(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    target = ip(testbed, "node2", "service")
    assert can_ping(testbed, "client", target)
    with nemesis.inject("packet_corrupt", node="node2", network="service", rate=1.0):
        r = testbed.client().run(["ping", "-q", "-c", "10", "-i", "0.05", "-W", "1", target], timeout=30,
                                 check=False)
        assert " 0 received" in r.stdout, r.stdout  # every checksum is broken: nothing gets through
    assert reachable_again(testbed, "client", target)


# -- disk ---------------------------------------------------------------------------------------

def test_disk_pull_makes_writes_fail_and_heal_restores_the_disk(testbed: LocalTestbed,
                                                                nemesis: Nemesis) -> None:
    with nemesis.inject("disk_pull", disk="shared"):
        assert "Input/output error" in (testbed.disk_read_error("shared") or "")  # what verify() saw
        r = testbed.node("node1").run(["dd", "if=/dev/zero", f"of={mnt(testbed)}/pulled", "bs=4k", "count=1",
                                       "conv=fsync"], timeout=30, check=False)
        assert r.failed and ("Input/output error" in r.stderr or "Read-only file system" in r.stderr), r.stderr
    assert testbed.layout.disk_fuse_dir("shared").joinpath("control").read_text().strip() == "ok"
    assert testbed.disk_read_error("shared") is None


def test_disk_full_fills_the_filesystem_and_heal_frees_it(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("disk_full", disk="shared") as inj:
        space = space_on(testbed, "node1", mnt(testbed))
        assert space is not None and space.usable < 0.01 * space.total  # what verify() saw
        r = testbed.node("node1").run(["dd", "if=/dev/zero", f"of={mnt(testbed)}/full", "bs=64k", "count=4",
                                       "conv=fsync"], timeout=30, check=False)
        assert r.failed and "No space left" in r.stderr, r.stderr
    assert not testbed.node("node1").run(["test", "-e", inj.entry.undo["file"]], timeout=10, check=False).ok
    testbed.node("node1").run(["rm", "-f", f"{mnt(testbed)}/full"], timeout=10)
    r = testbed.node("node1").run(["dd", "if=/dev/zero", f"of={mnt(testbed)}/after", "bs=64k", "count=4",
                                   "conv=fsync"], timeout=30, check=False)
    assert r.ok, r.stderr
    testbed.node("node1").run(["rm", "-f", f"{mnt(testbed)}/after"], timeout=10)


# -- application --------------------------------------------------------------------------------

def app_pid(tb: LocalTestbed, node: str) -> str:
    return tb.node(node).run(["cat", "/run/fallover-app-app/app-app.pid"], timeout=10).stdout.split()[0]


def test_app_kill_kills_the_application_process(testbed: LocalTestbed, cluster: PacemakerDriver,
                                                nemesis: Nemesis) -> None:
    pid = app_pid(testbed, "node1")
    with nemesis.inject("app_kill", group="app"):
        assert not testbed.node("node1").run(["kill", "-0", pid], timeout=10, check=False).ok
    # nothing to heal on the node: the cluster's monitor notices and recovers the application
    cluster.wait_until(lambda s: any(f.resource == "app-app" for f in s.failed_actions), timeout=30,
                       what="the monitor to notice the dead application")


def test_app_hang_stops_the_application_and_heal_continues_it(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    pid = app_pid(testbed, "node1")

    def state() -> str:
        stat = testbed.node("node1").run(["cat", f"/proc/{pid}/stat"], timeout=10, check=False).stdout
        return stat.rsplit(")", 1)[-1].split()[0] if stat else "gone"

    with nemesis.inject("app_hang", group="app"):
        assert state() == "T"
    assert state() in ("S", "R", "gone")  # continued (or already restarted by the cluster)


def test_app_start_fail_keeps_the_group_off_the_chosen_node(testbed: LocalTestbed, cluster: PacemakerDriver,
                                                            nemesis: Nemesis) -> None:
    with nemesis.inject("app_start_fail", group="app", node="node2"):
        testbed.node("node1").run(["crm_resource", "--resource", "app", "--move", "--node", "node2"], timeout=30)
        try:
            s = cluster.wait_until(lambda s: any(f.resource == "app-app" and f.node == "node2" and f.task == "start"
                                                 for f in s.failed_actions) and s.group_node("app") is not None,
                                   timeout=60, what="start failure on node2, then the group started elsewhere")
            assert s.group_node("app") != "node2", s.summary()
        finally:
            cluster.clear_move("app")
    assert not (testbed.layout.state / "faults" / "app_start_fail.app").exists()


# -- cluster software ---------------------------------------------------------------------------

def test_corosync_kill(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("corosync_kill", node="node2"):
        assert not testbed.running("node2") or pidof(testbed, "node2", "corosync") == []
    wait_until(lambda: pidof(testbed, "node2", "corosync"), timeout=30, what="corosync back on node2")


def test_up_restarts_a_stack_that_stopped_on_a_running_node(testbed: LocalTestbed, cluster: PacemakerDriver) -> None:
    """corosync up, pacemaker gone, the node never fenced: its peers see it offline until someone starts the stack
    again (CI 2026-12-01: five tests in a row waited 90 s each for such a node2). `up` is that someone."""
    testbed.node("node2").run("kill -TERM $(pidof pacemakerd)", timeout=10)
    wait_until(lambda: not pidof(testbed, "node2", "pacemakerd"), timeout=60, what="pacemaker stopped on node2")
    assert pidof(testbed, "node2", "corosync") and testbed.running("node2")
    testbed.up()
    s = cluster.state()
    assert s is not None and "node2" in s.online and pidof(testbed, "node2", "pacemaker-controld")


def test_pacemaker_kill(testbed: LocalTestbed, nemesis: Nemesis) -> None:
    with nemesis.inject("pacemaker_kill", node="node2"):
        assert not testbed.running("node2") or pidof(testbed, "node2", "pacemakerd") == []
    wait_until(lambda: pidof(testbed, "node2", "pacemakerd"), timeout=30, what="pacemakerd back on node2")
