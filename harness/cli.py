"""The `fallover` command line: bring the embedded cluster up, look at it, run commands in it, tear it down."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import NoReturn

from rich.console import Console

from harness.errors import FalloverError, UsageError
from harness.interrupt import sigterm_as_ctrl_c
from harness.topology import DEFAULT_TESTBED, Topology, load_topology

console = Console(stderr=True, highlight=False)
out = Console(highlight=False, markup=False)


class Parser(argparse.ArgumentParser):
    """argparse, but bad flags give one line and exit 2 (the harness-wide rule for bad input)."""

    def error(self, message: str) -> NoReturn:
        print(f"{self.prog}: error: {message}", file=sys.stderr)
        sys.exit(2)


def _testbed_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--testbed", type=Path, default=Path(os.environ.get("FALLOVER_TESTBED", DEFAULT_TESTBED)),
                   help="topology/testbed YAML (default: the embedded testbeds/local.yaml)")


def build_parser() -> Parser:
    p = Parser(prog="fallover", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name, helptext in (("up", "build the testbed (idempotent) and wait until the cluster settles"),
                           ("down", "remove everything the testbed made"),
                           ("status", "nodes, networks, groups and where they run")):
        sp = sub.add_parser(name, help=helptext)
        _testbed_arg(sp)
        if name == "status":
            sp.add_argument("--json", action="store_true", help="machine-readable output")
    ex = sub.add_parser("exec", help="run a command inside a node or the client: fallover exec node1 -- crm status")
    _testbed_arg(ex)
    ex.add_argument("target", help="a node name or 'client'")
    ex.add_argument("cmd", nargs=argparse.REMAINDER, help="the command (after --)")
    ex.add_argument("--timeout", type=float, default=600.0)
    from harness.cli_faults import add_fault_commands

    add_fault_commands(sub, _testbed_arg)
    from harness.cli_box import add_box_commands

    add_box_commands(sub)
    from harness.cli_nightly import add_nightly_command

    add_nightly_command(sub, _testbed_arg)
    from harness.cli_backup import add_backup_commands

    add_backup_commands(sub, _testbed_arg)
    from harness.cli_report import add_report_commands

    add_report_commands(sub)
    return p


def _load(args: argparse.Namespace) -> Topology:
    return load_topology(args.testbed)


def _progress(status) -> Callable[[str], None]:  # type: ignore[no-untyped-def]
    t0 = time.monotonic()

    def show(msg: str) -> None:
        status.update(f"[{time.monotonic() - t0:5.1f}s] {msg}")
        if not console.is_terminal:
            console.print(f"[{time.monotonic() - t0:5.1f}s] {msg}")

    return show


def cmd_up(args: argparse.Namespace) -> int:
    from harness.testbed import open_testbed

    tb = open_testbed(_load(args))
    t0 = time.monotonic()
    try:
        with console.status("bringing the testbed up") as st:
            tb.up(progress=_progress(st))
    except KeyboardInterrupt:
        console.print("interrupted: removing the half-built testbed (another Ctrl-C does not cut this short)")
        with _teardown_uninterrupted():
            gone = tb.down()
        console.print(f"removed {len(gone)} things; `fallover down` removes whatever a kill left")
        return 130
    console.print(f"testbed {tb.topology.name} up in {time.monotonic() - t0:.1f}s")
    return cmd_status(args, testbed=tb)


@contextmanager
def _teardown_uninterrupted() -> Iterator[None]:
    """Ctrl-C and SIGTERM are noted, not obeyed, while a half-built testbed is removed: a teardown cut
    short leaves more behind than the one it interrupted. A no-op handler, not SIG_IGN, so that the
    commands the teardown runs keep their default dispositions (SIG_IGN would be inherited across exec)."""
    def note(signum: int, frame: object) -> None:
        console.print("still removing the testbed (kill -9 leaves the rest to `fallover down`)")

    old = {s: signal.signal(s, note) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def cmd_down(args: argparse.Namespace) -> int:
    from harness.testbed import open_testbed

    tb = open_testbed(_load(args))
    t0 = time.monotonic()
    with console.status("tearing down") as st:
        gone = tb.down(progress=_progress(st))
    for g in gone:
        console.print(f"  removed {g}")
    left = tb.leftovers()
    if left:
        console.print("still present: " + "; ".join(left), style="red", markup=False)
        return 1
    console.print(f"down in {time.monotonic() - t0:.1f}s; nothing left behind")
    return 0


def cmd_status(args: argparse.Namespace, testbed=None) -> int:  # type: ignore[no-untyped-def]
    from harness.status import collect, render

    from harness.testbed import open_testbed

    tb = testbed or open_testbed(_load(args))
    report = collect(tb)
    if getattr(args, "json", False):
        print(json.dumps(report, indent=2, sort_keys=True))
    else:
        render(report, out)
    return 0 if report["built"] else 1


def _exec_options(args: argparse.Namespace) -> list[str]:
    """The command after `--`; exec's own options written between the target and `--` count as given.

    `fallover exec node3 --testbed vms.yaml -- crm status` once ran `--testbed vms.yaml -- crm status` against the
    embedded testbed (the target's REMAINDER took them) and answered "node3 is not running"."""
    if "--" not in args.cmd:
        return list(args.cmd)
    at = args.cmd.index("--")
    before, cmd = args.cmd[:at], args.cmd[at + 1:]
    if before:
        own = argparse.ArgumentParser(prog="fallover exec", add_help=False, exit_on_error=False)
        own.add_argument("--testbed")
        own.add_argument("--timeout", type=float)
        try:
            given, extra = own.parse_known_args(before)
        except argparse.ArgumentError as e:
            raise UsageError(f"exec: {e}") from None
        if extra:
            raise UsageError(f"exec: {' '.join(extra)!r} before `--` is not an option of exec "
                             f"(fallover exec [--testbed FILE] [--timeout S] TARGET -- CMD ...)")
        for name in ("testbed", "timeout"):
            if getattr(given, name) is not None:
                setattr(args, name, getattr(given, name))
    return cmd


def cmd_exec(args: argparse.Namespace) -> int:
    from harness.testbed import open_testbed

    cmd = _exec_options(args)
    if not cmd:
        raise UsageError("exec: no command given (fallover exec NODE -- CMD ...)")
    topo = _load(args)
    if args.target not in [*topo.node_names, topo.client.name]:
        raise UsageError(f"exec: unknown target {args.target!r}; choose from "
                         f"{', '.join([*topo.node_names, topo.client.name])}")
    tb = open_testbed(topo)
    t = tb.client() if args.target == topo.client.name else tb.node(args.target)
    r = t.run(cmd, timeout=args.timeout, check=False)
    sys.stdout.write(r.stdout)
    sys.stderr.write(r.stderr)
    return r.exit_status if r.exit_status is not None else 124


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "up": cmd_up, "down": cmd_down, "status": cmd_status, "exec": cmd_exec,
}


CLAIMING = frozenset({"up", "down", "inject", "heal", "backup", "restore"})
"""Commands that change the testbed, so hold its claim (harness/testbed/claim.py). `nightly` does not: the
pytest sessions it starts claim for themselves. A dry run touches nothing and may look at a busy testbed."""


def _claimed(args: argparse.Namespace, argv: Sequence[str]) -> AbstractContextManager[object]:
    if args.command not in CLAIMING or getattr(args, "dry_run", False):
        return nullcontext()
    from harness.testbed.claim import claim

    return claim(_load(args), " ".join(["fallover", *argv]))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    sigterm_as_ctrl_c()
    from harness.cli_backup import BACKUP_COMMANDS
    from harness.cli_box import BOX_COMMANDS
    from harness.cli_faults import FAULT_COMMANDS
    from harness.cli_nightly import NIGHTLY_COMMANDS
    from harness.cli_report import REPORT_COMMANDS

    handler = {**COMMANDS, **FAULT_COMMANDS, **BOX_COMMANDS, **NIGHTLY_COMMANDS, **BACKUP_COMMANDS,
               **REPORT_COMMANDS}[args.command]
    try:
        with _claimed(args, sys.argv[1:] if argv is None else argv):
            return handler(args)
    except UsageError as e:
        print(f"fallover: error: {e}", file=sys.stderr)
        return 2
    except FalloverError as e:
        print(f"fallover: {args.command} failed: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("fallover: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
