"""Transports for the embedded testbed: the host itself, and a namespace entered with nsenter."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from harness.errors import CommandFailed, TransportError
from harness.result import Result
from harness.transport.base import Command, as_argv, run_process


@dataclass
class HostTransport:
    """Commands on this machine's root namespaces (used for the testbed's own plumbing)."""

    name: str = "host"

    def run(self, cmd: Command, *, timeout: float, check: bool = True,
            env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        return run_process(self.name, as_argv(cmd), timeout=timeout, check=check, env=env, input=input)

    def alive(self) -> bool:
        return True


@dataclass
class NamespaceTransport:
    """Commands inside a node's namespaces via ``nsenter``.

    ``target`` returns the PID whose namespaces to enter (a node's init, which changes when
    the node is restarted), or None when the node is down. ``all_namespaces`` enters net,
    mount, uts, ipc and pid (a cluster node: crm tools need its /dev/shm and abstract
    sockets); otherwise only the network namespace (the client).
    """

    name: str
    target: Callable[[], int | None]
    all_namespaces: bool = True

    def run(self, cmd: Command, *, timeout: float, check: bool = True,
            env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        pid = self.target()
        if pid is None:
            raise TransportError(self.name, "node is not running")
        argv = as_argv(cmd)
        flags = ["-a"] if self.all_namespaces else ["-n"]
        wrapped = ["nsenter", "-t", str(pid), *flags, "--", *argv]
        result = run_process(self.name, wrapped, timeout=timeout, check=False, env=env, input=input,
                             shown_argv=argv)
        # nsenter's own failure (namespace gone mid-call) is a transport problem, not the command's
        if result.exit_status == 1 and result.stderr.startswith("nsenter:"):
            raise TransportError(self.name, result.stderr.strip())
        if check and result.failed:
            raise CommandFailed(result)
        return result

    def alive(self) -> bool:
        return self.target() is not None


@dataclass
class NetnsTransport:
    """Commands in a named network namespace only (the client host: load and probe need no more)."""

    name: str
    netns_path: str

    def run(self, cmd: Command, *, timeout: float, check: bool = True,
            env: Mapping[str, str] | None = None, input: str | None = None) -> Result:
        if not self.alive():
            raise TransportError(self.name, f"{self.netns_path} does not exist (is the testbed up?)")
        argv = as_argv(cmd)
        result = run_process(self.name, self.wrap(argv), timeout=timeout, check=False, env=env, input=input,
                             shown_argv=argv)
        if check and result.failed:
            raise CommandFailed(result)
        return result

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """argv that runs a (long-lived) process in this namespace: load generators, probes."""
        return ["nsenter", f"--net={self.netns_path}", "--", *argv]

    def alive(self) -> bool:
        return os.path.exists(self.netns_path)
