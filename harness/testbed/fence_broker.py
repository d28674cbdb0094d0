"""The fence broker: runs in the root namespace and powers namespace nodes off (and on) for fenced.

`fence_fallover`, called by pacemaker-fenced inside a node, cannot kill its peers'
namespaces itself; it sends one line (`off node2`) over a unix socket to this daemon.
Every request is appended to `fence-events.jsonl`, which the timeline reads.
"""

from __future__ import annotations

import argparse
import json
import os
import socketserver
import sys
import threading
import time
from pathlib import Path

from harness.testbed import nodes
from harness.testbed.layout import Layout
from harness.topology import load_topology


class Broker:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lock = threading.Lock()  # one power action at a time: no double starts
        self.events = layout.state / "fence-events.jsonl"

    def handle(self, line: str) -> str:
        parts = line.split()
        if not parts:
            return "ERR empty request"
        action, args = parts[0], parts[1:]
        if action == "ping":
            return "OK"
        if action == "list":
            return " ".join(self.layout.topology.node_names)
        if len(args) != 1 or args[0] not in self.layout.topology.node_names:
            return f"ERR unknown node {' '.join(args)!r}"
        node = args[0]
        with self.lock:
            on = nodes.init_pid(self.layout, node) is not None
            if action == "status":
                return "ON" if on else "OFF"
            t0 = time.time()
            try:
                if action in ("off", "reboot") and on:
                    nodes.power_off(self.layout, node)
                if action in ("on", "reboot") and nodes.init_pid(self.layout, node) is None:
                    nodes.start(self.layout, node)
            except Exception as e:  # the agent must get an answer, whatever went wrong
                self._record(action, node, t0, f"ERR {e}")
                return f"ERR {e}"
            self._record(action, node, t0, "OK")
            return "OK"

    def _record(self, action: str, node: str, t0: float, outcome: str) -> None:
        line = json.dumps({"wall": t0, "done": time.time(), "action": action, "node": node, "outcome": outcome})
        with open(self.events, "a") as f:
            f.write(line + "\n")


def serve(layout: Layout) -> None:
    broker = Broker(layout)

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            line = self.rfile.readline(4096).decode(errors="replace").strip()
            self.wfile.write((broker.handle(line) + "\n").encode())

    sock = layout.fence_socket
    sock.unlink(missing_ok=True)
    server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
    os.chmod(sock, 0o600)
    server.daemon_threads = True
    server.serve_forever(poll_interval=0.5)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--topology", required=True)
    p.add_argument("--instance", default="")
    p.add_argument("--state-root", required=True)
    a = p.parse_args(argv)
    layout = Layout(load_topology(a.topology), instance=a.instance, state_root=Path(a.state_root))
    serve(layout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
