"""`fallover backup DIR` and `fallover restore DIR`: the cluster's data and configuration, saved and put back."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.errors import UsageError
from harness.topology import load_topology


def add_backup_commands(sub: Any, testbed_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    b = sub.add_parser("backup", help="back up the cluster's shared data (under a filesystem freeze) and its "
                                      "configuration into a new directory")
    testbed_arg(b)
    b.add_argument("dir", type=Path, help="a new (or empty) directory for the backup")
    r = sub.add_parser("restore", help="check a backup against its manifest, then put the configuration and the "
                                       "data back and wait for full redundancy")
    testbed_arg(r)
    r.add_argument("dir", type=Path, help="a directory written by `fallover backup`")
    r.add_argument("--only", choices=["data", "config"], default=None, help="restore only this half of the backup")


def _progress() -> Callable[[str], None]:
    from harness.cli import console

    t0 = time.monotonic()

    def show(msg: str) -> None:
        console.print(f"[{time.monotonic() - t0:6.1f}s] {msg}", markup=False, soft_wrap=True)

    return show


def _cluster(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from harness.drivers import open_driver
    from harness.testbed import open_testbed

    topo = load_topology(args.testbed)
    tb = open_testbed(topo)
    if not getattr(tb, "is_built", True):
        raise UsageError(f"testbed {topo.name} is not up (run `fallover up`)")
    return tb, open_driver(tb)


def cmd_backup(args: argparse.Namespace) -> int:
    from harness.backup.procedure import backup

    dest: Path = args.dir
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise UsageError(f"{dest}: exists and is not an empty directory; a backup goes to a new one")
    tb, driver = _cluster(args)
    done = backup(tb, driver, dest, progress=_progress())
    groups = "; ".join(f"{name}: {g.files} files ({g.bytes} bytes) from {g.node}, writes held {g.freeze_s} s"
                       for name, g in done.meta.groups.items())
    print(f"backup of {tb.topology.name} in {dest} in {done.backup_s:.1f} s "
          f"(limit {tb.topology.sla.max_backup_s:g} s): {groups}; cluster configuration {done.meta.config}; "
          f"check it with: cd {dest} && sha256sum -c MANIFEST.sha256")
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from harness.backup.procedure import check_backup, restore

    check_backup(args.dir, load_topology(args.testbed), args.only)  # a bad backup stops here: nothing touched
    tb, driver = _cluster(args)
    sla = tb.topology.sla
    show = _progress()
    done = restore(tb, driver, args.dir, only=args.only, progress=show)
    show(f"restored in {done.restore_s:.1f} s; waiting for full redundancy")
    t0 = time.monotonic()
    driver.recover(timeout=sla.max_recovery_s + 60, progress=show)
    print(f"restored {tb.topology.name} from {args.dir}: configuration "
          f"{'replaced' if done.config_replaced else 'as saved, left alone' if args.only != 'data' else 'not restored'}"
          f"; data {'put back on ' + ', '.join(f'{g}: {n}' for g, n in done.nodes.items()) if done.nodes else 'not restored'}"
          f"; service answering after {done.restore_s:.1f} s (RTO, limit {sla.max_restore_s:g} s); "
          f"fully redundant {time.monotonic() - t0:.1f} s later")
    return 0


BACKUP_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"backup": cmd_backup, "restore": cmd_restore}
