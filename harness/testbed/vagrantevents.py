"""The VM testbed's notification collector: the guests' alert agents send their event lines here.

Runs in the lab (network namespace), listening on the harness's management address. Each connection
carries one or more JSON lines of `fallover-alert`; each line is appended whole (one write on an
O_APPEND fd) to the testbed's notification log on the harness's side, with `wall` set to the time it
arrived (a TCG guest's clock drifts; the guest's own stamp is kept as `guest_wall`). A `fencing` alert is also
written to the fence log in the fence broker's format, so the fence verdicts read VM fencing too
(`wall` is when the alert was sent, i.e. when fencing completed: fence_virtd itself keeps no log).

    python -m harness.testbed.vagrantevents --listen 10.81.9.1:7700 --notifications N --fences F
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import time
from pathlib import Path
from typing import Any


def fence_line(event: dict[str, Any]) -> bytes | None:
    """The fence-events.jsonl line for a fencing alert, None for any other event.

    >>> fence_line({"kind": "fencing", "node": "node1", "task": "off", "rc": "0", "wall": 5.0})
    b'{"action": "off", "done": 5.0, "node": "node1", "outcome": "ok", "wall": 5.0}\\n'
    """
    if event.get("kind") != "fencing" or not event.get("node"):
        return None
    ok = str(event.get("rc", "")) == "0"
    rec = {"wall": event.get("wall"), "done": event.get("wall"), "action": event.get("task") or "off",
           "node": event["node"], "outcome": "ok" if ok else f"failed: {event.get('desc', '')}".strip()}
    return (json.dumps(rec, sort_keys=True) + "\n").encode()


def _append(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o664)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def accept(data: bytes, notifications: Path, fences: Path, now: float | None = None) -> int:
    """Append every complete, valid line, stamped with the harness's clock; returns how many were taken."""
    taken = 0
    arrived = time.time() if now is None else now
    for line in data.splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            continue
        if not isinstance(event, dict):
            continue
        if "wall" in event:
            event["guest_wall"] = event["wall"]
        event["wall"] = arrived
        _append(notifications, (json.dumps(event, sort_keys=True) + "\n").encode())
        fl = fence_line(event)
        if fl is not None:
            _append(fences, fl)
        taken += 1
    return taken


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--listen", required=True)
    p.add_argument("--notifications", type=Path, required=True)
    p.add_argument("--fences", type=Path, required=True)
    a = p.parse_args(argv)
    host, _, port = a.listen.rpartition(":")

    class Handler(socketserver.StreamRequestHandler):
        timeout = 10

        def handle(self) -> None:
            accept(self.rfile.read(1 << 20), a.notifications, a.fences)

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    with socketserver.ThreadingTCPServer((host, int(port)), Handler) as srv:
        srv.serve_forever()


if __name__ == "__main__":
    main()
