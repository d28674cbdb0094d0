"""`fallover status`: one report of the testbed (nodes, adapters, groups, service, versions)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from harness.errors import FalloverError
from harness.testbed.base import Testbed


def service_answer(testbed: Testbed, group: str, timeout: float = 1.0) -> str | None:
    """The node name the group's service answers with, seen from the client, or None."""
    g = testbed.topology.group(group)
    url = f"http://{g.service_ip}:{g.application.port}/health"
    try:
        r = testbed.client().run(["curl", "-s", "-f", "-m", str(timeout), url], timeout=timeout + 5, check=False)
    except FalloverError:
        return None
    return r.stdout.strip() if r.ok else None


def collect(testbed: Testbed) -> dict[str, Any]:
    from harness.drivers import open_driver

    topo = testbed.topology
    built = bool(getattr(testbed, "is_built", True))
    report: dict[str, Any] = {"testbed": topo.name, "built": built, "nodes": {}, "groups": {}, "versions": {}}
    if not built:
        return report
    driver = open_driver(testbed)
    state = driver.state()
    report["dc"] = state.dc if state else None
    report["quorate"] = state.quorate if state else False
    report["seen_from"] = state.seen_from if state else None
    for n in topo.node_names:
        running = testbed.running(n)
        ns = state.nodes.get(n) if state else None
        adapters = {}
        if running:
            carriers = {net.name: testbed.carrier(n, net.name) for net in topo.networks}
            adapters = {name: {True: "up", False: "no-carrier", None: "absent"}[c] for name, c in carriers.items()}
        report["nodes"][n] = {"powered": running, "cluster": ns.status if ns else ("unknown" if running else "off"),
                              "dc": bool(ns and ns.is_dc), "adapters": adapters,
                              "addresses": {net.name: str(topo.address(n, net.name)) for net in topo.networks}}
    for g in topo.groups:
        gs = state.groups.get(g.name) if state else None
        report["groups"][g.name] = {
            "node": gs.node if gs else None, "nodes": list(gs.nodes) if gs else [],
            "resources": {r.id: {"role": r.role, "nodes": list(r.nodes)} for r in (gs.resources if gs else ())},
            "policy": g.policy, "priority": g.nodes, "service_ip": str(g.service_ip),
            "answers": service_answer(testbed, g.name)}
    report["failed_actions"] = [str(f) for f in state.failed_actions] if state else []
    if state:
        report["versions"] = driver.versions(state.seen_from)
    return report


def render(report: dict[str, Any], console: Console) -> None:
    if not report["built"]:
        console.print(f"testbed {report['testbed']}: not up (run `fallover up`)")
        return
    nodes = Table(title=f"testbed {report['testbed']}  dc={report.get('dc') or '-'}  "
                        f"quorum={'yes' if report.get('quorate') else 'no'}")
    nets = sorted({k for n in report["nodes"].values() for k in n["addresses"]})
    for col in ("node", "power", "cluster", *nets):
        nodes.add_column(col)
    for name, n in report["nodes"].items():
        cells = [f"{n['addresses'][k]} {n['adapters'].get(k, '-')}" for k in nets]
        nodes.add_row(name + (" (DC)" if n["dc"] else ""), "on" if n["powered"] else "off", n["cluster"], *cells)
    console.print(nodes)
    groups = Table(title="resource groups")
    for col in ("group", "runs on", "policy", "priority", "service", "answers"):
        groups.add_column(col)
    for name, g in report["groups"].items():
        where = g["node"] or ("+".join(g["nodes"]) or "stopped")
        groups.add_row(name, where, g["policy"], " > ".join(g["priority"]), g["service_ip"], g["answers"] or "-")
    console.print(groups)
    if report["failed_actions"]:
        console.print("failed actions: " + "; ".join(report["failed_actions"]))
    if report["versions"]:
        console.print("software: " + "; ".join(f"{v}" for v in report["versions"].values()))


def save_snapshot(testbed: Testbed, directory: Path, when: str) -> None:
    """``cluster-<when>.json`` and ``.txt``: the cluster as `fallover status` shows it, as case evidence.

    Evidence, never a reason to lose a case: anything that goes wrong is written into the files instead.
    """
    stem = directory / f"cluster-{when}"
    try:
        report = collect(testbed)
        console = Console(record=True, file=io.StringIO(), width=140, highlight=False)
        render(report, console)
        stem.with_suffix(".json").write_text(json.dumps(report, indent=1, sort_keys=True, default=str))
        stem.with_suffix(".txt").write_text(console.export_text())
    except Exception as e:  # noqa: BLE001 — see the docstring
        stem.with_suffix(".txt").write_text(f"could not read the cluster status {when} the case: "
                                            f"{type(e).__name__}: {e}\n")
