"""The timeline plot: an SVG that parses, with the fault band findable by its gid; also with no data."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from harness.plots import fault_windows, label_levels, plot_timeline
from harness.report.milestones import Milestone
from harness.timeline import (
    CLUSTER_GROUP_STARTED,
    FAULT_HEALED,
    FAULT_INJECTED,
    NOTIFICATION,
    Event,
    ProbeSample,
    Request,
    Timeline,
)

BASE = 100.0


def ev(t: float, kind: str, node: str | None = None, /, **data: object) -> Event:
    return Event(mono=BASE + t, wall=1.7e9 + t, kind=kind, node=node, data=dict(data))


def ids(path: Path) -> set[str]:
    return {el.get("id", "") for el in ET.parse(path).iter()}


def test_plot_has_fault_and_outage_bands(tmp_path: Path) -> None:
    events = [ev(0, FAULT_INJECTED, "node1", fault="poweroff", target="node1"),
              ev(2, NOTIFICATION, "node1", kind="node", desc="lost"),
              ev(4, CLUSTER_GROUP_STARTED, "node2", group="app"),
              ev(8, FAULT_HEALED, "node1", fault="poweroff", target="node1")]
    probe = [ProbeSample(BASE + t / 10, 0.0, not 0 <= t < 42, 0.002, "node2") for t in range(-20, 100)]
    requests = [Request(BASE + t / 10, 0.0, "put", not 0 <= t < 42, 0.003 if t % 7 else 2.0, key=f"k{t}")
                for t in range(-20, 100)]
    marks = [Milestone("fault", BASE, "poweroff"), Milestone("detected", BASE + 2, "node1 lost"),
             Milestone("service back", BASE + 4.2, "answered"), Milestone("healed", BASE + 8, "healed")]
    out = plot_timeline(Timeline(events=events, probe=probe), requests, tmp_path / "plots" / "t.svg",
                        title="node_power_off-node1", status="FAIL", milestones=marks)
    assert out.is_file()
    found = ids(out)
    assert "fault-window-0" in found and "outage-window-0" in found
    assert {f"milestone-{m.name}" for m in marks} <= found
    text = out.read_text()
    assert "node_power_off-node1 — FAIL" in text  # the title names the case and its verdict
    assert "detected +2.0s" in text and "service back +4.2s" in text and "poweroff node1" in text
    assert "notify node node1 lost" not in text  # raw events go in the page's table, not on the picture


def test_milestone_labels_never_share_a_level_when_they_would_overlap() -> None:
    xs, widths = [0.0, 0.5, 1.0, 9.0], [2.0, 2.0, 2.0, 2.0]
    levels = label_levels(xs, widths)
    assert levels == [0, 1, 2, 0]
    for a in range(len(xs)):
        for b in range(a + 1, len(xs)):
            if levels[a] == levels[b]:
                assert xs[a] + widths[a] <= xs[b]


def test_plot_without_requests_or_faults(tmp_path: Path) -> None:
    out = plot_timeline(Timeline(), [], tmp_path / "empty.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    assert not any(i.startswith("fault-window") for i in ids(out))


def test_plot_with_faults_but_no_requests_and_requests_but_no_faults(tmp_path: Path) -> None:
    faults_only = Timeline(events=[ev(0, FAULT_INJECTED, "node1", fault="freeze", target="node1")])
    assert "fault-window-0" in ids(plot_timeline(faults_only, [], tmp_path / "a.svg"))
    load_only = [Request(BASE + t, 0.0, "get", t != 3, 0.01) for t in range(10)]
    assert not any(i.startswith("fault-window") for i in ids(plot_timeline(Timeline(), load_only, tmp_path / "b.svg")))


def test_unhealed_fault_runs_to_the_end() -> None:
    events = [ev(0, FAULT_INJECTED, fault="a", target="n1"), ev(1, FAULT_INJECTED, fault="b", target="n2"),
              ev(3, FAULT_HEALED, fault="b", target="n2")]
    assert fault_windows(events, BASE + 9) == [(BASE, BASE + 9, "a n1"), (BASE + 1, BASE + 3, "b n2")]
