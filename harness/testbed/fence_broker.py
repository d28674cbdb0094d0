"""The fence broker: runs in the root namespace and powers namespace nodes off (and on) for fenced.

`fence_fallover`, called by pacemaker-fenced inside a node, cannot kill its peers'
namespaces itself; it sends one line (`off node2`) over a unix socket to this daemon.
Every request is appended to `fence-events.jsonl`, which the timeline reads.

There is one socket per fence device of the topology (`cluster.fencing_topology`): the broker
knows which device asks by the socket it was asked on, so the fence faults can break one level
alone. A broken device (`Layout.fence_fault`) answers power actions with an error (`fail`), or
holds them without an answer (`hang`) until the fault is healed or the agent gives up; its
monitor (`ping`) still answers, like a fence device whose management port is up and whose power
switch is jammed, so the cluster sees a failed fence rather than a stopped device.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
from pathlib import Path

from harness.testbed import nodes
from harness.testbed.layout import Layout
from harness.topology import load_topology


HANG_MAX_S = 600.0  # a hang nobody heals ends here, answered with an error, so no thread is held for ever
_HANG_POLL_S = 0.2


class Broker:
    def __init__(self, layout: Layout) -> None:
        self.layout = layout
        self.lock = threading.Lock()  # one power action at a time: no double starts
        self.events = layout.state / "fence-events.jsonl"

    def broken(self, device: str) -> str | None:
        """`fail` or `hang` while a fence fault holds the device; None when it works."""
        try:
            mode = self.layout.fence_fault(device).read_text().strip()
        except FileNotFoundError:
            return None
        return mode if mode in ("fail", "hang") else "fail"  # an unreadable switch breaks, never passes

    def handle(self, line: str, device: str = "fence", conn: socket.socket | None = None) -> str:
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
        if action in ("off", "reboot", "on") and (mode := self.broken(device)) is not None:
            return self._broken(mode, action, node, device, conn)
        with self.lock:
            on = nodes.init_pid(self.layout, node) is not None
            if action == "status":
                return "ON" if on else "OFF"
            t0 = time.time()
            try:
                if action in ("off", "reboot") and on:
                    nodes.power_off(self.layout, node)
                if action in ("on", "reboot"):
                    nodes.start_if_off(self.layout, node)
            except Exception as e:  # the agent must get an answer, whatever went wrong
                self._record(action, node, t0, f"ERR {e}", device)
                return f"ERR {e}"
            self._record(action, node, t0, "OK", device)
            return "OK"

    def _broken(self, mode: str, action: str, node: str, device: str, conn: socket.socket | None) -> str:
        """A fence fault: fail at once, or hold until healed or until the agent hangs up (its timeout)."""
        t0 = time.time()
        if mode == "fail":
            self._record(action, node, t0, f"ERR fence_fail: device {device} failed", device)
            return f"ERR device {device} failed (fence_fail)"
        deadline = time.monotonic() + HANG_MAX_S
        while self.broken(device) == "hang" and time.monotonic() < deadline:
            if conn is not None and _hung_up(conn):
                self._record(action, node, t0, f"TIMEOUT fence_hang: device {device} hung; the agent gave up "
                                                f"after {time.time() - t0:.1f} s", device)
                return "ERR hung"
            time.sleep(_HANG_POLL_S)
        self._record(action, node, t0, f"ERR fence_hang: device {device} hung for {time.time() - t0:.1f} s", device)
        return f"ERR device {device} hung (fence_hang)"

    def _record(self, action: str, node: str, t0: float, outcome: str, device: str = "fence") -> None:
        if action == "on":
            return  # never asked by the cluster (stonith-action=off, no unfencing): the fence faults' own check
        line = json.dumps({"wall": t0, "done": time.time(), "action": action, "node": node, "outcome": outcome,
                           "device": device})
        with open(self.events, "a") as f:
            f.write(line + "\n")


def _hung_up(conn: socket.socket) -> bool:
    """Whether the agent closed its end (it was killed at its timeout): readable with nothing to read."""
    readable, _, _ = select.select([conn], [], [], 0)
    if not readable:
        return False
    try:
        return conn.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def serve(layout: Layout) -> None:
    """One socket per fence device, all served by one broker (one lock: one power action at a time)."""
    broker = Broker(layout)
    servers = []
    for device in layout.topology.cluster.fencing_topology:

        class Handler(socketserver.StreamRequestHandler):
            name = device

            def handle(self) -> None:
                line = self.rfile.readline(4096).decode(errors="replace").strip()
                self.wfile.write((broker.handle(line, self.name, self.connection) + "\n").encode())

        sock = layout.fence_socket_for(device)
        sock.unlink(missing_ok=True)
        server = socketserver.ThreadingUnixStreamServer(str(sock), Handler)
        os.chmod(sock, 0o600)
        server.daemon_threads = True
        servers.append(server)
    for server in servers[1:]:
        threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5}, daemon=True).start()
    servers[0].serve_forever(poll_interval=0.5)


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
