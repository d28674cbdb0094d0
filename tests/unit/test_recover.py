"""`recover`, the operator's step after a repair: clean up failures, wait until settled, every node answering.

Scripted command output (`settle_script`), recorded crm_mon XML; no cluster. What "settled" means: test_settled.py.
"""

from __future__ import annotations

from typing import Any

import pytest
from settle_script import SETTLED, Script, driver

from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import CommandTimedOut
from harness.result import Result


def _settled_on_the_second_round() -> Any:
    """A stand-in for wait_settled: the first round runs out, the second finds the cluster settled."""
    from harness.errors import WaitTimeout

    rounds = iter([WaitTimeout("cluster settling", 0.05), None])

    def settle(**_: Any) -> ClusterState:
        exc = next(rounds)
        if exc is not None:
            raise exc
        return parse_crm_mon(SETTLED, seen_from="node1")

    return settle


@pytest.mark.parametrize("dc, refreshed", [("S_TRANSITION_ENGINE", False), ("S_IDLE", True)])
def test_recover_asks_attrd_to_refresh_only_a_cluster_that_is_not_at_work(dc: str, refreshed: bool,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A round that did not settle while the DC runs a transition (a failback under way) is left alone: attrd's
    refresh rewrites every attribute and the DC would abort that transition. A stuck, idle cluster is refreshed."""
    from harness.drivers import pacemaker

    monkeypatch.setattr(pacemaker, "RECOVER_ROUND_S", 0.05)
    script = Script(settle=f"{dc}\n@rc=0\n")
    d = driver(script)
    monkeypatch.setattr(d, "wait_settled", _settled_on_the_second_round())
    d.recover(timeout=5)
    assert (("node1", "attrd_updater") in script.ran) is refreshed, script.ran


def test_a_cleanup_that_waits_too_long_for_a_controller_is_tried_again_next_round(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """crm_resource --cleanup waits for every node's controller; one still rejoining may not answer within the
    admin timeout (CI, 2026-12-02). That round goes on to its wait and the next one cleans up again."""
    import dataclasses

    from harness.drivers import pacemaker
    from harness.drivers.state import FailedAction

    monkeypatch.setattr(pacemaker, "RECOVER_ROUND_S", 0.05)
    d = driver(Script())
    failed = dataclasses.replace(parse_crm_mon(SETTLED, seen_from="node1"),
                                 failed_actions=(FailedAction("app-fs", "node2", "monitor", 1, "", "error"),))
    cleanups: list[int] = []
    monkeypatch.setattr(d, "state", lambda: failed if len(cleanups) < 2 else parse_crm_mon(SETTLED, seen_from="node1"))

    def cleanup() -> None:
        cleanups.append(1)
        if len(cleanups) == 1:
            raise CommandTimedOut(Result(node="node1", argv=("crm_resource", "--cleanup"), exit_status=None,
                                         stdout="", stderr="", duration_s=30.0), 30.0)

    monkeypatch.setattr(d, "cleanup", cleanup)
    monkeypatch.setattr(d, "wait_settled", _settled_on_the_second_round())
    shown: list[str] = []
    d.recover(timeout=5, progress=shown.append)
    assert len(cleanups) == 2
    assert any("again next round" in line for line in shown), shown


def test_recovers_last_wait_asks_each_running_node_once_per_look_and_nothing_more(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Whole means every running node answers crm_mon with a DC: one crm_mon per node a look, side by side. A
    look through `state` first added a crm_mon per poll (4-5 s on a loaded TCG guest after every VM case)."""
    script = Script()
    d = driver(script)
    def settled(**_: Any) -> ClusterState:
        script.ran.clear()  # from here on: the last wait
        return parse_crm_mon(SETTLED, seen_from="node1")

    monkeypatch.setattr(d, "wait_settled", settled)
    d.recover(timeout=5)
    assert sorted(n for n, cmd in script.ran if cmd == "crm_mon") == ["node1", "node2", "node3"]


def test_recover_waits_for_a_node_that_answers_without_a_dc_and_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    from harness.drivers import polling
    from harness.errors import WaitTimeout

    no_dc = SETTLED.replace('<current_dc present="true"', '<current_dc present="false"', 1)
    assert parse_crm_mon(no_dc, seen_from="node2").dc is None
    script = Script()
    d = driver(script)
    monkeypatch.setattr(d, "wait_settled", lambda **_: parse_crm_mon(SETTLED, seen_from="node1"))
    monkeypatch.setattr(d, "view", lambda n: parse_crm_mon(no_dc if n == "node2" else SETTLED, seen_from=n))
    shown: list[str] = []
    with pytest.raises(WaitTimeout) as e:
        polling.every_node_answers(d.views, timeout=0.3, interval=0.05, progress=shown.append)
    assert "node2" in str(e.value) and shown == ["waiting for node2 to answer with a DC"]
