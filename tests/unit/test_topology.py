"""The topology model: the default file loads; every bad field is one line naming file and field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import TopologyError
from harness.topology import DEFAULT_TESTBED, load_topology


def write(tmp_path: Path, mutate) -> Path:  # type: ignore[no-untyped-def]
    raw = yaml.safe_load(DEFAULT_TESTBED.read_text())
    mutate(raw)
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(raw))
    return p


def test_default_testbed_loads_with_derived_addresses() -> None:
    t = load_topology(DEFAULT_TESTBED)
    assert t.node_names == ["node1", "node2", "node3"]
    assert [n.role for n in t.networks] == ["service", "standby"]
    assert str(t.address("node2", "standby")) == "10.77.2.12"
    assert str(t.address("client", "service")) == "10.77.1.50"
    g = t.group("app")
    assert (g.policy, g.nodes, g.disk) == ("cascading", ["node1", "node2", "node3"], "shared")


@pytest.mark.parametrize("mutate, field", [
    (lambda r: r["groups"][0].update(policy="sticky"), "groups[0].policy"),
    (lambda r: r["groups"][0].update(nodes=["node1", "node9"]), "groups[0].nodes"),
    (lambda r: r["groups"][0].update(service_ip="10.99.0.1"), "groups[0].service_ip"),
    (lambda r: r["groups"][0].update(service_ip="10.77.1.11"), "groups[0].service_ip"),
    (lambda r: r["groups"][0].update(disk="nodisk"), "groups[0].disk"),
    (lambda r: r["networks"][1].update(subnet="8.8.8.0/24"), "networks[1].subnet"),
    (lambda r: r["networks"][1].update(subnet="10.77.1.0/24"), "networks"),
    (lambda r: r["nodes"].append({"name": "node1"}), "nodes"),
    (lambda r: r["nodes"].append({"name": "Node-4"}), "nodes[3].name"),
    (lambda r: r["sla"].update(max_fallover_s=-1), "sla.max_fallover_s"),
    (lambda r: r.update(colour="blue"), "colour"),
    (lambda r: r["cluster"].update(extra_config="missing.crm"), "cluster.extra_config"),
    (lambda r: r["groups"][0]["application"].update(start="run-it"), "groups[0].application"),
    (lambda r: r["cluster"].update(corosync={"totem": {"token": 200}}), "cluster.corosync.totem"),
    (lambda r: r["cluster"].update(corosync={"totem": {"Consensus": 3000}}), "cluster.corosync.totem"),
    (lambda r: r["cluster"].update(corosync={"quorum": {"wait_for_all": "1\n}"}}), "cluster.corosync.quorum"),
    (lambda r: r["cluster"].update(corosync={"quorum": {"provider": "corosync_qdevice"}}),
     "cluster.corosync.quorum"),
    (lambda r: r["cluster"].update(corosync={"quorum": {"expected_votes": [3]}}), "cluster.corosync.quorum"),
    (lambda r: r["cluster"].update(corosync={"hand_tuned_token": 50}), "cluster.corosync.hand_tuned_token"),
    (lambda r: r["cluster"].update(corosync={"logging": {"debug": "on"}}), "cluster.corosync.logging: unknown"),
])
def test_bad_field_is_one_line_naming_file_and_field(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    path = write(tmp_path, mutate)
    with pytest.raises(TopologyError) as e:
        load_topology(path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{path}: {field}"), msg


def test_unreadable_and_non_mapping_files(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="no such file"):
        load_topology(tmp_path / "absent.yaml")
    p = tmp_path / "list.yaml"
    p.write_text("- a\n- b\n")
    with pytest.raises(TopologyError, match="mapping"):
        load_topology(p)
    p.write_text("nodes: [\n")
    with pytest.raises(TopologyError, match="cannot read"):
        load_topology(p)
