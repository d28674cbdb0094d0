"""The generated CIB's placement policy, asked of Pacemaker's own scheduler (crm_simulate).

Why the real scheduler: a rule that reads fine can still ban a node for a reason nobody meant.
The case that taught this: Pacemaker 2.1.5's DC erases a node's transient attributes when its
controller leaves, and may schedule from a CIB where the node still looks active. A link rule
written as "not 1" read the erased attribute as a dead link, banned the node and moved the group
by a stop sent to the dead controller (pacemaker_kill-node1 failed 2 runs in 7 that way).
"""

from __future__ import annotations

import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from harness.testbed import clusterconf
from harness.testbed.layout import Layout
from harness.topology import DEFAULT_TESTBED, load_topology

NODES = ("node1", "node2", "node3")
MEMBERS = ("app-fs", "app-ip", "app-app")
HEALTHY = {"ethmonitor-service": "1", "reach-service": "1"}


@pytest.fixture(scope="module")
def running_on_node1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The seed CIB with all nodes up, quorum, and the group's members started on node1."""
    tmp = tmp_path_factory.mktemp("cib")
    layout = Layout(load_topology(DEFAULT_TESTBED), instance="unit", state_root=tmp)
    seed = tmp / "seed.xml"
    seed.write_text(clusterconf.cib_xml(layout, clusterconf.empty_cib()))
    out = tmp / "running.xml"
    args = ["crm_simulate", "-Q", "-x", str(seed), "-O", str(out)]
    for node in NODES:
        args += ["-u", node]
    for member in MEMBERS:
        args += ["-i", f"{member}_start_0@node1=0"]
    subprocess.run(args, check=True, capture_output=True, timeout=60)
    return out


def moves(cib: Path, attributes: dict[str, dict[str, str]], tmp_path: Path) -> dict[str, str]:
    """The scheduler's planned moves ({member: 'from -> to'}) with these transient attributes per node."""
    tree = ET.parse(cib)
    root = tree.getroot()
    root.set("have-quorum", "1")
    for state in root.iter("node_state"):
        node = state.get("uname", "")
        if node in attributes:
            ta = ET.SubElement(state, "transient_attributes", id=node)
            attrs = ET.SubElement(ta, "instance_attributes", id=f"status-{node}")
            for name, value in attributes[node].items():
                ET.SubElement(attrs, "nvpair", id=f"status-{node}-{name}", name=name, value=value)
    path = tmp_path / "status.xml"
    tree.write(path)
    out = subprocess.run(["crm_simulate", "-x", str(path), "-S"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    summary = out.stdout.split("Transition Summary:", 1)[1].split("Executing", 1)[0]
    return {m.group(1): m.group(2) for m in re.finditer(r"\* Move\s+(\S+)\s+\(\s*(\S+ -> \S+)\s*\)", summary)}


def test_a_healthy_cluster_leaves_the_group_where_it_is(running_on_node1: Path, tmp_path: Path) -> None:
    assert moves(running_on_node1, {n: HEALTHY for n in NODES}, tmp_path) == {}


def test_a_dead_link_or_unreachable_clients_move_the_group(running_on_node1: Path, tmp_path: Path) -> None:
    for broken in ({"ethmonitor-service": "0"}, {"reach-service": "0"}):
        attributes = {n: HEALTHY for n in NODES} | {"node1": HEALTHY | broken}
        assert moves(running_on_node1, attributes, tmp_path) == {m: "node1 -> node2" for m in MEMBERS}, broken


def test_erased_attributes_are_no_news_and_move_nothing(running_on_node1: Path, tmp_path: Path) -> None:
    """What the DC's CIB looks like between erasing a lost controller's attributes and recording it
    offline: the node is still active. The group must stay (the fence that follows moves it)."""
    assert moves(running_on_node1, {"node2": HEALTHY, "node3": HEALTHY}, tmp_path) == {}


def test_the_group_stays_off_a_node_whose_link_is_not_monitored(running_on_node1: Path, tmp_path: Path) -> None:
    """The colocation with the link monitor does what "not 1" did for a monitor that is stopped: a
    node where linkmon cannot run (here: banned by a location constraint) gives the group up."""
    tree = ET.parse(running_on_node1)
    constraints = tree.getroot().find(".//constraints")
    assert constraints is not None
    ET.SubElement(constraints, "rsc_location", id="no-linkmon-on-node1", rsc="linkmon-service-clone",
                  node="node1", score="-INFINITY")
    banned = tmp_path / "banned.xml"
    tree.write(banned)
    assert moves(banned, {n: HEALTHY for n in NODES}, tmp_path) == {m: "node1 -> node2" for m in MEMBERS}


def test_a_missed_event_is_recomputed_within_seconds(running_on_node1: Path) -> None:
    """The race's other half: a scheduler run from the CIB read before ``crmd=offline`` landed plans
    nothing, and nothing triggers another run but the recheck (cluster.recheck_s: the VM testbed's is shorter)."""
    props = {n.get("name"): n.get("value") for n in ET.parse(running_on_node1).getroot().iter("nvpair")}
    assert props["cluster-recheck-interval"] == "5s" == f"{load_topology(DEFAULT_TESTBED).cluster.recheck_s}s"
