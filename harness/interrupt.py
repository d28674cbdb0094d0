"""SIGTERM means Ctrl-C: a run that is stopped heals its faults and removes what it built.

`timeout`, a CI job being cancelled, or a `kill` ends a run with SIGTERM, whose default is to die at
once: the fault in flight stays injected until the next run or `fallover heal` replays the journal.
Raised as KeyboardInterrupt instead, it takes the path Ctrl-C takes (the case's heal, the testbed's
teardown, the plugin's session end). A background job of a non-interactive shell starts with SIGINT
ignored, so there SIGTERM is the only polite way to stop a run.
"""

from __future__ import annotations

import os
import signal

_MAIN_PID = os.getpid()


def sigterm(signum: int, frame: object) -> None:
    """The handler: KeyboardInterrupt in the main process only (a fork, e.g. a recorder, dies as usual)."""
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt


def sigterm_as_ctrl_c() -> None:
    """Install :func:`sigterm` for SIGTERM (main thread only, as Python requires)."""
    signal.signal(signal.SIGTERM, sigterm)
