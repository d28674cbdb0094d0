"""The reset at the start of a case: skipped to one look only when the last case provably left the cluster whole.

A fake cluster (crm_mon XML and settle-query answers from tests/data), no testbed: what is asked, not how long.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

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
