"""What a run ran on — cluster software, kernels, harness revision, topology file, seed — recorded at its start.

A sign-off is about one cluster build: the page must say which Pacemaker, Corosync and kernel
were tested, by which revision of fallover, with which topology and seed, as they were when
the run began (not as they are when someone rebuilds the page later).
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from harness.testbed.base import Testbed
from harness.topology import Topology

ENVIRONMENT = "environment.json"
TOPOLOGY_COPY = "topology.yaml"
REPO = Path(__file__).resolve().parents[2]


def harness_version(repo: Path = REPO) -> str:
    """``git describe --always --dirty`` of the harness checkout, else the installed package version."""
    try:
        r = subprocess.run(["git", "-C", str(repo), "describe", "--always", "--dirty", "--tags"],
                           capture_output=True, text=True, timeout=10, check=False)
        if r.returncode == 0 and r.stdout.strip():
            return r.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"fallover {version('fallover')} (not a git checkout)"
    except PackageNotFoundError:
        return "unknown (not a git checkout, not installed)"


def copy_topology(topology: Topology, run_dir: Path) -> None:
    """The topology file as it is now, beside the results: the page shows it, re-judging reads it."""
    dest = run_dir / TOPOLOGY_COPY
    if topology.source is not None and topology.source.is_file() and not dest.exists():
        shutil.copyfile(topology.source, dest)


def node_versions(testbed: Testbed) -> tuple[dict[str, dict[str, str]], list[str]]:
    """Per running node: the cluster stack's versions (from its driver) and the kernel it runs."""
    from harness.drivers import open_driver

    out: dict[str, dict[str, str]] = {}
    errors: list[str] = []
    try:
        driver = open_driver(testbed)
    except Exception as e:  # noqa: BLE001 — an environment record is evidence, never a failure of the run
        return {}, [f"driver: {type(e).__name__}: {e}"]
    for node in testbed.topology.node_names:
        try:
            if not testbed.running(node):
                continue
            versions = dict(driver.versions(node))
            r = testbed.node(node).run(["uname", "-r"], timeout=10, check=False)
            versions["kernel"] = r.stdout.strip() if r.ok else f"? (uname exited {r.exit_status})"
            out[node] = versions
        except Exception as e:  # noqa: BLE001
            errors.append(f"{node}: {type(e).__name__}: {e}")
    return out, errors


def record(run_dir: Path, topology: Topology, testbed: Testbed | None, seed: int | None) -> Path:
    """Write ``environment.json`` once per run (the first worker to get here); returns its path."""
    path = run_dir / ENVIRONMENT
    if path.exists():
        return path
    nodes, errors = node_versions(testbed) if testbed is not None else ({}, ["no testbed: node versions unknown"])
    env: dict[str, Any] = {
        "harness": harness_version(), "python": platform.python_version(), "host_kernel": platform.release(),
        "host": platform.node(), "nodes": nodes, "seed": seed,
        "testbed": str(topology.source) if topology.source else None, "provider": topology.provider,
        "recorded_wall": time.time(), "errors": errors}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(env, indent=1))
    tmp.replace(path)
    return path


def record_or_note(run_dir: Path, topology: Topology, testbed: Testbed, seed: int | None) -> None:
    """`record`, for a session: a record that could not be written is noted in environment-error.txt (the page
    shows it missing), never a failed session."""
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        record(run_dir, topology, testbed, seed)
    except Exception as e:  # noqa: BLE001
        (run_dir / "environment-error.txt").write_text(f"{type(e).__name__}: {e}\n")


def stack_versions(env: dict[str, Any]) -> dict[str, str]:
    """One line per software across nodes: "pacemaker" → "2.1.5 (node1, node2, node3)"; differing nodes listed apart.

    >>> stack_versions({"nodes": {"n1": {"kernel": "6.1"}, "n2": {"kernel": "6.1"}}})
    {'kernel': '6.1 (n1, n2)'}
    """
    seen: dict[str, dict[str, list[str]]] = {}
    for node, versions in sorted((env.get("nodes") or {}).items()):
        for name, value in versions.items():
            seen.setdefault(name, {}).setdefault(str(value), []).append(node)
    return {name: "; ".join(f"{v} ({', '.join(nodes)})" for v, nodes in by_value.items())
            for name, by_value in seen.items()}
