"""Commands on a node over SSH (fabric): one `fabric.Connection` per node, opened lazily and reused.

Why fabric (over paramiko) rather than the `ssh` binary: one TCP connection carries every
command of a run (a fault run sends thousands: polls, audits, heals), the socket can be created
by the caller (the embedded SSH lab opens it from inside its switch namespace), and auth/host-key
failures arrive as typed exceptions that become one line naming the host. The connection is a
`fabric.Connection` (no ssh_config files read: the inventory alone says where a node is); a
command is one channel on its transport rather than `Connection.run`, because the harness needs
what `run_process` gives locally: a hard remote kill at the timeout, stdin, and the exit status
of a command whose detached children keep its output open.

Semantics match `run_process`: a mandatory timeout after which the whole remote process group
is killed (`timeout -s KILL` on the node) and `CommandTimedOut` is raised; `CommandFailed` for
a non-zero exit; `TransportError` when the node cannot be reached at all. The `Result` shows the
caller's argv only: never the sudo/timeout/env wrapper, whose env values may carry secrets.
"""

from __future__ import annotations

import logging
import select
import shlex
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import fabric
import paramiko

from harness import oplog
from harness.errors import CommandFailed, CommandTimedOut, TransportError
from harness.inventory import SshHost
from harness.result import Result
from harness.transport.base import Command, as_argv

log = logging.getLogger("fallover.ssh")

SocketFactory = Callable[[str, int, float], socket.socket]
"""(host, port, timeout) → a connected socket; None in `SshTransport` means a plain TCP connect here."""

GRACE_S = 5.0
"""How long past a command's own timeout the harness waits for the node to report it killed."""


def wrap(argv: Sequence[str], *, timeout: float, user: str, sudo: bool,
         env: Mapping[str, str] | None = None) -> str:
    """The command line the node's shell runs: [sudo -n --] timeout -s KILL T [env K=V …] argv.

    `timeout` (GNU coreutils) leads its own process group and SIGKILLs all of it, so a command
    that outlives its timeout leaves nothing running on the node (like `run_process` here).

    >>> wrap(["echo", "a b"], timeout=5, user="ops", sudo=True)
    "sudo -n -- timeout -s KILL 5 echo 'a b'"
    """
    full: list[str] = ["timeout", "-s", "KILL", f"{max(timeout, 0.1):g}"]
    if env:
        full += ["env", *(f"{k}={v}" for k, v in env.items())]
    full += list(argv)
    if sudo and user != "root":
        full = ["sudo", "-n", "--", *full]
    return shlex.join(full)


def describe(exc: BaseException) -> str:
    """A connect failure as one clause, never with key material (paramiko messages carry none,
    but a key file's parse error may quote it: only the exception's type and first line are kept)."""
    if isinstance(exc, paramiko.AuthenticationException):
        return "authentication failed (wrong key or user, or the key is not in authorized_keys)"
    if isinstance(exc, paramiko.BadHostKeyException):
        return "host key does not match known_hosts (possible man-in-the-middle)"
    if isinstance(exc, paramiko.SSHException) and "not found in known_hosts" in str(exc):
        return "host key not in known_hosts (add it with ssh-keyscan, or set strict_host_key_checking: false)"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "connection timed out"
    if isinstance(exc, FileNotFoundError):
        return str(exc)
    text = str(exc).splitlines()[0] if str(exc) else ""
    if "PRIVATE KEY" in text or "BEGIN" in text:
        text = "unreadable private key"
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class SshTransport:
    """One node over SSH. Thread-safe: paramiko multiplexes channels over the one connection.

    ``connections_opened`` counts every connection of this process (all nodes): a run should
    open about one per node, plus one per node restart.
    """

    connections_opened: ClassVar[int] = 0
    _count_lock: ClassVar[threading.Lock] = threading.Lock()

    def __init__(self, name: str, endpoint: SshHost, *, known_hosts: Path | None, strict: bool,
                 connect_timeout: float, sock_factory: SocketFactory | None = None) -> None:
        self.name = name
        self.endpoint = endpoint
        self.known_hosts = known_hosts
        self.strict = strict
        self.connect_timeout = connect_timeout
        self.sock_factory = sock_factory
        self._conn: fabric.Connection | None = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        e = self.endpoint
        return f"<SshTransport {self.name} {e.user}@{e.host}:{e.port}>"

    # -- the connection -------------------------------------------------------------------------

    def connect(self) -> paramiko.Transport:
        """The live connection, opened (or re-opened after the node restarted) when needed."""
        with self._lock:
            c = self._conn
            if c is not None and c.is_connected:
                assert c.transport is not None
                return c.transport
            if c is not None:
                c.close()
            self._conn = self._open()
            assert self._conn.transport is not None
            return self._conn.transport

    def _open(self) -> fabric.Connection:
        e = self.endpoint
        where = f"{e.user}@{e.host}:{e.port}"
        sock = None
        conn: fabric.Connection | None = None
        try:  # reach the host first: an unreachable host is reported as such, whatever known_hosts says
            if self.sock_factory is not None:
                sock = self.sock_factory(e.host, e.port, self.connect_timeout)
            else:
                sock = socket.create_connection((e.host, e.port), timeout=self.connect_timeout)
            _keepalive(sock)
            conn = fabric.Connection(
                e.host, user=e.user, port=e.port,
                config=fabric.Config(overrides={"load_ssh_configs": False}),
                connect_kwargs={"sock": sock, "timeout": self.connect_timeout,
                                "banner_timeout": self.connect_timeout, "auth_timeout": self.connect_timeout,
                                "key_filename": str(e.key_file) if e.key_file else None,
                                "allow_agent": e.key_file is None, "look_for_keys": e.key_file is None})
            if self.strict:  # fabric's default policy adds unknown hosts: checking is on unless the inventory says no
                known = self.known_hosts or Path.home() / ".ssh" / "known_hosts"
                if not known.is_file():
                    raise FileNotFoundError(f"known_hosts file {known} does not exist")
                conn.client.load_host_keys(str(known))
                conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
            conn.open()
        except Exception as exc:  # noqa: BLE001 - every way a connect fails is one line naming the host
            if conn is not None:
                conn.client.close()
            if sock is not None:
                sock.close()
            raise TransportError(self.name, f"{where}: {describe(exc)}") from None
        with SshTransport._count_lock:
            SshTransport.connections_opened += 1
        log.info("%s: connected to %s (connection #%d of this process)", self.name, where,
                 SshTransport.connections_opened)
        return conn

    def close(self) -> None:
        """Drop the connection (the node was powered off: its TCP peer is gone without a word)."""
        with self._lock:
            if self._conn is not None:
                self._conn.client.close()
                self._conn = None

    def alive(self) -> bool:
        try:
            self.connect()
            return True
        except TransportError:
            return False

    # -- commands -------------------------------------------------------------------------------

    def run(self, cmd: Command, *, timeout: float, check: bool = True,
            env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        argv = as_argv(cmd)
        line = wrap(argv, timeout=timeout, user=self.endpoint.user, sudo=self.endpoint.sudo, env=env)
        started_at = time.time()
        t0 = time.monotonic()
        transport = self.connect()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
            if input is not None:
                chan.sendall(input.encode())
            chan.shutdown_write()
            status, out, err = _collect(chan, deadline=t0 + timeout + GRACE_S)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(self.name, f"connection lost: {describe(exc)}") from None
        duration = time.monotonic() - t0
        if status == -1 and not transport.is_active():  # the peer vanished mid-command (powered off, fenced)
            self.close()
            raise TransportError(self.name, f"connection lost while running `{shlex.join(argv)[:80]}`")
        # `timeout -s KILL` kills its whole group, itself included: the shell reports 137, or sshd an exit
        # signal (paramiko: -1). Either, at the deadline, is our kill (not the command's own exit).
        timed_out = status is None or (status in (137, -1) and duration >= timeout * 0.98)
        result = Result(node=self.name, argv=argv, exit_status=None if timed_out else status,
                        stdout=out.decode(errors="replace"), stderr=err.decode(errors="replace"),
                        duration_s=duration, started_at=started_at)
        oplog.command(result)  # the recovery runbook's record (a no-op outside a recorded phase)
        if timed_out:
            raise CommandTimedOut(result, timeout)
        if check and result.failed:
            raise CommandFailed(result)
        return result

    def stream(self, cmd: Command, *, timeout: float) -> paramiko.Channel:
        """A long-running command whose stdout the caller reads as it comes, on a channel of its own.

        Closing the channel (or losing the connection) closes the command's stdin: a watcher that
        exits on end of input leaves nothing on the node. ``timeout`` still bounds it (`timeout -s KILL`).
        """
        line = wrap(as_argv(cmd), timeout=timeout, user=self.endpoint.user, sudo=self.endpoint.sudo)
        transport = self.connect()
        try:
            chan = transport.open_session(timeout=self.connect_timeout)
            chan.exec_command(line)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(self.name, f"connection lost: {describe(exc)}") from None
        return chan


def _collect(chan: paramiko.Channel, deadline: float) -> tuple[int | None, bytes, bytes]:
    """Read stdout and stderr together until exit (None: past the deadline, the channel is closed).

    A detached child that kept our stdout open would hold EOF back forever: once the exit status
    is in, output still arriving within half a second is taken, then the channel is closed.
    """
    out, err = bytearray(), bytearray()
    exited_at: float | None = None
    try:
        while True:
            select.select([chan], [], [], 0.1)
            while chan.recv_ready():
                out += chan.recv(65536)
            while chan.recv_stderr_ready():
                err += chan.recv_stderr(65536)
            now = time.monotonic()
            if chan.exit_status_ready():
                exited_at = exited_at or now
                if chan.eof_received or now - exited_at > 0.5:
                    if not (chan.recv_ready() or chan.recv_stderr_ready()):
                        return chan.recv_exit_status(), bytes(out), bytes(err)
            elif chan.closed:
                raise EOFError("channel closed before the command exited")
            if now > deadline:
                return None, bytes(out), bytes(err)
    finally:
        chan.close()


def _keepalive(sock: socket.socket) -> None:
    """Notice a node that vanished (powered off: no FIN, no RST) within seconds, not minutes."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for opt, value in (("TCP_KEEPIDLE", 2), ("TCP_KEEPINTVL", 1), ("TCP_KEEPCNT", 3), ("TCP_USER_TIMEOUT", 5000)):
        if hasattr(socket, opt):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, opt), value)
