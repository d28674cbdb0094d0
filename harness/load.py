"""Client-side load: locust in the client namespace, its request log, and the read-back of acknowledged writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

from harness.errors import FalloverError, WaitTimeout
from harness.timeline import Request, load_requests
from harness.wait import wait_until

if TYPE_CHECKING:  # keeps pydantic out of the probe process, which imports ClientProcess
    from harness.testbed.base import Testbed

REPO = Path(__file__).resolve().parents[1]
DEFAULT_PROFILE = REPO / "loadprofiles" / "kv.py"
DEFAULT_WAIT = "tput:20"  # cycles/s per user: 10 users -> ~400 req/s, leaving the cluster CPU to breathe


def die_with_parent() -> None:
    """In the child, before exec: SIGKILL it when the harness dies, even by SIGKILL.

    A load generator started in its own session outlives a killed harness otherwise, and goes on
    sending into a namespace that was torn down (one was found still running two hours later).
    Linux ties this to the thread that started the child: start these from a long-lived thread.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no output)"


def gate_of(out: Path) -> Path:
    """The gate file of a process whose output is ``out``: beside it, deleted when the process stops."""
    return out.with_name(out.name + ".gate")


def wait_for_gate(gate: str | None, stopped: Callable[[], bool], interval: float = 0.01) -> None:
    """In a gated child (``--gate``): until ``gate`` exists or ``stopped()`` (its SIGTERM handler ran).

    Polled: 100 stat calls a second cost nothing next to a recorder, and the wait ends within
    10 ms of :meth:`ClientProcess.open_gate`."""
    while gate and not stopped() and not os.path.exists(gate):
        time.sleep(interval)


class ClientProcess:
    """A long-lived process of ours in the client namespace (load, probe, ARP watch).

    Why one class: every such process must start in its own session (a Ctrl-C meant for
    pytest must not hit it first), be seen to work before the test goes on, be stopped by its
    own PID group on every exit path, never by name (other testbeds share the box), and die
    with the harness even when the harness is SIGKILLed (`die_with_parent`).
    """

    def __init__(self, testbed: Testbed, argv: Sequence[str], *, out: Path, what: str,
                 env: Mapping[str, str] | None = None, ready_timeout: float = 20.0, gate: Path | None = None,
                 stdout_log: Path | None = None) -> None:
        self.testbed, self.argv, self.out, self.what = testbed, list(argv), out, what
        self.env = dict(env or {})
        self.gate = gate  # the process waits, imported and set up, until this file exists (:meth:`open_gate`)
        if gate is not None:
            gate.unlink(missing_ok=True)
        self.ready_timeout = ready_timeout
        self.stdout_log = stdout_log or out.with_name(out.name + ".stdout")
        self.proc: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._terminated = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> Self:
        """Spawn the process and wait until it logged its first line (stopped again if it never does)."""
        return self.spawn().wait_ready()

    def spawn(self) -> Self:
        """Only spawn it: several can then start at once, each waited for with :meth:`wait_ready`."""
        if self.proc is not None:
            raise FalloverError(f"{self.what} already started (pid {self.proc.pid})")
        wrap = getattr(self.testbed.client(), "wrap", None)
        if wrap is None:
            raise FalloverError(f"{self.what}: this testbed's client cannot run a background process")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.touch()
        self._offset = self.out.stat().st_size  # only lines written by this run count as "ready"
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
               **self.env}
        with open(self.stdout_log, "ab") as log:
            self.proc = subprocess.Popen(wrap(self.argv), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True,
                                         preexec_fn=die_with_parent)
        return self

    def stale(self) -> bool:
        """Whether it runs in a network namespace that is no longer the client's: a process spawned before
        the reset, when that reset rebuilt the testbed (a crashed one), talks to a network that is gone."""
        netns = getattr(self.testbed.client(), "netns_path", None)
        if netns is None or self.proc is None:
            return False
        try:
            mine, now = os.stat(f"/proc/{self.proc.pid}/ns/net"), os.stat(netns)
        except OSError:
            return True
        return (mine.st_dev, mine.st_ino) != (now.st_dev, now.st_ino)

    def wait_ready(self) -> Self:
        """Until the process logged its first line; it is stopped if it exits or the wait runs out."""
        if self.proc is None:
            raise FalloverError(f"{self.what} was never started")
        try:
            wait_until(self._ready, timeout=self.ready_timeout, interval=0.05, what=f"{self.what} to log its first line",
                       describe=lambda: f"{self.out} empty; output:\n{_tail(self.stdout_log)}")
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise FalloverError(f"{self.what} exited with {self.proc.returncode} before logging anything; "
                                f"output ({self.stdout_log}):\n{_tail(self.stdout_log)}")
        try:
            with open(self.out, "rb") as f:
                f.seek(self._offset)
                return b"\n" in f.read(65536)
        except OSError:
            return False

    def wait(self, timeout: float) -> int:
        """Wait for a process that ends by itself (locust --run-time); returns its exit status."""
        if self.proc is None:
            raise FalloverError(f"{self.what} was never started")
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise WaitTimeout(f"{self.what} to finish", timeout) from None

    def terminate(self) -> None:
        """SIGTERM only, not waited for: several recorders then wind down at once (:meth:`stop` waits)."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self._signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, grace: float = 10.0) -> int | None:
        """SIGTERM to our process group, then SIGKILL after `grace`; idempotent, safe on any path."""
        try:
            return self._stop(grace)
        finally:
            if self.gate is not None:
                self.gate.unlink(missing_ok=True)  # a control file, not evidence

    def _stop(self, grace: float) -> int | None:
        proc = self.proc
        if proc is None:
            return None
        if proc.poll() is None:
            if not self._terminated:  # one SIGTERM: a second one could cut a clean shutdown short
                self._signal(signal.SIGTERM)
                self._terminated = True
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait(5)
        # Once reaped, its PID may belong to someone else: never signal it again.
        return proc.returncode

    def open_gate(self) -> None:
        """Let a gated process begin: spawned early (a python start and its imports take a few hundred ms
        on a loaded box), it records or sends nothing until now; :meth:`wait_ready` then waits for its first line."""
        if self.gate is not None:
            self.gate.touch()

    def _signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)  # our own session: pgid == pid
        except ProcessLookupError:
            pass

    def cpu_seconds(self) -> float:
        """utime + stime of the process so far (from /proc/PID/stat), for cost figures."""
        if self.proc is None:
            return 0.0
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


class Load(ClientProcess):
    """Locust headless in the client namespace; every request lands in `log` as a timeline.Request line.

    Usage::

        with Load(tb, log=run_dir / "load.jsonl", host="http://10.77.1.100:8080") as load:
            inject_fault()
        [r for r in load.requests() if not r.ok]
    """

    def __init__(self, testbed: Testbed, *, log: Path, host: str, profile: Path = DEFAULT_PROFILE,
                 users: int = 10, spawn_rate: float = 10, run_time: float | None = None,
                 wait: str = DEFAULT_WAIT, run_id: str | None = None, timeout_s: float = 2.0,
                 ready_timeout: float = 30.0, gated: bool = False) -> None:
        argv = [sys.executable, "-m", "locust", "-f", str(profile), "--headless", "-u", str(users),
                "-r", str(spawn_rate), "--host", host, "--only-summary", "--loglevel", "WARNING"]
        if run_time is not None:
            argv += ["--run-time", f"{max(1, round(run_time))}s"]
        env = {"FALLOVER_LOAD_LOG": str(log), "FALLOVER_LOAD_WAIT": wait,
               "FALLOVER_LOAD_TIMEOUT": str(timeout_s)}
        if run_id:
            env["FALLOVER_RUN_ID"] = run_id
        gate = gate_of(log) if gated else None
        if gate is not None:  # locust's users wait for it in on_start (loadprofiles/kv.py)
            env["FALLOVER_LOAD_GATE"] = str(gate)
        self.done = log.with_name(log.name + ".done")  # kv.py creates it once every user has stopped
        self.done.unlink(missing_ok=True)
        env["FALLOVER_LOAD_DONE"] = str(self.done)
        super().__init__(testbed, argv, out=log, what="locust load", env=env, ready_timeout=ready_timeout, gate=gate)
        self.log, self.host = log, host
        self._case: dict[str, str] | None = None  # the case a locust spawned ahead was given (:meth:`adopt`)

    def adopt(self, log: Path, run_id: str) -> None:
        """Give a gated locust spawned ahead (before its case's directory existed) its case: when the gate
        opens, its users log to ``log`` and prefix their keys with ``run_id`` (loadprofiles/kv.py); its
        output so far (its start) moves with it. Before :meth:`open_gate` only."""
        assert self.gate is not None and self.proc is not None, "only a gated, spawned locust takes a case"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.touch()
        stdout = log.with_name(log.name + ".stdout")
        os.replace(self.stdout_log, stdout)  # the same file: locust goes on writing to it
        self.out.unlink(missing_ok=True)  # the placeholder it was started with: nothing was written to it
        self.log = self.out = log
        self.stdout_log, self._offset = stdout, 0
        self._case = {"log": str(log), "run_id": run_id}

    def open_gate(self) -> None:
        if self.gate is not None and self._case is not None:  # written whole, then renamed into place
            tmp = self.gate.with_name(self.gate.name + ".tmp")
            tmp.write_text(json.dumps(self._case))
            os.replace(tmp, self.gate)
        super().open_gate()

    def stop_sending(self, grace: float = 10.0) -> None:
        """Stop locust's users and return once its log is complete: when every user has stopped (the
        profile's FALLOVER_LOAD_DONE file) or locust has exited, whichever comes first.

        Why not :meth:`stop`: after its users locust prints its statistics and tears itself down,
        0.1-0.5 s here, and whatever reads the log back need not wait for that; :meth:`stop` still
        waits for the exit (and kills a locust that does not end) on the wind-down.
        """
        self.terminate()
        if self.proc is None:
            return
        deadline = time.monotonic() + grace
        while self.proc.poll() is None and not self.done.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        if self.proc.poll() is None and not self.done.exists():
            self.stop(grace=0)  # it never said its users stopped: killed, as stop() would after its grace

    def stop(self, grace: float = 10.0) -> int | None:
        try:
            return super().stop(grace)
        finally:
            self.done.unlink(missing_ok=True)  # a control file, not evidence

    def requests(self) -> list[Request]:
        return load_requests(self.log)


def verify(testbed: Testbed, log: Path, url: str, *, concurrency: int | None = None, timeout: float = 300.0,
           ahead: ClientProcess | None = None) -> Path:
    """Read back every acknowledged PUT of `log` from the client and append `verify` records to it.

    Runs as its own process in the client namespace (the service IP is reachable only
    there); a verify record is ok when the value read equals the value acknowledged.
    ``ahead`` is that process spawned gated (:func:`verify_ahead`): its gate opens now.
    """
    if ahead is not None and ahead.stale():  # the client's network was rebuilt under it: it would read nothing
        ahead.stop()
    if ahead is not None and ahead.running():
        ahead.open_gate()
        try:
            rc = ahead.wait(timeout)
        finally:
            ahead.stop()  # reaped, and its gate (a control file, not evidence) removed
        if rc != 0:
            raise FalloverError(f"the read-back exited with {rc}; output ({ahead.stdout_log}):\n"
                                f"{_tail(ahead.stdout_log)}")
        return log
    testbed.client().run(_verify_argv(testbed, log, url, concurrency), timeout=timeout,
                         env={"PYTHONPATH": str(REPO)})
    return log


def verify_ahead(testbed: Testbed, log: Path, url: str, *, concurrency: int | None = None) -> ClientProcess | None:
    """The read-back's process spawned gated while the cluster recovers: its python start and imports
    (0.3 s of a 0.8 s read-back at the daily suite's size) then come off the case's critical path.
    None where the client cannot run a background process (the read-back then runs as before)."""
    if getattr(testbed.client(), "wrap", None) is None:
        return None
    gate = log.with_name("verify.gate")
    proc = ClientProcess(testbed, [*_verify_argv(testbed, log, url, concurrency), "--gate", str(gate)],
                         out=log, what="the read-back", gate=gate, stdout_log=log.with_name("verify.txt"))
    return proc.spawn()


def _verify_argv(testbed: Testbed, log: Path, url: str, concurrency: int | None) -> list[str]:
    """The read-back at the testbed's pace: as many readers at once, and as patient, as its service can take."""
    from harness.testbed.base import pace_of  # here: load's own processes never load the topology

    pace = pace_of(testbed)
    return [sys.executable, "-m", "harness.verify", "--log", str(log), "--url", url,
            "--concurrency", str(pace.verify_concurrency if concurrency is None else concurrency),
            "--timeout", str(pace.verify_timeout_s)]
