"""Allure: every piece of a case's evidence is attached; allure's HTML is built where its CLI exists."""

from __future__ import annotations

import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from report_run import make_run

from harness.report.allure import ATTACHMENTS, attach_case, generate, results_dir


class FakeAllure:
    """Records what would be attached (allure-pytest itself needs a running allure listener)."""

    attachment_type = SimpleNamespace(TEXT="text", JSON="json", SVG="svg")

    def __init__(self) -> None:
        self.attached: list[tuple[str, Any]] = []
        outer = self

        class Attach:
            def __call__(self, body: str, name: str, attachment_type: str) -> None:
                outer.attached.append((name, attachment_type))

            def file(self, source: str, name: str, attachment_type: str, extension: str | None = None) -> None:
                assert Path(source).is_file()
                outer.attached.append((name, attachment_type))

        self.attach = Attach()


def test_every_evidence_file_of_a_case_is_attached(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    case = run_dir / "partition-node1"
    for name in ("cluster-before.txt", "cluster-after.txt", "load.jsonl.stdout", "probe.jsonl", "arp.jsonl"):
        (case / name).write_text("x\n")
    fake = FakeAllure()
    names = attach_case("FAIL: …", case, fake)
    for wanted in ("report", "verdicts", "timeline", "plot", "cluster status before", "cluster status after",
                   "node log lines: unexpected errors", "locust statistics", "probe log", "load log", "ARP log"):
        assert wanted in names
    assert ("plot", "svg") in fake.attached and ("timeline", "json") in fake.attached
    assert len(names) == 1 + sum((case / f).is_file() for f, _, _ in ATTACHMENTS)


def test_the_node_logs_saved_for_a_failing_case_are_attached_each(tmp_path: Path) -> None:
    run_dir, _ = make_run(tmp_path)
    case = run_dir / "partition-node1"
    (case / "logs").mkdir()
    (case / "logs" / "node3-pacemaker.log").write_text("notice: Requesting fencing (off) of node1\n")
    fake = FakeAllure()
    assert "node log node3-pacemaker.log" in attach_case("FAIL: …", case, fake)


def test_allure_html_is_built_where_the_cli_is_installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    results = tmp_path / "allure-results"
    results.mkdir()
    (results / "x-result.json").write_text("{}")
    assert results_dir(tmp_path, None) == results
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert "not installed" in generate(results, tmp_path / "allure-report")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    cli = bin_dir / "allure"
    cli.write_text(f"#!/bin/sh\necho \"$@\" > {tmp_path}/args\n")
    cli.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    assert generate(results, tmp_path / "allure-report").endswith("index.html")
    assert (tmp_path / "args").read_text().split() == ["generate", str(results), "-o",
                                                       str(tmp_path / "allure-report"), "--clean"]
