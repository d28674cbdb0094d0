"""Log audit: error lines the cluster, its agents and the app wrote since a mark, minus the ones we can explain.

A bad line is explained by one of four things, each with its reason: it is harmless whatever
happens (IGNORE), it is the consequence of a fault that was injected (CONSEQUENCES, keyed by
fault), it is the noise of a daemon the fault or the recovery disrupted, by construction from
the timeline (harness.audits.noise), or the lines around it in the same log (or the same instant in
another node's) show a known harmless sequence (a corosync still starting: CorosyncStarts; a
Filesystem stop that met its own cancelled monitor: harness.audits.unmount_race; a stall of the
machine the nodes share: harness.audits.host_stall). Everything else is a finding. A log that could
not be read makes the audit unknown, never ok: a wrong path must not audit clean.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from harness.audits.logrules import (BAD_NEWS, CONSEQUENCES, IGNORE, WARNING_SIGNS, IgnoreRule, Rule,
                                     consequences_for, expected_for, ignored_by, is_bad, warning_sign)
from harness.audits.host_stall import HostStalls
from harness.audits.noise import Disruption, disruptions_from, explain
from harness.audits.unmount_race import UnmountAfterCancel
from harness.checkers.base import UNKNOWN, Verdict
from harness.testbed.base import LogFile, Testbed

__all__ = ["BAD_NEWS", "CONSEQUENCES", "IGNORE", "WARNING_SIGNS", "AuditResult", "Disruption", "IgnoreRule",
           "LogAudit", "LogLine", "Rule", "consequences_for", "disruptions_from", "expected_for", "ignored_by", "is_bad",
           "warning_sign"]


@dataclass(frozen=True)
class LogLine:
    node: str
    file: str
    line: str

    def __str__(self) -> str:
        return f"{self.node} {self.file}: {self.line}"


Status = Literal["ok", "findings", "unknown"]


@dataclass(frozen=True)
class AuditResult:
    """Every bad line since the mark, either a finding or expected with its reason; and what could not be read."""

    findings: list[LogLine]
    expected: list[tuple[LogLine, str]]
    unreadable: list[str]  # "path: why", one per log the audit could not vouch for
    lines_read: int = 0
    files_read: int = 0

    @property
    def status(self) -> Status:
        """A finding fails the case whatever else; an unread log leaves it unknown; only then is it ok."""
        return "findings" if self.findings else "unknown" if self.unreadable else "ok"

    @property
    def explanation(self) -> str:
        unread = f"could not read {'; '.join(self.unreadable)}" if self.unreadable else ""
        if self.findings:
            sign = warning_sign(self.findings[0].line)
            why = f" ({sign.reason})" if sign else ""
            return (f"{len(self.findings)} unexpected error line(s), first: {self.findings[0]}{why}"
                    + (f"; also {unread}" if unread else ""))
        if unread:
            return f"{unread}: the audit cannot vouch for a log it did not read"
        return (f"no unexpected error line in {self.lines_read} new lines of {self.files_read} logs"
                f" ({len(self.expected)} expected, each with its reason)")

    def verdict(self, name: str = "logs", evidence: Path | None = None) -> Verdict:
        """The result as a checker verdict: findings fail, an unread log is unknown. ``evidence``: the
        directory :meth:`save` wrote to, named in the explanation."""
        valid = False if self.findings else UNKNOWN if self.unreadable else True
        where = ""
        if evidence is not None:
            where = f" (all in {evidence / 'log-findings.txt'})" if self.findings \
                else f" (why each is expected: {evidence / 'log-expected.txt'})" if self.expected else ""
        return Verdict(name, valid, len(self.findings), 0, "lines", self.explanation + where)

    def save(self, directory: Path) -> list[Path]:
        """Evidence: log-findings.txt (when there are findings), log-expected.txt (each line and why), and
        log-unreadable.txt (when a log could not be read)."""
        out = []
        for name, rows in (("log-findings.txt", [str(f) + (f"\n    a sign of trouble: {sign.reason}"
                                                          if (sign := warning_sign(f.line)) else "")
                                                 for f in self.findings]),
                           ("log-expected.txt", [f"{ln}\n    because {why}" for ln, why in self.expected]),
                           ("log-unreadable.txt", self.unreadable)):
            if rows or name == "log-expected.txt":
                path = directory / name
                path.write_text("".join(r + "\n" for r in rows))
                out.append(path)
        return out


@dataclass
class _Read:
    lines: list[LogLine] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    files: int = 0


class LogAudit:
    """Remember how far each node log was written, later return the new error lines nobody expected.

    >>> audit = LogAudit(testbed)          # doctest: +SKIP
    >>> audit.mark(); run_the_test()       # doctest: +SKIP
    >>> audit.result(disruptions_from(timeline, topology), faults=["node_power_off"]).status  # doctest: +SKIP
    'ok'

    The testbed reads the files (`Testbed.log_files`, `read_log`): the embedded one on the host, so
    the logs of a fenced or powered-off node are still audited; a remote one over its transport.
    """

    def __init__(self, testbed: Testbed) -> None:
        self.testbed = testbed
        self._offsets: dict[LogFile, tuple[int, int]] = {}  # log → (identity, size) at the mark
        self.mark_wall: float | None = None
        self.unreadable: list[str] = []  # of the last read: "node:path: why"
        self.pipeline: list[str] = []  # logs whose marker never arrived (check_pipeline): unknown, never ok
        self._markers: list[Any] | None = None  # sent by send_markers, not yet looked for

    def mark(self) -> None:
        """From now on: only lines written after this call are findings."""
        self.mark_wall = time.time()
        self._offsets = {log: self.testbed.log_size(log) for log in self.testbed.log_files()}

    def read(self) -> _Read:
        """Every complete line written since :meth:`mark` (a file that appeared since is read whole), and the
        logs that could not be read: a required one missing, an app log gone since the mark, any read error."""
        out = _Read()
        listed = self.testbed.log_files()
        gone = [log for log, (inode, _) in self._offsets.items() if inode and log not in listed]
        out.unreadable += [f"{_name(log)}: present at the mark, gone at the end" for log in gone]
        for log in listed:
            inode, start = self._offsets.get(log, (0, 0))
            try:
                identity, data = self.testbed.read_log(log, start)
                if identity != inode:  # re-created (testbed rebuilt): all of it is new
                    _, data = self.testbed.read_log(log, 0)
            except FileNotFoundError:
                out.unreadable += [f"{_name(log)}: missing"] if log.required or inode else []
                continue
            except OSError as e:
                out.unreadable.append(f"{_name(log)}: {e.strerror or e}")
                continue
            out.files += 1
            # a line still being written has no newline yet; it belongs to the next look
            data = data[: data.rfind(b"\n") + 1]
            # NULs: a node powered off keeps a block of them where its log's unwritten tail was (the size had
            # reached the disk, the data had not), and the next boot's first line follows them on the same line.
            # What came before them may be half a line of the old boot: the block ends a line, so that the new
            # boot's line starts one of its own (partition-node1 on the VMs, 2026-12-01: "… [255] node1" and then
            # "Dec 01 21:43:37.548 [254] node1 corosync notice [MAIN  ] Corosync Cluster Engine … starting up")
            out.lines += [LogLine(log.node, log.path.rsplit("/", 1)[-1], raw) for raw in
                          _NULS.sub(b"\n", data).decode("utf-8", errors="replace").splitlines()]
        self.unreadable = out.unreadable
        return out

    def send_markers(self) -> None:
        """Write a marker through every running node's logging (see :meth:`check_pipeline`); may run early, beside
        other work, so that the check later finds them arrived."""
        from harness.audits import logpipe

        self._markers, self.pipeline = logpipe.write_markers(self.testbed, self.testbed.log_files())

    def check_pipeline(self, timeout: float | None = None) -> list[str]:
        """Look for the markers (written now unless :meth:`send_markers` ran) in the audited files (CTS's LogAudit);
        every file one did not reach is kept in :attr:`pipeline` and makes :meth:`result` unknown."""
        from harness.audits import logpipe

        if self._markers is None:
            self.send_markers()
        markers, self._markers = self._markers or [], None
        try:
            self.pipeline += logpipe.check_markers(
                markers, lambda: ((ln.node, ln.file, ln.line) for ln in self.read().lines),
                logpipe.ARRIVE_S if timeout is None else timeout)
        finally:
            logpipe.clear(self.testbed, markers)
        return self.pipeline

    def save_lines(self, directory: Path) -> list[Path]:
        """Every line each log got since the mark, one file per log (``<node>-<file>``), for a case that did not pass.

        The findings and expected lines say what the audit judged; a failure's cause is often in the lines
        around them (a fence never asked for, a transition that never ran), and the node logs themselves
        start over when the testbed is rebuilt for the next run.
        """
        by_log: dict[str, list[str]] = {}
        for ln in self.read().lines:
            by_log.setdefault(f"{ln.node}-{ln.file}", []).append(ln.line)
        if not by_log:
            return []
        directory.mkdir(parents=True, exist_ok=True)
        out = []
        for name, lines in sorted(by_log.items()):
            path = directory / name
            path.write_text("".join(line + "\n" for line in lines))
            out.append(path)
        return out

    def new_lines(self) -> Iterable[LogLine]:
        """The lines of :meth:`read`; what could not be read is in :attr:`unreadable` afterwards."""
        return iter(self.read().lines)

    def findings(self, expected: Sequence[re.Pattern[str] | str] = ()) -> list[LogLine]:
        """Error lines since the mark that no IGNORE rule and no ``expected`` pattern accounts for.

        Knows no disruption and says nothing about unread logs: :meth:`result` is the audit."""
        allowed = [re.compile(p) if isinstance(p, str) else p for p in expected]
        return [ln for ln in self.new_lines()
                if is_bad(ln.line) and ignored_by(ln.line) is None and not any(p.search(ln.line) for p in allowed)]

    def result(self, disruptions: Sequence[Disruption] = (), faults: Iterable[str] = ()) -> AuditResult:
        """The audit of everything written since the mark.

        ``disruptions``: from :func:`harness.audits.noise.disruptions_from` over the case's saved
        timeline; ``faults``: the names of the faults injected (for their consequence rules).
        """
        consequences = consequences_for(*faults)
        near = self.mark_wall if self.mark_wall is not None else time.time()
        read = self.read()
        findings: list[LogLine] = []
        expected: list[tuple[LogLine, str]] = []
        starting = CorosyncStarts()
        unmounts, stalls = UnmountAfterCancel(read.lines), HostStalls(read.lines)
        for ln in read.lines:
            starting.see(ln)
            if not is_bad(ln.line):
                continue
            why = (starting.explain(ln) or unmounts.explain(ln) or stalls.explain(ln)
                   or _why(ln, disruptions, consequences, near))
            if why is None:
                findings.append(ln)
            else:
                expected.append((ln, why))
        return AuditResult(findings, expected, read.unreadable + self.pipeline, len(read.lines), read.files)


_NULS = re.compile(rb"\0+")
_COROSYNC_PID = re.compile(r"^\w{3} [ \d]\d [\d:.]+ \[(?P<pid>\d+)\] \S+ corosync ")
_STARTING = re.compile(r"\[MAIN  \] Corosync Cluster Engine \S+ starting up")
_MEMBER = re.compile(r"\[(?:TOTEM |QUORUM|MAIN  )\] (?:A new membership|Sync members|Completed service synchronization)")
_NOT_SCHEDULED = re.compile(r"Corosync main process was not scheduled \(@[^)]*\) for [\d.]+ ms")


class CorosyncStarts:
    """Which corosync processes (node, pid) are still starting: logged their start, not yet a membership.

    "Corosync main process was not scheduled" is a warning sign because a member whose token handling
    stalls is taken for dead. A corosync that has not joined any membership yet holds no token that could
    expire: its own start blocked its loop (the knet and crypto initialisation took 2.4 s on a TCG guest
    booting after a power-off, 2026-11-30), and nobody waited for it."""

    def __init__(self) -> None:
        self.starting: set[tuple[str, str]] = set()

    def see(self, ln: LogLine) -> None:
        m = _COROSYNC_PID.match(ln.line)
        if m is None:
            return
        key = (ln.node, m["pid"])
        if _STARTING.search(ln.line):
            self.starting.add(key)
        elif _MEMBER.search(ln.line):
            self.starting.discard(key)

    def explain(self, ln: LogLine) -> str | None:
        m = _COROSYNC_PID.match(ln.line)
        if m is None or (ln.node, m["pid"]) not in self.starting or not _NOT_SCHEDULED.search(ln.line):
            return None
        return ("harmless: logged by a corosync still starting, before it joined any membership: its own "
                "initialisation blocked its loop, and no token was waiting for it")


def _why(ln: LogLine, disruptions: Sequence[Disruption], consequences: Sequence[tuple[str, Rule]],
         near: float) -> str | None:
    if rule := ignored_by(ln.line):
        return f"harmless: {rule.reason}"
    for fault, rule in consequences:
        if rule.regex.search(ln.line):
            return f"{fault}: {rule.reason}"
    return explain(ln.node, ln.line, disruptions, near=near)


def _name(log: LogFile) -> str:
    return f"{log.node}:{log.path}"
