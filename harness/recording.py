"""What one run of a case holds while it runs, and its recorders: started together, stopped on every exit path.

Split from harness/runner.py (the steps of a case) and harness/judging.py (the verdicts): this is
where a case's time goes that is neither the fault nor the cluster's reaction, so it is kept lean:

- locust takes about a second to import and spawn its users (1-2 s on a loaded box). It is spawned
  *gated* (loadprofiles/kv.py: its users wait in ``on_start`` for a file) as soon as the previous
  case is timed, and given its case (log, key prefix) when the gate opens as the recording starts;
  the first case's is spawned before the cluster is made whole. It sends nothing before the gate
  opens, so the recording is the same;
- the probe and the ARP watch are spawned gated with it, for the topology's first group (the one
  the plan's load and probe watch): the probe sends nothing and the ARP watch opens no socket
  before its gate opens, so starting the recording only opens the three gates. Then each is waited
  for until it logs its first line, as before (a recorder that never works still fails "start the
  recording"); one spawned for another group or network than the case's is stopped and replaced;
- evidence that judges nothing (the ``fallover status`` snapshots) and work that needs no answer
  before the next step (forgetting the case's keys) run beside the case in threads, joined before
  the case is judged: their failures still land in the report.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.arpwatch import ArpWatch
from harness.audits.cluster import Consistency
from harness.audits.logs import LogAudit
from harness.drivers.base import Driver
from harness.faults import Nemesis
from harness.load import ClientProcess, Load
from harness.notifications import testbed_tails
from harness.oplog import OpLog
from harness.plan import Case, Expected
from harness.poller import ClusterPoller
from harness.probe import Probe
from harness.steps import Steps
from harness.testbed.base import Testbed
from harness.timeline import Timeline


@dataclass
class CaseRun:
    """What one run of a case holds while it runs: the recorders exist only once their step succeeded."""

    case: Case
    run_dir: Path
    steps: Steps
    t_start: float
    timeline: Timeline
    expected: Expected | None = None
    nemesis: Nemesis | None = None
    poller: ClusterPoller | None = None
    probe: Probe | None = None
    arp: ArpWatch | None = None
    load: Load | None = None
    verifier: ClientProcess | None = None  # the read-back spawned gated during the recovery (load.verify_ahead)
    early: list[Probe | ArpWatch] = field(default_factory=list)  # spawned gated, not yet recorders (``_prespawn``)
    audit: LogAudit | None = None
    consistency: Consistency | None = None
    macs: dict[str, str] = field(default_factory=dict)
    fault_mono: float | None = None
    missed: bool = False  # the expected outcome did not come by its deadline
    diagnosis: dict[str, list[str]] = field(default_factory=dict)  # step → the cluster's account at its deadline
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    recovery: OpLog = field(default_factory=OpLog)  # heal and recovery as done: the runbook's source
    beside: list[threading.Thread] = field(default_factory=list)  # work running beside the case (``Recording.beside``)


class Recording:
    """The recorders of a case (cluster poller, probe, ARP watch, load); needs ``testbed``, ``driver``,
    ``load`` and ``users`` from the runner."""

    testbed: Testbed
    driver: Driver
    load: bool
    users: int
    log: Callable[[str], None]

    spawn_ahead: bool = False  # the owner calls ``close`` when no case follows (the pytest plugin's runner)
    _ahead: Load | None = None  # a gated locust spawned for the next case (``_spawn_ahead``)
    _ahead_host: str | None = None  # the host the prespawned locusts load
    _ahead_n = 0

    def _spawn_ahead(self, c: CaseRun) -> None:
        """Spawn the next case's locust gated, as soon as this case is timed (its evidence and plot, pytest's
        own time, the next reset and snapshot then hide its start): locust's imports and user spawning took
        1-2 s on a loaded box, longer than a reset that is one look, and its gate opened before it was ready.

        It starts with a placeholder log in the run directory's ``.load-ahead``; the next case gives it its
        own (``Load.adopt``). From the case's (main) thread: a child dies with the thread that spawned it.
        """
        if not (self.spawn_ahead and self.load) or self._ahead is not None or self._ahead_host is None \
                or c.load is None:
            return
        Recording._ahead_n += 1
        load = Load(self.testbed, log=c.run_dir.parent / ".load-ahead" / f"load-{Recording._ahead_n}.jsonl",
                    host=self._ahead_host, users=self.users, gated=True)
        try:
            load.spawn()
        except Exception:  # noqa: BLE001 — the next case spawns its own, as without this
            self._discard(load)
            return
        self._ahead = load

    def _take_ahead(self, c: CaseRun, base: str) -> Load | None:
        """The locust spawned ahead, given this case (its log, its key prefix), if it loads ``base`` and runs
        in the client's namespace as it is now; otherwise it is stopped and None."""
        load, self._ahead = self._ahead, None
        if load is None:
            return None
        if load.host == base and load.running() and not load.stale():
            load.adopt(c.run_dir / "load.jsonl", c.run_dir.name)
            return load
        self._discard(load)
        return None

    @staticmethod
    def _discard(load: Load) -> None:
        """Stop a locust that never took a case, and remove its placeholder files: they are no evidence."""
        load.stop()
        for f in (load.out, load.stdout_log):
            f.unlink(missing_ok=True)
        try:
            load.out.parent.rmdir()
        except OSError:
            pass  # another one's files are still there

    def close(self) -> None:
        """At the end of the session: stop the locust spawned ahead for a case that did not come."""
        load, self._ahead = self._ahead, None
        if load is not None:
            self._discard(load)

    def _new_load(self, c: CaseRun, base: str, *, gated: bool) -> Load:
        return Load(self.testbed, log=c.run_dir / "load.jsonl", host=base, users=self.users, run_id=c.run_dir.name,
                    gated=gated)

    def _prespawn(self, c: CaseRun, *, base: str, network: str, service_ip: str) -> None:
        """Spawn locust, the probe and the ARP watch gated, before the cluster is made whole, so that
        their start costs the case nothing (they send and hear nothing until the recording starts).

        A spawn that fails leaves it to "start the recording", which starts it the ordinary way and
        fails there, as it always did, if it cannot.
        """
        recorders: list[Probe | ArpWatch] = [
            Probe(self.testbed, url=f"{base}/health", out=c.run_dir / "probe.jsonl", gated=True),
            ArpWatch(self.testbed, iface=network, ips=[service_ip], out=c.run_dir / "arp.jsonl", gated=True)]
        self._ahead_host = base
        ahead = self._take_ahead(c, base) if self.load else None
        if ahead is not None:
            c.load = ahead
        load = self._new_load(c, base, gated=True) if self.load and ahead is None else None
        for proc in (*recorders, load):
            if proc is None:
                continue
            try:
                proc.spawn()
            except Exception:  # noqa: BLE001 — see the docstring: the recording step reports it
                proc.stop()
                continue
            if proc is load:
                c.load = load
            else:
                c.early.append(proc)  # type: ignore[arg-type]  # one of ``recorders``

    def _take_early(self, c: CaseRun, kind: type[Probe | ArpWatch], same: Callable[[Probe | ArpWatch], bool]
                    ) -> Probe | ArpWatch | None:
        """The prespawned recorder of ``kind`` if it watches what this case needs; one that does not is stopped."""
        for proc in list(c.early):
            if isinstance(proc, kind):
                c.early.remove(proc)
                if same(proc) and proc.running() and not proc.stale():
                    return proc
                proc.stop()
        return None

    def _start_recording(self, c: CaseRun, *, base: str, network: str, service_ip: str) -> None:
        """Poller and log mark first, then probe, ARP watch and load spawned at once and each seen working."""
        tb = self.testbed
        c.nemesis = Nemesis(tb, c.timeline, log=self.log)
        c.poller = ClusterPoller(self.driver, c.timeline, tails=testbed_tails(tb), interval=self.driver.poll_interval)
        url = f"{base}/health"
        probe = self._take_early(c, Probe, lambda p: isinstance(p, Probe) and p.url == url)
        arp = self._take_early(c, ArpWatch,
                               lambda a: isinstance(a, ArpWatch) and (a.iface, a.ips) == (network, [service_ip]))
        c.probe = probe if isinstance(probe, Probe) else Probe(tb, url=url, out=c.run_dir / "probe.jsonl")
        c.arp = arp if isinstance(arp, ArpWatch) else ArpWatch(tb, iface=network, ips=[service_ip],
                                                               out=c.run_dir / "arp.jsonl")
        if c.load is not None and (not c.load.running() or c.load.stale()):
            c.load.stop()  # spawned before a reset that rebuilt the testbed (or dead): a fresh one replaces it
            c.load = None
        if self.load and c.load is None:
            c.load = self._new_load(c, base, gated=False)
        c.audit = LogAudit(tb)
        c.audit.mark()
        c.poller.start()
        for proc in (c.probe, c.arp, c.load):  # the prespawned ones are gated: this is where they begin
            if proc is not None:
                if proc.proc is None:
                    proc.spawn()
                proc.open_gate()
        for proc in (c.probe, c.arp, c.load):
            if proc is not None:
                proc.wait_ready()

    @staticmethod
    def _stop_step(c: CaseRun, name: str, proc: Load | Probe | ArpWatch | ClusterPoller) -> None:
        with c.steps(f"stop the {name}"):
            proc.stop()

    def beside(self, c: CaseRun, name: str, work: Callable[[], None]) -> threading.Thread:
        """Run ``work`` in a thread beside the case; :meth:`_join_beside` waits for it before judging."""
        t = threading.Thread(target=work, name=name, daemon=True)
        t.start()
        c.beside.append(t)
        return t

    def _join_beside(self, c: CaseRun) -> None:
        while c.beside:
            c.beside.pop(0).join()

    def _wind_down(self, c: CaseRun) -> None:
        """Heal whatever is still injected and stop every recorder: each on its own, none skipped."""
        t_stop = time.monotonic()
        if c.nemesis is not None:
            with c.steps("final heal"), c.recovery.phase("final heal"):
                c.nemesis.heal_all()
        for client in (c.load, c.probe, c.arp, *c.early):  # all told at once: each then exits in parallel
            if client is not None:
                client.terminate()
        while c.early:  # prespawned, never started recording (the reset failed): nothing of theirs is evidence
            with c.steps("stop a recorder that never started"):
                c.early.pop().stop()
        if c.load is not None:  # locust's statistics and exit take 0.1-0.9 s: waited for beside the others' stops
            load = c.load
            self.beside(c, "stop the load", lambda: self._stop_step(c, "load", load))
        for name, proc in (("probe", c.probe), ("ARP watch", c.arp), ("cluster poller", c.poller)):
            if proc is not None:
                self._stop_step(c, name, proc)
        c.timings["stop_recording_s"] = time.monotonic() - t_stop
        t_join = time.monotonic()
        self._join_beside(c)
        c.timings["beside_wait_s"] = time.monotonic() - t_join
        if c.verifier is not None:  # done with the read-back, or still at its gate if the case never got there
            with c.steps("stop the read-back"):
                c.verifier.stop()
