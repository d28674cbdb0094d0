"""What a command did on a node: a value, never a tuple, so failures can be reported fully."""

from __future__ import annotations

import shlex
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    """Outcome of one command run through a transport.

    >>> Result(node="node1", argv=("true",), exit_status=0, stdout="", stderr="", duration_s=0.01).ok
    True

    ``exit_status`` is None when the command was killed by a timeout: an honest "unknown".
    """

    node: str
    argv: tuple[str, ...]
    exit_status: int | None
    stdout: str
    stderr: str
    duration_s: float
    started_at: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    @property
    def failed(self) -> bool:
        return not self.ok

    @property
    def command(self) -> str:
        return shlex.join(self.argv)

    @property
    def where(self) -> str:
        return self.node

    def tail(self, stream: str = "stderr", count: int = 10) -> str:
        text: str = getattr(self, stream)
        return "\n".join(text.strip().splitlines()[-count:])

    def __repr__(self) -> str:
        return f"<Result node={self.node} argv={self.command!r} exit={self.exit_status} {self.duration_s:.3f}s>"
