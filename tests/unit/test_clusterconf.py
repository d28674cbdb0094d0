"""Generated cluster configuration: corosync.conf matches the topology; the seed CIB is valid."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.faults.daemons import effective_token_ms
from harness.testbed import clusterconf
from harness.testbed.layout import Layout
from harness.topology import DEFAULT_TESTBED, Corosync, load_topology


@pytest.fixture
def layout(tmp_path: Path) -> Layout:
    return Layout(load_topology(DEFAULT_TESTBED), instance="unit", state_root=tmp_path)


def test_corosync_conf_has_two_knet_links_and_the_real_token(layout: Layout) -> None:
    conf = clusterconf.corosync_conf(layout.topology)
    assert "token: 1000" in conf and "token_coefficient: 0" in conf
    assert "linknumber: 1" in conf
    assert "ring0_addr: 10.77.1.12" in conf and "ring1_addr: 10.77.2.12" in conf
    # one key per line inside node blocks (corosync rejects several on one line)
    assert all(line.count(":") <= 1 for line in conf.splitlines())


def test_corosync_options_are_written_over_the_generated_ones_and_the_token_stays_declared(layout: Layout) -> None:
    """A hand-tuned token reaches corosync.conf while the plan's token (effective_token_ms) stays the declared one:
    that difference is what the broken cluster `shorttoken` (tests/data/broken) runs."""
    topo = layout.topology
    cluster = topo.cluster.model_copy(update={"corosync": Corosync(
        totem={"consensus": 3000, "crypto_cipher": "none"}, quorum={"wait_for_all": 1}, hand_tuned_token=200)})
    topo = topo.model_copy(update={"cluster": cluster})
    conf = clusterconf.corosync_conf(topo)
    totem = conf.split("logging {")[0]
    assert "    token: 200\n" in totem and "token: 1000" not in totem
    assert "    consensus: 3000\n" in totem
    assert "    crypto_cipher: none\n" in totem and "aes256" not in totem  # replaced where it was, not twice
    assert totem.count("crypto_cipher") == 1
    assert "quorum {\n    provider: corosync_votequorum\n    wait_for_all: 1\n}" in conf
    assert effective_token_ms(topo) == 1000


def test_seed_cib_passes_crm_verify_and_encodes_the_policy(layout: Layout, tmp_path: Path) -> None:
    xml = clusterconf.cib_xml(layout, clusterconf.empty_cib())
    path = tmp_path / "cib.xml"
    path.write_text(xml)
    assert clusterconf.verify(str(path)) == ""
    root = ET.fromstring(xml)
    scores = {c.get("node"): int(c.get("score", "0")) for c in root.iter("rsc_location")}
    assert scores["node1"] > scores["node2"] > scores["node3"]
    group = root.find(".//group[@id='app']")
    assert group is not None
    assert [p.get("type") for p in group.findall("primitive")] == ["Filesystem", "IPaddr2", "fallover-app"]
    assert group.find("meta_attributes/nvpair[@name='resource-stickiness']") is None
    props = {n.get("name"): n.get("value") for n in root.iter("nvpair")}
    assert props["resource-stickiness"] == "0"  # cascading fails back (rsc_defaults)
    assert props["stonith-enabled"] == "true" and props["dc-deadtime"] == "2s"
    assert root.find(".//primitive[@type='fence_fallover']") is not None
    assert root.find(".//alert[@id='fallover-notify']/recipient") is not None


def test_rotating_group_sticks_harder_than_any_priority(layout: Layout) -> None:
    topo = layout.topology
    g = topo.groups[0].model_copy(update={"policy": "rotating"})
    rot = Layout(topo.model_copy(update={"groups": [g]}), instance="unit", state_root=layout.state_root)
    root = ET.fromstring(clusterconf.cib_xml(rot, clusterconf.empty_cib()))
    stick = root.find(".//group[@id='app']/meta_attributes/nvpair[@name='resource-stickiness']")
    assert stick is not None
    top = max(int(c.get("score", "0")) for c in root.iter("rsc_location"))
    assert int(stick.get("value", "0")) > top


def test_a_leaving_node_stops_its_watchers_after_its_group(layout: Layout) -> None:
    """One-way, optional stop orders: on a one-CPU guest the watchers' stops took the CPU the app's stop needed."""
    root = ET.fromstring(clusterconf.cib_xml(layout, clusterconf.empty_cib()))
    orders = {o.get("then"): o.attrib for o in root.iter("rsc_order") if o.get("first") == "app"}
    assert set(orders) == {"linkmon-service-clone", "reach-service-clone"}
    for o in orders.values():
        assert (o["first-action"], o["then-action"], o["kind"], o["symmetrical"]) == ("stop", "stop", "Optional", "false")
    clones = {c.get("id") for c in root.iter("clone")}
    assert set(orders) <= clones  # the ids name real clones


def _graph_inputs(graph: Path) -> dict[str, set[str]]:
    """Each action of a saved transition graph -> the actions it waits for ("rsc_op_0@node")."""
    def key(el: ET.Element) -> str:
        return f"{el.get('operation_key')}@{el.get('on_node') or ''}"
    out: dict[str, set[str]] = {}
    for syn in ET.parse(graph).getroot().iter("synapse"):
        action_set, inputs = syn.find("action_set"), syn.find("inputs")
        assert action_set is not None and inputs is not None
        out[key(action_set[0])] = {key(i[0]) for i in inputs}
    return out


def _waits_for(inputs: dict[str, set[str]], action: str, other: str) -> bool:
    seen, todo = set(), [action]
    while todo:
        for dep in inputs.get(todo.pop(), set()) - seen:
            if dep == other:
                return True
            seen.add(dep)
            todo.append(dep)
    return False


def test_pacemaker_stops_a_leaving_nodes_watchers_after_its_group_and_the_takeover_waits_for_neither(
        layout: Layout, tmp_path: Path) -> None:
    """What the scheduler makes of the orders (crm_simulate): node1 asks to leave with the group on it."""
    import os
    import subprocess

    cib, up, graph = tmp_path / "cib.xml", tmp_path / "up.xml", tmp_path / "graph.xml"
    cib.write_text(clusterconf.cib_xml(layout, clusterconf.empty_cib()))
    sim = ["crm_simulate", "--quorum", "1", "-S"]
    subprocess.run(sim + ["-x", str(cib), "--node-up", "node1", "--node-up", "node2", "--node-up", "node3",
                          "-O", str(up)], check=True, capture_output=True, timeout=60)
    subprocess.run(sim + ["-x", str(up), "-O", str(up)], check=True, capture_output=True, timeout=60)  # clones, then group
    subprocess.run(["crm_attribute", "-N", "node1", "-n", "shutdown", "-v", "1234", "-l", "reboot"], check=True,
                   capture_output=True, timeout=60, env=os.environ | {"CIB_file": str(up)})
    subprocess.run(sim + ["-x", str(up), "-G", str(graph)], check=True, capture_output=True, timeout=60)
    inputs = _graph_inputs(graph)
    assert "app-fs_start_0@node2" in inputs, sorted(inputs)  # the group moves to node2
    for watcher in ("linkmon-service", "reach-service"):
        assert _waits_for(inputs, f"{watcher}_stop_0@node1", "app-app_stop_0@node1")
        assert _waits_for(inputs, f"{watcher}_stop_0@node1", "app-fs_stop_0@node1")
        # not for the takeover: the leaving node's own stop would last as long as the takeover
        assert not _waits_for(inputs, f"{watcher}_stop_0@node1", "app-app_start_0@node2")
        for start in ("app-fs", "app-ip", "app-app"):
            assert not _waits_for(inputs, f"{start}_start_0@node2", f"{watcher}_stop_0@node1")
