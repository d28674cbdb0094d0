"""keepalived configuration from the topology: priorities, preempt by policy, unicast peers, notify, and keepalived accepts it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from harness.testbed import clusterconf, nodes, vrrp
from harness.testbed.layout import Layout
from harness.topology import load_topology

ROOT = Path(__file__).resolve().parents[2]
KEEPALIVED = ROOT / "testbeds" / "local-keepalived.yaml"


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(load_topology(KEEPALIVED), instance="unit", state_root=tmp_path)


def _rotating(layout: Layout) -> Layout:
    t = layout.topology
    g = t.groups[0].model_copy(update={"policy": "rotating"})
    return Layout(t.model_copy(update={"groups": [g]}), instance="unit", state_root=layout.state_root)


def test_the_keepalived_testbed_has_no_disk_and_differs_from_the_default(layout: Layout) -> None:
    default = load_topology(ROOT / "testbeds" / "local.yaml")
    t = layout.topology
    assert t.cluster.stack == "keepalived" and t.groups[0].disk is None and t.disks == []
    assert t.name != default.name
    assert not any(a.subnet.overlaps(b.subnet) for a in t.networks for b in default.networks)


def test_priorities_follow_the_group_order_and_peers_are_the_others(layout: Layout) -> None:
    confs = {n: vrrp.keepalived_conf(layout, n) for n in layout.topology.node_names}
    assert [f"priority {p}" in confs[n] for n, p in (("node1", 250), ("node2", 230), ("node3", 210))] == [True] * 3
    peers = confs["node2"].split("unicast_peer {")[1].split("}")[0].split()
    assert peers == ["10.78.1.11", "10.78.1.13"]
    assert "unicast_src_ip 10.78.1.12" in confs["node2"]
    assert "10.78.1.100/24 dev service" in confs["node1"]
    assert "advert_int 0.2" in confs["node1"] and "vrrp_version 3" in confs["node1"]
    assert len({vrrp.vrid(layout, "app")}) == 1


def test_cascading_preempts_rotating_does_not(layout: Layout) -> None:
    assert "nopreempt" not in vrrp.keepalived_conf(layout, "node1")
    assert "nopreempt" in vrrp.keepalived_conf(_rotating(layout), "node1")
    # nopreempt only works from BACKUP: every node starts there
    assert "state MASTER" not in vrrp.keepalived_conf(layout, "node1")


def test_every_transition_runs_the_notify_script_with_the_group_file(layout: Layout) -> None:
    conf = vrrp.keepalived_conf(layout, "node3")
    gfile = vrrp.group_file(layout, "node3", "app")
    for state in ("MASTER", "BACKUP", "FAULT", "STOP"):
        assert f'notify_{state.lower()} "{layout.agents_dir}/fallover-keepalived notify {state} {gfile}"' in conf
    assert f'script "{layout.agents_dir}/fallover-keepalived check {gfile}"' in conf
    assert 'file "/run/fallover-keepalived/app.failed"' in conf


def test_group_file_gives_the_app_the_pacemaker_resource_names_and_a_node_local_data_dir(layout: Layout) -> None:
    rec = vrrp.group_record(layout, "node2", layout.topology.groups[0])
    env = rec["env"]
    assert env["OCF_RESOURCE_INSTANCE"] == "app-app"  # harness/faults/app.py finds it under this name
    assert env["OCF_RESKEY_state_dir"] == "/run/fallover-app-app"
    assert env["OCF_RESKEY_data_dir"] == str(layout.node_dir("node2") / "data" / "app")
    assert rec["notification_log"] == str(layout.notification_log)
    assert rec["priorities"] == {"node1": 250, "node2": 230, "node3": 210} and rec["preempt"] is True


def test_services_script_starts_keepalived_and_not_the_pacemaker_stack(layout: Layout) -> None:
    script = nodes.services_script(layout)
    assert "keepalived --dont-fork --vrrp" in script and "keepalived/keepalived.conf" in script
    assert "corosync" not in script and "pacemakerd" not in script


def test_peers_are_resolved_again_soon_after_a_link_comes_back(layout: Layout) -> None:
    """Unicast adverts wait for ARP: a failback after a link failure must not wait out the kernel's 1 s retry."""
    script = nodes.services_script(layout)
    assert f"echo {vrrp.NEIGH_RETRANS_MS} >" in script and "/proc/sys/net/ipv4/neigh/*/retrans_time_ms" in script
    assert script.index("retrans_time_ms") < script.index("keepalived --dont-fork")
    assert vrrp.NEIGH_RETRANS_MS * 3 < vrrp.MASTER_DOWN_S * 1000  # well inside the master-down interval


def test_a_lossy_link_or_a_slow_check_does_not_make_a_second_master(layout: Layout) -> None:
    """Every node misses the same number of adverts before it takes over; a killed check alone is no failure."""
    confs = [vrrp.keepalived_conf(layout, n) for n in layout.topology.node_names]
    assert all(f"down_timer_adverts {vrrp.DOWN_TIMER_ADVERTS}" in c for c in confs)
    assert vrrp.DOWN_TIMER_ADVERTS >= 6 and vrrp.MASTER_DOWN_S < layout.topology.sla.max_detection_s
    assert "fall 2" in confs[0] and "rise 1" in confs[0]


def test_prepare_writes_the_files_and_the_data_dir(layout: Layout) -> None:
    vrrp.prepare(layout, "node1")
    assert vrrp.conf_path(layout, "node1").read_text() == vrrp.keepalived_conf(layout, "node1")
    assert json.loads(vrrp.group_file(layout, "node1", "app").read_text())["node"] == "node1"
    assert vrrp.data_dir(layout, "node1", "app").is_dir()


def test_a_pacemaker_group_without_disk_has_no_filesystem_and_a_private_data_dir(tmp_path: Path) -> None:
    t = load_topology(ROOT / "testbeds" / "local.yaml")
    g = t.groups[0].model_copy(update={"disk": None})
    layout = Layout(t.model_copy(update={"groups": [g], "disks": []}), instance="unit", state_root=tmp_path)
    xml = clusterconf.cib_xml(layout, clusterconf.empty_cib())
    assert "Filesystem" not in xml and clusterconf.local_data_dir("app") in xml


@pytest.mark.skipif(shutil.which("keepalived") is None or os.geteuid() != 0,
                    reason="needs keepalived (make setup) and root (a network namespace with the service adapter)")
def test_keepalived_accepts_the_configuration(layout: Layout, tmp_path: Path) -> None:
    path = tmp_path / "keepalived.conf"
    path.write_text(vrrp.keepalived_conf(layout, "node1"))
    layout.agents_dir.mkdir(parents=True)
    shutil.copy(ROOT / "harness/testbed/assets/fallover-keepalived", layout.agents_dir)  # keeps its mode
    # the service adapter exists only inside a node: check in a throwaway namespace that has one
    script = ('ip link add service type veth peer name peer0 && ip link set service up && '
              'keepalived --config-test --use-file "$0"')
    r = subprocess.run(["unshare", "--net", "sh", "-c", script, str(path)], check=False, capture_output=True,
                       text=True, timeout=30)
    assert r.returncode == 0, r.stderr
