"""Smoke: the embedded cluster is whole, serves from its first-priority node, moves with its data, fences."""

from __future__ import annotations

import uuid

import pytest

from harness.drivers.base import Driver
from harness.status import service_answer
from harness.testbed.base import Testbed

pytestmark = pytest.mark.testbed


def _put(testbed: Testbed, ip: str, port: int, key: str, value: str) -> None:
    testbed.client().run(["curl", "-sf", "-m", "5", "-X", "PUT", "--data", value,
                          f"http://{ip}:{port}/kv/{key}"], timeout=10)


def _needs(cluster: Driver, capability: str) -> None:
    """A check of something the stack does not have is left out with the stack's reason, never silently."""
    why = cluster.capabilities().get(capability)
    if why is not None:
        pytest.skip(f"needs {capability}: {why}")


def _get(testbed: Testbed, ip: str, port: int, key: str) -> str:
    return testbed.client().run(["curl", "-sf", "-m", "5", f"http://{ip}:{port}/kv/{key}"], timeout=10).stdout


def test_all_nodes_online_and_groups_on_their_first_node(cluster: Driver, testbed: Testbed) -> None:
    state = cluster.state()
    assert state is not None, "no node answered crm_mon"
    assert state.online == sorted(testbed.topology.node_names), f"expected every node online: {state.summary()}"
    for g in testbed.topology.groups:
        assert state.group_node(g.name) == g.nodes[0], \
            f"group {g.name} should run on {g.nodes[0]} (first in its priority list): {state.summary()}"
    assert not state.failed_actions, f"failed actions on a fresh cluster: {state.failed_actions}"


def test_service_answers_from_the_first_priority_node(cluster: Driver, testbed: Testbed) -> None:
    for g in testbed.topology.groups:
        assert service_answer(testbed, g.name, timeout=3) == g.nodes[0]


def test_a_write_survives_a_move_because_data_is_on_the_shared_disk(cluster: Driver,
                                                                     testbed: Testbed) -> None:
    _needs(cluster, "resource_manager")
    _needs(cluster, "shared_disk")
    g = testbed.topology.groups[0]
    key, value = f"smoke-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    _put(testbed, str(g.service_ip), g.application.port, key, value)
    target = g.nodes[1]
    # held there while it is read: a cascading group fails back as soon as the move is cleared, and a
    # read racing that failback is cut off by the stop on the target (curl exit 56), which says
    # nothing about the data
    with cluster.moved_to(g.name, target, timeout=60):
        assert service_answer(testbed, g.name, timeout=3) == target
        assert _get(testbed, str(g.service_ip), g.application.port, key) == value, \
            f"PUT acknowledged on {g.nodes[0]} not readable after the move to {target}"
    # cascading: once the move constraint is cleared the group goes home again
    cluster.wait_settled(timeout=60)


def test_stonith_is_enabled_and_a_fenced_node_is_powered_off_then_returns_with_up(
        cluster: Driver, testbed: Testbed) -> None:
    _needs(cluster, "fencing")
    props = testbed.node("node1").run(["crm_attribute", "--type", "crm_config", "--name", "stonith-enabled",
                                       "--query", "--quiet"], timeout=10).stdout.strip()
    assert props == "true"
    victim = testbed.topology.node_names[-1]
    testbed.node("node1").run(["stonith_admin", "--fence", victim, "--timeout", "30"], timeout=60)
    assert not testbed.running(victim), f"{victim} still has processes after being fenced"
    cluster.wait_until(lambda s: victim in s.offline, timeout=30, what=f"{victim} seen offline")
    testbed.up()
    state = cluster.wait_settled(timeout=60)
    assert victim in state.online
