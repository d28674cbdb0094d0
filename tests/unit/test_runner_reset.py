"""The reset at the start of a case: skipped to one look only when the last case provably left the cluster whole.

A fake cluster (crm_mon XML and settle-query answers from tests/data), no testbed: what is asked, not how long.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness.result import Result
from harness.runner import Runner
from harness.topology import DEFAULT_TESTBED, load_topology

DATA = Path(__file__).resolve().parent.parent / "data"
SETTLED = (DATA / "crm_mon_settled.xml").read_text()  # the embedded cluster at rest, app on node1
PENDING = (DATA / "crm_mon_pending.xml").read_text()  # mid-move: a monitor pending
IDLE = "S_IDLE\n@rc=0\n" + "".join(f'name="{a}" host="node{i}" value="1"\n@rc=0\n'
                                    for a in ("reach-service", "ethmonitor-service") for i in (1, 2, 3))


class FakeTestbed:
    """Answers crm_mon with ``self.crm_mon``; counts `up` (the full reset) and every command run."""

    def __init__(self, journal: Path) -> None:
        self.topology = load_topology(DEFAULT_TESTBED)
        self.journal_path = journal
        self.crm_mon = SETTLED
        self.ups = 0
        self.ran: list[str] = []
        self.down: set[str] = set()

    def up(self, progress: Any = None, placement: bool = True) -> None:
        """The full reset, which makes the cluster whole."""
        self.ups += 1
        self.crm_mon, self.down = SETTLED, set()

    def running(self, node: str) -> bool:
        return node not in self.down

    def node(self, name: str) -> Any:
        def run(argv: Any, *, timeout: float, check: bool = True, **_: Any) -> Result:
            self.ran.append(argv[0])
            out = self.crm_mon if argv[0] == "crm_mon" else IDLE if argv[0] == "sh" else ""
            return Result(node=name, argv=tuple(argv), exit_status=0, stdout=out, stderr="", duration_s=0.001)
        return SimpleNamespace(run=run)

    def carrier(self, node: str, network: str) -> bool:
        return True


def test_a_case_after_one_that_left_the_cluster_whole_resets_with_one_look(tmp_path: Path) -> None:
    journal = tmp_path / "faults.journal"
    journal.write_text("")
    tb = FakeTestbed(journal)
    runner = Runner(tb, tmp_path)  # type: ignore[arg-type]
    whole = runner._journal_stamp()

    assert runner._reset(whole).group_node("app") == "node1"
    assert tb.ups == 0 and tb.ran == ["crm_mon", "sh"]  # one crm_mon, one settle query: that is the reset

    assert runner._reset(None) and tb.ups == 1  # nothing known about the last case: the full reset


def test_anything_changed_since_means_the_full_reset(tmp_path: Path) -> None:
    journal = tmp_path / "faults.journal"
    journal.write_text("")
    tb = FakeTestbed(journal)
    runner = Runner(tb, tmp_path)  # type: ignore[arg-type]
    whole = runner._journal_stamp()

    tb.down = {"node3"}  # a node powered off since
    runner._reset(whole)
    assert tb.ups == 1

    tb.crm_mon = PENDING  # the cluster busy: not whole, whatever the last case saw
    runner._reset(whole)
    assert tb.ups == 2

    journal.write_text('{"fault": "adapter_down"}\n')  # a fault injected or healed since
    runner._reset(whole)
    assert tb.ups == 3


def test_the_wait_for_a_takeover_gives_a_case_the_limit_it_widens(tmp_path: Path) -> None:
    """app_start_fail is allowed two takeovers (2 × max_fallover_s): the runner waited only the topology's one."""
    from harness.errors import WaitTimeout
    from harness.faults import Target
    from harness.plan import Case, Expected

    (tmp_path / "faults.journal").write_text("")
    runner = Runner(FakeTestbed(tmp_path / "faults.journal"), tmp_path)  # type: ignore[arg-type]
    waited: list[float] = []

    def never(probe: Any, node: str | None, *, timeout: float, after: float) -> None:
        waited.append(timeout)
        raise WaitTimeout("the service", timeout)
    runner._wait_probe_ok = never  # type: ignore[method-assign]
    sla = runner.topology.sla
    for limits, want in (({}, sla.max_fallover_s + 10), ({"max_fallover_s": 2 * sla.max_fallover_s},
                                                          2 * sla.max_fallover_s + 10)):
        expected = Expected(group="app", outcome="fallover", home="node1", takeover="node3", limits=limits)
        c = SimpleNamespace(expected=expected, probe=object(), fault_mono=0.0, timeline=None, missed=False,
                            case=Case("app_start_fail", Target(node="node2", group="app")))
        with pytest.raises(WaitTimeout):
            runner._await_outcome(c)  # type: ignore[arg-type]
        assert waited[-1] == want and c.missed
