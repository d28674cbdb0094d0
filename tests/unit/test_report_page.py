"""The run's HTML page: self-contained, the matrix with a cell per case, a failing case with its evidence."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

from report_run import make_run

from harness.report import build
from harness.report.results import load_run, newest_run


class Resources(HTMLParser):
    """Every attribute that makes a browser fetch something, and every id on the page."""

    def __init__(self) -> None:
        super().__init__()
        self.fetched: list[str] = []
        self.ids: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name == "id" and value:
                self.ids.append(value)
            if tag != "a" and name in ("src", "href", "xlink:href", "srcset", "data", "poster", "action") and value:
                self.fetched.append(value)


def page(tmp_path: Path) -> tuple[Path, str]:
    run_dir, _ = make_run(tmp_path)
    out = build(run_dir)
    return out, out.read_text()


def test_the_page_is_self_contained(tmp_path: Path) -> None:
    out, html = page(tmp_path)
    assert out == tmp_path / "20261129-120000" / "index.html"
    assert "http://" not in html and "https://" not in html  # not even the URL in the log finding
    parsed = Resources()
    parsed.feed(html)
    assert "link" not in parsed.tags and "script" not in parsed.tags
    # what the page loads itself: only inline data (the plots' rasterised layers, same-document references)
    assert all(v.startswith(("#", "data:")) for v in parsed.fetched), [v for v in parsed.fetched][:5]
    assert not re.search(r"url\((?!#)", html), "a CSS or SVG url() to something outside the page"
    assert html.count("<svg") == 2  # both plots inlined
    assert len(parsed.ids) == len(set(parsed.ids)), "ids of the two inlined plots collide"


def test_matrix_has_a_cell_per_case_linking_to_it(tmp_path: Path) -> None:
    _, html = page(tmp_path)
    matrix = html[html.index('id="checklist"'):html.index('id="cases"')]
    assert "<th>node1</th>" in matrix and "node_power_off" in matrix
    cells = re.findall(r'<a class="cell (\w+)[^"]*" href="#([^"]+)">', matrix)
    assert sorted(cells) == [("FAIL", "case-partition-node1"), ("PASS", "case-node_power_off-node1")]
    assert "fallover 4.2" in matrix and "(SLA 15 s)" in matrix  # the measured value against its SLA
    for _, target in cells:
        assert f'id="{target}"' in html


def test_a_failing_case_shows_as_fail_with_its_evidence(tmp_path: Path) -> None:
    _, html = page(tmp_path)
    section = html[html.index('id="case-partition-node1"'):html.index('id="runbook"')]
    assert '<span class="badge FAIL">FAIL</span>' in section
    assert '<span class="badge fail">FAIL</span>' in section  # the failing verdict row
    assert "outage 20 s (limit 15 s)" in section  # the outage verdict's explanation
    assert "node2 pacemaker-controld[12]: error: Resource app-ip failed" in section  # its log findings
    assert "<svg" in section and "partition-node1 — FAIL" in section  # its plot, titled with its verdict
    assert "raw events" in section and "cluster.node_lost" in section  # the table under the plot
    assert "milestone" in section and "service back" in section


def test_runbook_backup_environment_and_signoff_sections(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    (run_dir / "backup").mkdir()
    (run_dir / "backup" / "backup_restore_data.json").write_text(json.dumps({
        "case": "backup_restore_data", "status": "PASS", "title": "data destroyed and restored",
        "measures": {"backup_s": 3.2, "rpo_s": 0.0}, "limits": {"backup_s": 60, "rpo_s": 5},
        "verdicts": {"rpo": {"name": "rpo", "valid": True, "measured": 0.0, "limit": 5.0, "unit": "s",
                             "explanation": "no acknowledged write after the backup point was lost"}}}))
    (run_dir / "backup" / "broken.json").write_text("{not json")
    html = build(run_dir).read_text()
    assert "no runbook recorded" in html or 'id="runbook-' in html
    backup = html[html.index('id="backup"'):html.index('id="environment"')]
    assert "backup_restore_data" in backup and "no acknowledged write after the backup point was lost" in backup
    assert "broken" in backup and "ERROR" in backup  # an unreadable result is shown, not dropped
    env = html[html.index('id="environment"'):html.index('id="signoff"')]
    assert "v0-test" in env and "Pacemaker 2.1.5 (node1, node2, node3)" in env and "4242" in env
    assert "max_outage_s: 15" in env  # the topology file as it was
    signoff = html[html.index('id="signoff"'):]
    assert "signature" in signoff and "PASS" in signoff


def test_backup_section_says_not_run_and_a_damaged_case_is_an_error(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path, failing=False)
    (run_dir / "node_power_off-node1" / "verdicts.json").write_text("{")
    run = load_run(run_dir)
    assert [c.status for c in run.cases] == ["ERROR"] and run.problems
    html = build(run_dir).read_text()
    assert "Not run in this run" in html
    assert "verdicts.json" in html[html.index("Evidence that could not be read"):]


def test_newest_run_is_the_last_one_written(tmp_path: Path) -> None:
    old, _ = make_run(tmp_path, failing=False, run_id="zz-named-by-hand")
    new, _ = make_run(tmp_path, failing=False, run_id="20261129-130000")
    os.utime(old / "run-main.json", (1.7e9, 1.7e9))  # written earlier, whatever its name says
    assert newest_run(tmp_path) == new
    assert newest_run(tmp_path / "nothing-here") is None


def test_the_runbook_recorded_with_the_case_is_on_the_page_and_in_runbook_md(tmp_path: Path) -> None:
    from harness.oplog import OpLog
    from harness.transport.base import run_process

    run_dir, _ = make_run(tmp_path, failing=False)
    log = OpLog()
    with log.phase("operator recovery"):
        log.note("starting node1 (it was powered off)")
        run_process("host", ["true"], timeout=10)
    log.save(run_dir / "node_power_off-node1" / "recovery.json")
    html = build(run_dir).read_text()
    book = html[html.index('id="runbook"'):html.index('id="backup"')]
    assert 'id="runbook-node_power_off"' in book and 'href="#case-node_power_off-node1"' in book
    assert "starting node1 (it was powered off)" in book and "<code>" in book
    assert "node_power_off" in (run_dir / "runbook.md").read_text()
