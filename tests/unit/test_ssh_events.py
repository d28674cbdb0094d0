"""A real inventory's notifications and fences: mirrored from the nodes' alert logs, or not judged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.checkers.notification import check_notification
from harness.errors import TopologyError
from harness.notifications import read_fences, read_notifications
from harness.testbed.base import LogFile
from harness.testbed.sshevents import EventMirror
from tests.unit.checker_history import ctx, history
from tests.unit.test_ssh_inventory import load, real_inventory

ALERTS = "/var/log/fallover/alerts.jsonl"


class Nodes:
    """Each node's alert log as bytes, with an inode; None = the node does not answer."""

    def __init__(self) -> None:
        self.files: dict[str, bytes | None] = {"node1": b"", "node2": b"", "node3": b""}
        self.inode = {n: 100 + i for i, n in enumerate(self.files)}

    def append(self, writer: str, /, **rec: object) -> bytes:
        line = json.dumps({"wall": 1.7e9, "from": writer, **rec}, sort_keys=True).encode() + b"\n"
        self.files[writer] = (self.files[writer] or b"") + line
        return line

    def size(self, lf: LogFile) -> tuple[int, int]:
        data = self.files[lf.node]
        return (0, 0) if data is None else (self.inode[lf.node], len(data))

    def read(self, lf: LogFile, start: int) -> tuple[int, bytes]:
        data = self.files[lf.node]
        if data is None:
            raise OSError(f"{lf.node}: no answer")
        return self.inode[lf.node], data[start:] if start <= len(data) else data


def mirror(nodes: Nodes, tmp_path: Path) -> EventMirror:
    logs = [LogFile(n, ALERTS, required=False) for n in nodes.files]
    return EventMirror(nodes.size, nodes.read, logs, tmp_path / "notifications.log", tmp_path / "fences.jsonl")


def test_new_lines_of_every_node_are_copied_once(tmp_path: Path) -> None:
    nodes = Nodes()
    nodes.append("node1", kind="node", node="node3", desc="member")  # before the run: not ours
    m = mirror(nodes, tmp_path)
    m.start()
    m.stop()
    first = nodes.append("node1", kind="resource", node="node1", rsc="app-app", task="monitor", rc="7",
                         target_rc="0", status="0")
    nodes.files["node2"] = first  # the same record seen through another node (shared storage): once
    nodes.files["node3"] = b'{"wall": 1.7e9, "kind": "node", "node": "node'  # half a line: not yet
    assert m.sync() == 1
    nodes.files["node3"] += b'1", "desc": "lost"}\n'
    assert m.sync() == 1 and m.sync() == 0
    got = read_notifications(tmp_path / "notifications.log")
    assert [(e.node, e.data["kind"]) for e in got] == [("node1", "resource"), ("node1", "node")]


def test_a_fencing_alert_becomes_a_fence_event_with_its_outcome(tmp_path: Path) -> None:
    nodes = Nodes()
    m = mirror(nodes, tmp_path)
    m.start(from_end=False)
    m.stop()
    nodes.append("node2", kind="fencing", node="node1", task="reboot", rc="0", desc="Operation reboot of node1 OK")
    nodes.append("node3", kind="fencing", node="node2", task="off", rc="1", desc="timed out")
    m.sync()
    fences = read_fences(tmp_path / "fences.jsonl")
    assert [(f.node, f.data["action"], f.data["outcome"]) for f in fences] == [
        ("node1", "reboot", "OK"), ("node2", "off", "FAILED")]


def test_a_rotated_file_is_read_from_its_start_and_a_silent_node_is_retried(tmp_path: Path) -> None:
    nodes = Nodes()
    m = mirror(nodes, tmp_path)
    m.start()
    m.stop()
    nodes.append("node1", kind="node", node="node2", desc="lost")
    assert m.sync() == 1
    nodes.inode["node1"] += 1  # logrotate: a new file, shorter than what we had read
    nodes.files["node1"] = b""
    nodes.append("node1", kind="node", node="node2", desc="member")
    nodes.files["node2"] = None  # powered off: not an error of the run, read again next round
    assert m.sync() == 1
    nodes.files["node2"] = b""
    nodes.append("node2", kind="node", node="node3", desc="lost")
    assert m.sync() == 1
    assert len(read_notifications(tmp_path / "notifications.log")) == 3


def test_notification_is_not_judged_where_the_testbed_cannot_hear_it() -> None:
    tl = history(replace={"notify": []})
    heard = check_notification(ctx(tl))
    assert heard.valid is False  # the same silence on a testbed that can hear: a failure
    why = "the inventory declares no alert log (ssh.alerts_log: where fallover-alert writes)"
    v = check_notification(ctx(tl, notifications_unseen=why))
    assert v.judged is False and v.valid is True and why in v.explanation


def test_a_real_inventory_without_an_alert_log_says_why_it_cannot_hear(tmp_path: Path) -> None:
    from harness.testbed.ssh import SshTestbed

    raw = real_inventory()
    raw["ssh"]["hosts"] = {n: {"host": "127.0.0.1", "port": 1} for n in ("node1", "node2", "node3")}
    raw["ssh"]["connect_timeout_s"] = 2
    tb = SshTestbed(load(tmp_path, raw), instance="unit")  # type: ignore[arg-type]
    assert "ssh.alerts_log" in (tb.capabilities()["notifications"] or "")
    raw["ssh"]["alerts_log"] = ALERTS
    tb = SshTestbed(load(tmp_path, raw), instance="unit")  # type: ignore[arg-type]
    assert tb.capabilities()["notifications"] is None


@pytest.mark.parametrize("value, field", [("alerts.jsonl", "ssh.alerts_log: 'alerts.jsonl' must be an absolute path")])
def test_a_bad_alert_log_is_one_line(tmp_path: Path, value: str, field: str) -> None:
    raw = real_inventory()
    raw["ssh"]["alerts_log"] = value
    with pytest.raises(TopologyError) as e:
        load(tmp_path, raw)
    assert field in str(e.value) and "\n" not in str(e.value)
