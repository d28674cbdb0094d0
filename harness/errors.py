"""The harness's exception hierarchy: every error says what was done, where, and what came back."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.result import Result


class FalloverError(Exception):
    """Base of every error the harness raises on purpose."""


class UsageError(FalloverError):
    """Bad input from the user (topology file, CLI flag): exit status 2, nothing touched."""


class TopologyError(UsageError):
    """A topology file that cannot be loaded; the message names the file and the field."""


class CommandFailed(FalloverError):
    """A command ran and exited non-zero (or was killed); carries its Result."""

    def __init__(self, result: Result, reason: str | None = None) -> None:
        self.result = result
        self.reason = reason
        super().__init__(str(self))

    def __str__(self) -> str:
        r = self.result
        head = f"{r.where}: `{r.command}` exited {r.exit_status}"
        if self.reason:
            head += f" ({self.reason})"
        tail = r.tail("stderr", 5) or r.tail("stdout", 5)
        return f"{head}: {tail}" if tail else head


class CommandTimedOut(CommandFailed):
    """A command did not finish within its timeout and was killed."""

    def __init__(self, result: Result, timeout: float) -> None:
        self.timeout = timeout
        super().__init__(result, reason=f"timed out after {timeout:g}s")


class TransportError(FalloverError):
    """The node could not be reached at all (dead namespace, SSH down): not a command failure."""

    def __init__(self, node: str, cause: str) -> None:
        self.node = node
        self.cause = cause
        super().__init__(f"{node}: unreachable: {cause}")


class WaitTimeout(FalloverError):
    """A condition did not become true before its deadline; says what was awaited and the last state."""

    def __init__(self, what: str, timeout: float, last: str | None = None) -> None:
        self.what = what
        self.timeout = timeout
        self.last = last
        msg = f"timed out after {timeout:g}s waiting for {what}"
        super().__init__(f"{msg}; last seen: {last}" if last else msg)


class TestbedError(FalloverError):
    """The testbed could not be built, started or torn down."""

    __test__ = False  # not a pytest test class despite the name


class HealError(FalloverError):
    """A fault could not be undone; the journal keeps it so `fallover heal` can retry."""


class BackupRefused(UsageError):
    """A backup directory that must not be restored (a changed byte, a missing file, another cluster's):
    the message names the file; nothing on the cluster has been touched."""
