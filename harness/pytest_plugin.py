"""fallover's pytest plugin: testbed options, the test plan as parameters, and the fixtures suites use."""

from __future__ import annotations

import contextlib
import json
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.drivers import open_driver
from harness.drivers.base import Driver
from harness.errors import UsageError
from harness.faults import FAULTS, Nemesis
from harness.interrupt import sigterm_as_ctrl_c
from harness.plan import Case, plan
from harness.testbed.base import Testbed
from harness.timeline import Timeline
from harness.topology import DEFAULT_TESTBED, Topology, load_topology

REPORTS = Path(__file__).resolve().parent.parent / "reports"
SLA_OPTIONS = {"--sla-detection": "max_detection_s", "--sla-notification": "max_notification_s",
               "--sla-fallover": "max_fallover_s", "--sla-outage": "max_outage_s",
               "--sla-recovery": "max_recovery_s", "--sla-backup": "max_backup_s",
               "--sla-restore": "max_restore_s", "--sla-rpo": "max_rpo_s"}
run_dir_key = pytest.StashKey[Path]()
topology_key = pytest.StashKey[Topology]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("fallover", "fallover HA acceptance testing")
    group.addoption("--testbed", default=os.environ.get("FALLOVER_TESTBED", str(DEFAULT_TESTBED)),
                    help="topology/testbed YAML (default: the embedded testbeds/local.yaml)")
    group.addoption("--keep-testbed", action="store_true",
                    help="leave the testbed running after the session (faster reruns, debugging)")
    group.addoption("--allow-disruptive", action="store_true",
                    help="required to inject faults into any testbed that is not the embedded one")
    for opt, field in SLA_OPTIONS.items():
        group.addoption(opt, type=float, default=None, metavar="SECONDS",
                        help=f"override the topology's sla.{field}")
    group.addoption("--faults", default=None, metavar="NAME[,NAME…]", help="only these faults from the catalogue")
    group.addoption("--scenario", choices=["plan", "random"], default="plan",
                    help="plan: every fault × target once; random: --repeat faults drawn from the plan")
    group.addoption("--repeat", type=int, default=10, help="number of faults in a random scenario")
    group.addoption("--seed", type=int, default=None, help="seed of a random scenario (printed; replays it exactly)")
    group.addoption("--no-load", action="store_true", help="no locust load (probe only)")
    group.addoption("--users", type=int, default=None,
                    help="locust users during each fault (default: the testbed's, 10 on the embedded testbed)")
    group.addoption("--run-dir", default=None, help="where evidence goes (default reports/<run-id>)")
    group.addoption("--keep-logs", action="store_true", help="node log lines in logs/ for passing cases too")


def _topology(config: pytest.Config) -> Topology:
    if topology_key in config.stash:
        return config.stash[topology_key]
    try:
        topo = load_topology(Path(config.getoption("--testbed")))
    except UsageError as e:  # the harness-wide rule for bad input: one line, exit status 2
        pytest.exit(f"fallover: error: {e}", returncode=2)
    overrides = {field: config.getoption(opt) for opt, field in SLA_OPTIONS.items()
                 if config.getoption(opt) is not None}
    if overrides:
        topo = topo.model_copy(update={"sla": topo.sla.model_copy(update=overrides)})
    config.stash[topology_key] = topo
    return topo


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "testbed: needs root and the embedded testbed (real Pacemaker/Corosync)")
    config.addinivalue_line("markers", "failure(family): the failure family a test injects")
    config.addinivalue_line("markers", "disruptive: injects a fault that takes part of the cluster down")
    config.addinivalue_line("markers", "slow: takes more than a minute")
    sigterm_as_ctrl_c()  # `timeout`, a cancelled CI job: the case in flight heals as on Ctrl-C
    config.stash[outcomes_key] = log = OutcomeLog()
    config.pluginmanager.register(log, "fallover-outcomes")
    if config.getoption("--seed") is None:
        config.option.seed = random.SystemRandom().randrange(1, 2**31)
    worker = getattr(config, "workerinput", None)
    run_id = worker["fallover_run_id"] if worker else time.strftime("%Y%m%d-%H%M%S")
    run_dir = Path(config.getoption("--run-dir") or REPORTS / run_id)
    config.stash[run_dir_key] = run_dir
    topo = _topology(config)  # a bad topology file stops the run here, before anything is touched
    if _disruptive(topo) and not config.getoption("--allow-disruptive"):
        pytest.exit(f"fallover: error: {topo.source}: provider {topo.provider!r} reaches a cluster fallover did not "
                    "build; pass --allow-disruptive to inject faults into it", returncode=2)


def _disruptive(topo: Topology) -> bool:
    """Faults on a cluster of the user's (not one fallover builds itself: the embedded, an SSH lab, the VMs)."""
    return not topo.built_by_fallover


def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]  # xdist: one run id for all workers
    node.workerinput["fallover_run_id"] = node.config.stash[run_dir_key].name


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"fallover: testbed {config.getoption('--testbed')}; evidence in {config.stash[run_dir_key]}"]
    from harness.plan import excluded

    names = config.getoption("--faults")
    for e in excluded(_topology(config), [n.strip() for n in names.split(",")] if names else None):
        lines.append(f"fallover: {e}")
    if config.getoption("--scenario") == "random":
        lines.append(f"fallover: random scenario, --repeat {config.getoption('--repeat')} "
                     f"--seed {config.getoption('--seed')} (replay with these two options)")
    return lines


def selected_cases(config: pytest.Config, families: set[str] | None = None, suite: str | None = None,
                   repetitions: str | None = None) -> list[Case]:
    """The plan's cases of one suite: its families, and only the faults that name it as their suite
    (a suite module without SUITE takes the faults that name none). ``repetitions`` (a suite module's
    REPETITIONS): "leave out" the cases that repeat a failure type on another node of the same role
    (`harness.plan.repetitions`: the daily suite), or take "only" them (the matrix suite); None: all."""
    topo = _topology(config)
    names = config.getoption("--faults")
    wanted = [n.strip() for n in names.split(",")] if names else None
    unknown = [n for n in wanted or [] if n not in FAULTS]
    if unknown:
        raise pytest.UsageError(f"--faults: unknown fault {unknown[0]!r}; `fallover faults` lists them")
    random_mode = config.getoption("--scenario") == "random"
    every = plan(topo, wanted, every_split=random_mode)
    cases = [c for c in every
             if (families is None or FAULTS[c.fault].family in families) and FAULTS[c.fault].suite == suite]
    if repetitions is not None:
        from harness.plan import repetitions as repeated

        if repetitions not in ("leave out", "only"):
            raise pytest.UsageError(f"REPETITIONS = {repetitions!r}: 'leave out' or 'only'")
        again = repeated(topo, every)
        cases = [c for c in cases if (c.id in again) == (repetitions == "only")]
    if random_mode:
        rng = random.Random(config.getoption("--seed"))
        cases = [rng.choice(cases) for _ in range(config.getoption("--repeat"))] if cases else []
    return cases


def _param(case: Case, i: int | None = None) -> object:
    fault = FAULTS[case.fault]
    marks = [pytest.mark.failure(fault.family), pytest.mark.testbed]
    if fault.destructive:
        marks.append(pytest.mark.disruptive)
    if fault.suite == "slow":
        marks.append(pytest.mark.slow)
    cid = case.id if i is None else f"step{i:02d}-{case.id}"
    return pytest.param(case, id=cid, marks=marks)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "fallover_case" not in metafunc.fixturenames:
        return
    families = getattr(metafunc.module, "FAMILIES", None)
    cases = selected_cases(metafunc.config, families, getattr(metafunc.module, "SUITE", None),
                           getattr(metafunc.module, "REPETITIONS", None))
    outcomes = getattr(metafunc.module, "OUTCOMES", None)
    if outcomes is not None:  # e.g. recovery: only failures the cluster has to recover from
        from harness.plan import expect

        topo = _topology(metafunc.config)
        home = {g.name: g.nodes[0] for g in topo.groups}
        cases = [c for c in cases if expect(topo, c, home)[0].outcome in outcomes]
    random_mode = metafunc.config.getoption("--scenario") == "random"
    metafunc.parametrize("fallover_case", [_param(c, i + 1 if random_mode else None) for i, c in enumerate(cases)])


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # A random scenario is a sequence: keep it in drawing order even if other plugins reorder.
    if config.getoption("--scenario") == "random":
        items.sort(key=lambda it: it.nodeid.split("[step")[-1] if "[step" in it.nodeid else "")


def pytest_collection_finish(session: pytest.Session) -> None:
    """With --collect-only, each plan case with the outcome a correct cluster gives (where its group runs
    first: the first node of its list), so a plan can be read before anything is touched."""
    if not session.config.option.collectonly:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    from harness.plan import expect

    topo = _topology(session.config)
    home = {g.name: g.nodes[0] for g in topo.groups}
    for item in session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("fallover_case") if callspec is not None else None
        if isinstance(case, Case) and topo.groups:
            reporter.write_line(f"expected {item.name}: {'; '.join(e.describe() for e in expect(topo, case, home))}")


@pytest.fixture(scope="session")
def topology(pytestconfig: pytest.Config) -> Topology:
    """The declared cluster under test (with any --sla-* overrides applied)."""
    topo = _topology(pytestconfig)
    if _disruptive(topo) and not pytestconfig.getoption("--allow-disruptive"):
        raise pytest.UsageError(f"{topo.source}: provider {topo.provider!r} is a real cluster; "
                                "pass --allow-disruptive to inject faults into it")
    return topo


@pytest.fixture(scope="session")
def run_dir(pytestconfig: pytest.Config, topology: Topology) -> Path:
    """This run's evidence directory (shared by xdist workers); records what is needed to replay it."""
    d = pytestconfig.stash[run_dir_key]
    d.mkdir(parents=True, exist_ok=True)
    alluredir = pytestconfig.getoption("allure_report_dir", default=None)
    meta = {"testbed": str(topology.source), "seed": pytestconfig.getoption("--seed"),
            "scenario": pytestconfig.getoption("--scenario"), "repeat": pytestconfig.getoption("--repeat"),
            "faults": pytestconfig.getoption("--faults"), "sla": topology.sla.model_dump(),
            "alluredir": str(Path(alluredir).resolve()) if alluredir else None}
    (d / f"run-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}.json").write_text(json.dumps(meta, indent=1))
    from harness.report.environment import copy_topology

    copy_topology(topology, d)
    return d


def live_line(config: pytest.Config, line: str) -> None:
    """A progress line on the terminal now, from inside a fixture or a test.

    A plain ``reporter.write_line`` there goes into pytest's capture (it shows only under ``-s``,
    or in a failure's "Captured stdout"): a case's steps must show while it runs (fallover nightly).
    """
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return
    capman = config.pluginmanager.get_plugin("capturemanager")
    with capman.global_and_fixture_disabled() if capman is not None else contextlib.nullcontext():
        reporter.ensure_newline()
        reporter.write_line(line)


@pytest.fixture(scope="session")
def testbed(topology: Topology, pytestconfig: pytest.Config) -> Iterator[Testbed]:
    """The cluster's machines, brought up once per session (one per xdist worker) and torn down after."""
    from harness.report.environment import record_or_note
    from harness.testbed import open_testbed
    from harness.testbed.claim import hold

    tb = open_testbed(topology)

    def progress(msg: str) -> None:
        if pytestconfig.getoption("verbose") > 0:
            live_line(pytestconfig, f"[testbed] {msg}")

    try:  # one session per testbed, until it is down: another would undo its faults (harness/testbed/claim.py)
        pytestconfig.add_cleanup(hold(topology, "pytest " + " ".join(pytestconfig.invocation_params.args)))
    except UsageError as e:
        pytest.exit(str(e), returncode=2)
    try:
        tb.up(progress=progress)
        record_or_note(pytestconfig.stash[run_dir_key], topology, tb, pytestconfig.getoption("--seed"))
        yield tb
    finally:  # a bring-up that failed half-way is taken down too: nothing of it is left on the machine
        if not pytestconfig.getoption("--keep-testbed"):
            tb.down()
        opened = getattr(tb, "connections_opened", None)
        if opened is not None:  # the measure: ~one per node, plus one per restart (past pytest's capture)
            live_line(pytestconfig, f"[testbed] {topology.name}: {opened} SSH connections opened in this session")


@pytest.fixture
def cluster(testbed: Testbed) -> Driver:
    """The cluster driver, on a cluster that is whole again (nodes powered on, groups where they belong)."""
    testbed.up()
    return open_driver(testbed)


@pytest.fixture
def timeline() -> Timeline:
    """An empty timeline for a test's own recording."""
    return Timeline()


@pytest.fixture
def faults(testbed: Testbed, timeline: Timeline) -> Iterator[Nemesis]:
    """Inject faults by name; whatever is still injected when the test ends is healed."""
    n = Nemesis(testbed, timeline)
    try:
        yield n
    finally:
        n.heal_all()


@pytest.fixture(scope="session")
def runner(testbed: Testbed, run_dir: Path, pytestconfig: pytest.Config):  # type: ignore[no-untyped-def]
    """Runs plan cases under load and judges them (see harness.runner). One per session, like the testbed: it
    knows whether the last case left the cluster whole, so the next one need not make it whole again."""
    from harness.runner import Runner

    def log(msg: str) -> None:
        if pytestconfig.getoption("verbose") > 1:
            live_line(pytestconfig, f"[fallover] {msg}")

    runner = Runner(testbed, run_dir, load=not pytestconfig.getoption("--no-load"), log=log, spawn_ahead=True,
                    users=load_users(testbed, pytestconfig), keep_logs=pytestconfig.getoption("--keep-logs"))
    yield runner
    runner.close()  # the locust spawned ahead for a next case


def load_users(testbed: Testbed, config: pytest.Config) -> int:
    """`--users`, or the testbed's own load (a TCG guest's sample app falls behind 10 users)."""
    from harness.testbed.base import pace_of

    users = config.getoption("--users")
    return int(users) if users is not None else pace_of(testbed).load_users


class CaseError(Exception):
    """A case that could not be judged as a test of the cluster (setup failed, fault had no effect, a bug
    of ours). Not an AssertionError, so allure calls it "broken"; the plugin reports it as ERROR."""


def attach(result) -> None:  # type: ignore[no-untyped-def]
    """Evidence of one case into allure (a no-op without --alluredir): see harness.report.allure.ATTACHMENTS."""
    from harness.report.allure import attach_case

    attach_case(result.report(), result.run_dir)


def assert_case(result, message: str = "") -> None:  # type: ignore[no-untyped-def]
    """Attach the evidence, then PASS, FAIL (AssertionError) or ERROR (CaseError) as the case ended."""
    __tracebackhide__ = True  # the report is the message; this function's source is noise
    attach(result)
    text = (message + "\n" if message else "") + result.report()
    if result.status == "ERROR":
        raise CaseError(text)
    if not result.passed:  # not `assert`: pytest's rewrite would print the whole CaseResult after the report
        raise AssertionError(text)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    if call.excinfo is not None and call.excinfo.errisinstance(CaseError):
        rep.fallover_error = True


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):  # type: ignore[no-untyped-def]
    """A CaseError is counted and shown as an ERROR, not as a FAIL of the cluster."""
    if report.when == "call" and report.failed and getattr(report, "fallover_error", False):
        return "error", "E", "ERROR"
    return None


class OutcomeLog:
    """Each fault-plan test's outcome (on the controller too, under xdist), for the run's page: a test that
    errored before its case recorded anything still shows up there. Registered per config, no global state."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if "failure" not in report.keywords:  # only parameters of the fault plan carry the failure marker
            return
        if report.when != "call" and not report.failed:
            return
        outcome = "error" if report.when != "call" or getattr(report, "fallover_error", False) else report.outcome
        message = str(report.longrepr)[-2000:] if report.failed and report.longrepr else ""
        self.rows.append({"nodeid": report.nodeid, "when": report.when, "outcome": outcome, "message": message})


outcomes_key = pytest.StashKey[OutcomeLog]()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Write the run's HTML page (reports/<run-id>/index.html) when this session ran cases, also failing ones."""
    config = session.config
    if hasattr(config, "workerinput") or run_dir_key not in config.stash:
        return  # an xdist worker: the controller writes the page once every worker is done
    outcomes = config.stash[outcomes_key].rows if outcomes_key in config.stash else []
    run_dir = config.stash[run_dir_key]
    from harness.report.results import has_evidence

    if not outcomes and not has_evidence(run_dir):
        return
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "pytest-outcomes.json").write_text(json.dumps(outcomes, indent=1))
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    try:
        from harness.report import build

        line = f"fallover: sign-off report {build(run_dir)}"
    except Exception as e:  # noqa: BLE001 — the evidence is on disk; `fallover report` rebuilds the page
        (run_dir / "report-error.txt").write_text(f"{type(e).__name__}: {e}\n")
        line = f"fallover: the HTML report could not be built ({type(e).__name__}: {e}); see {run_dir}/report-error.txt"
    if reporter is not None:
        reporter.write_line(line)
