"""The mount watcher: the node-side script really reports mount changes and ends with its input; the
harness side uses a watcher's report, falls back to a plain read, and stops restarting a watcher that fails."""

from __future__ import annotations

import os
import queue
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.testbed import mountwatch
from harness.testbed.mountwatch import WATCHER, MountWatch, MountWatches, parse


def test_parse_undoes_the_octal_escapes_of_proc_mounts() -> None:
    assert parse("mounts\t/\t/srv/app\t/mnt/a\\040b\t/mnt/tab\\011x\n") == {"/", "/srv/app", "/mnt/a b", "/mnt/tab\tx"}
    assert parse("mounts\n") == set()
    assert parse("Traceback (most recent call last):") is None
    assert parse("") is None


def _line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> set[str]:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "the watcher printed nothing"
    found = parse(proc.stdout.readline().decode())
    assert found is not None
    return found


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("unshare") is None, reason="mounts need root and unshare")
def test_the_watcher_reports_the_table_and_every_change_and_ends_with_its_input(tmp_path: Path) -> None:
    """Run as on a node (python3 -S), in a mount namespace of its own: a tmpfs mounted and unmounted there."""
    target = tmp_path / "with blank"
    target.mkdir()
    # the watcher's input is a FIFO the shell holds open (fd 4) until it is told to close it
    script = ('mkfifo "$3"; python3 -S -c "$1" < "$3" & pid=$!; exec 4> "$3"; '
              'read -r _; mount -t tmpfs none "$2"; read -r _; umount "$2"; read -r _; '
              'kill -0 $pid && echo alive-with-its-input-open; exec 4>&-; wait $pid; echo "exit $?"')
    proc = subprocess.Popen(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", WATCHER,
                             str(target), str(tmp_path / "in")], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        first = _line(proc)
        assert "/" in first and str(target) not in first
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert str(target) in _line(proc)  # mounted: reported at once, no poll interval
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        assert str(target) not in _line(proc)
        proc.stdin.write(b"go\n")  # close its input
        proc.stdin.flush()
        out = proc.stdout.read().decode()
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)
    assert out.splitlines() == ["alive-with-its-input-open", "exit 0"], out


class FakeStream:
    """A channel: lines put in arrive from recv; b"" (end) when closed."""

    def __init__(self) -> None:
        self.q: queue.Queue[bytes] = queue.Queue()
        self.closed = False

    def put(self, data: bytes) -> None:
        self.q.put(data)

    def recv(self, nbytes: int) -> bytes:
        return self.q.get(timeout=10)

    def close(self) -> None:
        self.closed = True
        self.q.put(b"")


def _until(cond, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met"
        time.sleep(0.01)


def test_a_watcher_keeps_the_last_report_split_across_reads_and_says_nothing_once_ended() -> None:
    s = FakeStream()
    w = MountWatch("node1", s)
    assert w.targets() is None  # nothing reported yet
    s.put(b"mounts\t/\t/srv/")
    s.put(b"app\nnoise\n")
    _until(lambda: w.targets() is not None)
    assert w.targets() == {"/", "/srv/app"}
    s.put(b"mounts\t/\n")
    _until(lambda: w.targets() == {"/"})
    s.put(b"")  # the node went: its last report is no longer the node's state
    _until(lambda: not w.alive)
    assert w.targets() is None and w.reported


def test_watches_read_the_old_way_until_a_watcher_reports_then_never_ask_the_node() -> None:
    streams: list[FakeStream] = []

    def start(node: str) -> FakeStream:
        streams.append(FakeStream())
        return streams[-1]

    reads: list[str] = []

    def read() -> set[str]:
        reads.append("findmnt")
        return {"/", "/from-findmnt"}

    watches = MountWatches(start)
    assert watches.targets("node1", read) == {"/", "/from-findmnt"} and len(streams) == 1
    streams[0].put(b"mounts\t/\t/srv/app\n")
    _until(lambda: watches.targets("node1", read) == {"/", "/srv/app"})
    n = len(reads)
    for _ in range(5):
        assert watches.targets("node1", read) == {"/", "/srv/app"}
    assert len(reads) == n and len(streams) == 1  # no command on the node per look
    # the node rebooted: the watcher ended after reporting, so a new one is started
    streams[0].put(b"")
    _until(lambda: not watches._watches["node1"].alive)
    assert watches.targets("node1", read) == {"/", "/from-findmnt"} and len(streams) == 2
    watches.close()
    assert all(s.closed for s in streams)


def test_a_node_whose_watcher_never_reports_is_polled_without_a_new_watcher_each_look() -> None:
    started: list[FakeStream] = []

    def start(node: str) -> FakeStream:  # python3 missing: the channel ends at once, nothing printed
        s = FakeStream()
        s.put(b"")
        started.append(s)
        return s

    watches = MountWatches(start)
    for _ in range(10):
        assert watches.targets("node1", lambda: {"/"}) == {"/"}
        time.sleep(0.05)
    assert len(started) == mountwatch.GIVE_UP_AFTER


def test_a_watcher_that_cannot_be_started_leaves_the_plain_read() -> None:
    def start(node: str) -> FakeStream:
        raise OSError("connection refused")

    assert MountWatches(start).targets("node1", lambda: {"/x"}) == {"/x"}


def test_the_watcher_imports_nothing_but_os_and_select() -> None:
    """It runs on every node for the whole run: no site, nothing that would cost a guest's CPU at its start."""
    r = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", WATCHER], input=b"", capture_output=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    assert parse(r.stdout.decode().splitlines()[0]) is not None
    imported = {line.split("|")[-1].strip() for line in r.stderr.decode().splitlines() if "|" in line}
    assert not imported & {"re", "json", "subprocess", "socket", "site", "threading"}, imported
