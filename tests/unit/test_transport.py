"""The Result contract of transports, on the host transport (namespace transports share run_process)."""

from __future__ import annotations

import pytest

from harness.errors import CommandFailed, CommandTimedOut, TransportError
from harness.transport import HostTransport, NamespaceTransport


def test_exit_status_streams_and_quoting() -> None:
    t = HostTransport()
    r = t.run(["sh", "-c", "echo out; echo err >&2; exit 42"], timeout=10, check=False)
    assert (r.exit_status, r.stdout, r.stderr, r.ok) == (42, "out\n", "err\n", False)
    assert r.duration_s >= 0 and "exit=42" in repr(r)
    assert t.run(["printf", "%s", "a b; c"], timeout=10).stdout == "a b; c"  # argv: no shell
    assert t.run("echo $((6*7))", timeout=10).stdout == "42\n"  # a string is a shell line


def test_failure_raises_with_the_result_and_the_stderr_tail() -> None:
    with pytest.raises(CommandFailed) as e:
        HostTransport().run(["sh", "-c", "echo boom >&2; exit 3"], timeout=10)
    assert e.value.result.exit_status == 3
    assert "exited 3" in str(e.value) and "boom" in str(e.value)


def test_timeout_kills_the_whole_process_group_and_reports_unknown_status() -> None:
    with pytest.raises(CommandTimedOut) as e:
        HostTransport().run(["sh", "-c", "sleep 30 & sleep 30"], timeout=0.3)
    assert e.value.result.exit_status is None
    assert "timed out" in str(e.value)


def test_a_node_that_is_down_is_a_transport_error_not_a_command_failure() -> None:
    t = NamespaceTransport("node9", lambda: None)
    with pytest.raises(TransportError, match="node9: unreachable"):
        t.run(["true"], timeout=5)
    assert not t.alive()
