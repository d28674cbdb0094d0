"""Scripted answers of a Pacemaker cluster at rest or mid-move, for the settle and poller tests (no cluster)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

from harness.drivers.pacemaker import PacemakerDriver
from harness.result import Result
from harness.topology import DEFAULT_TESTBED, load_topology

DATA = Path(__file__).resolve().parent.parent / "data"
SETTLED = (DATA / "crm_mon_settled.xml").read_text()   # the embedded cluster at rest, app on node1, DC node3
PENDING = (DATA / "crm_mon_pending.xml").read_text()   # mid-move to node2: app-fs started, monitor pending
IDLE = 'S_IDLE\n@rc=0\n'
ATTRD_OK = ''.join(f'name="{a}" host="node{i}" value="1"\n' for a in ("reach-service",) for i in (1, 2, 3)) + \
    '@rc=0\n' + ''.join(f'name="ethmonitor-service" host="node{i}" value="1"\n' for i in (1, 2, 3)) + '@rc=0\n'


class Script:
    """What each command answers on the fake nodes: crm_mon XML and the settle query's output."""

    def __init__(self, crm_mon: str = SETTLED, settle: str = IDLE + ATTRD_OK) -> None:
        self.crm_mon, self.settle = crm_mon, settle
        self.ran: list[tuple[str, str]] = []

    def node(self, name: str) -> Any:
        def run(argv: Any, *, timeout: float, check: bool = True, **_: Any) -> Result:
            argv = tuple(argv)
            self.ran.append((name, argv[0]))
            out = self.crm_mon if argv[0] == "crm_mon" else self.settle if argv[0] == "sh" else ""
            return Result(node=name, argv=argv, exit_status=0, stdout=out, stderr="", duration_s=0.001)
        return SimpleNamespace(run=run)


def fake_tb(script: Script, *, journal: Path | None = None, links: dict[tuple[str, str], str] | None = None,
            running: tuple[str, ...] = ("node1", "node2", "node3")) -> SimpleNamespace:
    topo = load_topology(DEFAULT_TESTBED)
    tb = SimpleNamespace(topology=topo, node=script.node, running=lambda n: n in running,
                         journal_path=journal or Path("/nonexistent/faults.journal"),
                         carrier=lambda node, net: True)
    if links is not None:
        tb.adapter_states = lambda: links
    return tb


def driver(script: Script, **kw: Any) -> PacemakerDriver:
    quiet_s = kw.pop("quiet_s", 0.0)
    return PacemakerDriver(fake_tb(script, **kw), quiet_s=quiet_s)  # type: ignore[arg-type]

