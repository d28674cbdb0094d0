"""`fallover box build|status`: the VM testbed's Vagrant box (built locally, cached, rebuilt when its inputs change)."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any


def add_box_commands(sub: Any) -> None:
    p = sub.add_parser("box", help="the VM testbed's Vagrant box: build (cached) or show it")
    bsub = p.add_subparsers(dest="box_command", required=True, parser_class=type(p))
    b = bsub.add_parser("build", help="build the box unless the cache holds one for the current inputs")
    b.add_argument("--force", action="store_true", help="rebuild even when the cache holds it")
    bsub.add_parser("status", help="the box for the current inputs: its name, directory, whether it is built")


def cmd_box(args: argparse.Namespace) -> int:
    from harness.cli import console
    from harness.testbed import vagrantbox

    if args.box_command == "status":
        box = vagrantbox.current()
        done = box.dir / "done.json"
        info = json.loads(done.read_text()) if done.exists() else {}
        print(json.dumps({"name": box.name, "dir": str(box.dir), "built": vagrantbox.is_built(box),
                          "added_to_vagrant": vagrantbox.box_added(box), "vagrant_home": str(vagrantbox.vagrant_home()),
                          **({"build_s": info["build_s"]} if "build_s" in info else {})}, indent=2))
        return 0 if vagrantbox.is_built(box) else 1
    t0 = time.monotonic()

    def show(msg: str) -> None:
        console.print(f"[{time.monotonic() - t0:6.1f}s] {msg}", markup=False)

    box = vagrantbox.build(show, force=args.force)
    console.print(f"box {box.name} ready in {time.monotonic() - t0:.1f}s (cache {box.dir})", markup=False)
    return 0


BOX_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"box": cmd_box}
