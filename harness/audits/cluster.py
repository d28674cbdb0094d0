"""Cluster-consistency audits after a case, as Pacemaker's CTS runs them (CIBAudit, PartitionAudit, PrimitiveAudit).

A case can pass every verdict about the service and still leave a cluster that disagrees with
itself: a node whose copy of the configuration differs, a partition with two DCs (or none), a
primitive active twice, a resource left unmanaged or blocked. These are read from every running
node's own view (`crm_mon`, `cibadmin --query --local`), once the case has recovered, and judged:

- **cib**: the `configuration` section is the same on every node of a partition. Only that section
  is compared: `status` and the version attributes (epoch, num_updates, cib-last-written, dc-uuid)
  are what every node updates at its own pace (CTS diffs with `crm_diff --cib` for the same reason).
- **dc**: the nodes agree on the membership, and each partition has exactly one DC, one of its own.
- **primitives**: every primitive is active on at most one node, within a view and across partitions
  (a clone's instances are one per node by design and are not counted).
- **managed**: nothing unmanaged or blocked, unless the case expects it (``allow_unmanaged``).

A node that is running but cannot be read makes the check it feeds `unknown`, never ok.
"""

from __future__ import annotations

import difflib
import json
import time
import xml.etree.ElementTree as ET
from collections.abc import Collection
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.checkers.base import UNKNOWN, Valid, Verdict, merge_valid
from harness.drivers.base import Driver
from harness.drivers.state import ClusterState, parse_crm_mon
from harness.errors import FalloverError
from harness.testbed.base import Testbed

__all__ = ["CHECKS", "Check", "Consistency", "audit_cluster", "judge_views"]

CIB_QUERY = ["cibadmin", "--query", "--local", "--scope", "configuration"]
CRM_MON = ["crm_mon", "--one-shot", "--inactive", "--output-as=xml"]
CHECKS = ("cib", "dc", "primitives", "managed")
RETRY_S = 1.0  # a CIB change in flight when the audit ran: looked at once more before it is a finding


@dataclass(frozen=True)
class Check:
    """One audit over the whole cluster: ``valid`` True, False (a finding) or "unknown" (a source unread)."""

    name: str
    valid: Valid
    detail: str

    def __str__(self) -> str:
        word = "unknown" if self.valid == "unknown" else "ok" if self.valid else "FAIL"
        return f"[{word}] {self.name}: {self.detail}"


@dataclass(frozen=True)
class Consistency:
    """Every check, and how long the audit took (it runs after every case: it must stay cheap)."""

    checks: tuple[Check, ...]
    seconds: float
    applicable: str | None = None  # None: judged; else why the stack has nothing to audit

    def verdict(self, name: str = "consistency") -> Verdict:
        if self.applicable is not None:
            return Verdict(name, True, None, None, "checks", f"not judged: {self.applicable}", judged=False)
        valid = merge_valid(c.valid for c in self.checks)
        bad = [c for c in self.checks if c.valid is not True]
        if bad:
            text = "; ".join(f"{c.name}: {c.detail}" for c in bad)
        else:
            text = "; ".join(c.detail for c in self.checks)
        return Verdict(name, valid, len([c for c in self.checks if c.valid is False]), 0, "checks",
                       f"{text} (audited in {self.seconds:.2f} s)")

    def save(self, directory: Path) -> Path:
        path = directory / "consistency.json"
        path.write_text(json.dumps({"seconds": self.seconds, "applicable": self.applicable,
                                    "checks": [asdict(c) for c in self.checks]}, indent=1))
        return path


def audit_cluster(testbed: Testbed, driver: Driver, *, allow_unmanaged: Collection[str] = ()) -> Consistency:
    """Read every running node's view and configuration (in parallel), then judge them; never raises."""
    t0 = time.monotonic()
    why = driver.capabilities().get("pacemaker")
    if why is not None:
        return Consistency((), 0.0, f"the stack has no CIB or DC to audit ({why})")
    nodes = [n for n in testbed.topology.node_names if testbed.running(n)]
    views, configs, unread = _read(testbed, nodes)
    checks = judge_views(views, configs, unread, allow_unmanaged=allow_unmanaged)
    cib = next(c for c in checks if c.name == "cib")
    if cib.valid is False:  # an update still propagating: one more look before it counts
        time.sleep(RETRY_S)
        _, configs, unread_again = _read(testbed, nodes, views=False)
        checks = [judge_cib(configs, unread_again) if c.name == "cib" else c for c in checks]
    return Consistency(tuple(checks), round(time.monotonic() - t0, 3))


def _read(testbed: Testbed, nodes: list[str], views: bool = True
          ) -> tuple[dict[str, ClusterState], dict[str, str], dict[str, str]]:
    """node → its crm_mon view, node → its canonical configuration, "node what" → why it could not be read."""
    def one(node: str, argv: list[str]) -> tuple[str, str | None, str | None]:
        try:
            r = testbed.node(node).run(argv, timeout=15, check=False)
        except FalloverError as e:
            return node, None, str(e)
        if r.exit_status != 0 or not r.stdout.lstrip().startswith("<"):
            return node, None, f"{argv[0]} exited {r.exit_status}: {(r.stderr or r.stdout).strip()[:160]}"
        return node, r.stdout, None

    jobs = [(n, CIB_QUERY) for n in nodes] + ([(n, CRM_MON) for n in nodes] if views else [])
    out_views: dict[str, ClusterState] = {}
    configs: dict[str, str] = {}
    unread: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=max(1, len(jobs))) as pool:
        results = list(pool.map(lambda j: (j[1][0], *one(*j)), jobs))
    for tool, node, text, error in results:
        key = "cib" if tool == "cibadmin" else "view"
        if text is None:
            unread[f"{node} {key}"] = error or "no output"
            continue
        try:
            if key == "cib":
                configs[node] = canonical(text)
            else:
                out_views[node] = parse_crm_mon(text, seen_from=node)
        except (ET.ParseError, ValueError) as e:
            unread[f"{node} {key}"] = f"unparsable {tool} output: {e}"
    return out_views, configs, unread


def canonical(xml_text: str) -> str:
    """The configuration as comparable text: attributes sorted, whitespace between elements dropped."""
    return ET.canonicalize(xml_text, strip_text=True)


def judge_views(views: dict[str, ClusterState], configs: dict[str, str], unread: dict[str, str], *,
                allow_unmanaged: Collection[str] = ()) -> list[Check]:
    """The four checks from what was read; pure, so it is tested on literal views."""
    unread_views = {k.split()[0]: v for k, v in unread.items() if k.endswith(" view")}
    return [judge_cib(configs, unread), _dc(views, unread_views), _primitives(views, unread_views),
            _managed(views, unread_views, allow_unmanaged)]


def judge_cib(configs: dict[str, str], unread: dict[str, str]) -> Check:
    missing = {k.split()[0]: v for k, v in unread.items() if k.endswith(" cib")}
    if missing:
        return Check("cib", UNKNOWN, "could not read the configuration of " +
                     "; ".join(f"{n} ({why})" for n, why in sorted(missing.items())))
    if not configs:
        return Check("cib", UNKNOWN, "no running node to read a configuration from")
    first, *rest = sorted(configs)
    differ = [n for n in rest if configs[n] != configs[first]]
    if differ:
        diff = [ln for ln in difflib.unified_diff(_lines(configs[first]), _lines(configs[differ[0]]), first,
                                                  differ[0], n=0, lineterm="") if ln[:1] in "+-"][2:6]
        return Check("cib", False, f"the configuration of {', '.join(differ)} differs from {first}'s: "
                                   + " | ".join(d[:160] for d in diff))
    return Check("cib", True, f"configuration identical on {', '.join(sorted(configs))}")


def _lines(canon: str) -> list[str]:
    return canon.replace("><", ">\n<").splitlines()


def _unreadable(check: str, unread: dict[str, str]) -> Check | None:
    if not unread:
        return None
    return Check(check, UNKNOWN, "could not read the view of " +
                 "; ".join(f"{n} ({why})" for n, why in sorted(unread.items())))


def _partitions(views: dict[str, ClusterState]) -> dict[frozenset[str], list[str]]:
    """Membership as each node sees it → the nodes that see exactly that: one entry per partition."""
    out: dict[frozenset[str], list[str]] = {}
    for node, v in sorted(views.items()):
        out.setdefault(frozenset(v.online), []).append(node)
    return out


def _dc(views: dict[str, ClusterState], unread: dict[str, str]) -> Check:
    if (c := _unreadable("dc", unread)) is not None:
        return c
    if not views:
        return Check("dc", UNKNOWN, "no running node to ask for its DC")
    problems, seen = [], []
    for members, askers in _partitions(views).items():
        if not set(askers) <= members:
            problems.append(f"{', '.join(askers)} see membership {sorted(members)} without themselves in it")
        dcs = sorted({views[n].dc or "-" for n in askers})
        part = "+".join(sorted(members)) or "-"
        if dcs == ["-"]:
            problems.append(f"partition {part} has no DC")
        elif len(dcs) > 1:
            problems.append(f"partition {part} has {len(dcs)} DCs ({', '.join(d for d in dcs)}, as "
                            + ", ".join(f"{n} sees {views[n].dc or 'none'}" for n in askers) + ")")
        elif dcs[0] not in members:
            problems.append(f"partition {part} names {dcs[0]} its DC, which is not a member")
        else:
            seen.append(f"{part} with DC {dcs[0]}")
    if problems:
        return Check("dc", False, "; ".join(problems))
    return Check("dc", True, f"{len(seen)} partition(s): {'; '.join(seen)}")


def _primitives(views: dict[str, ClusterState], unread: dict[str, str]) -> Check:
    if (c := _unreadable("primitives", unread)) is not None:
        return c
    if not views:
        return Check("primitives", UNKNOWN, "no running node to ask where resources run")
    where: dict[str, set[str]] = {}
    problems = []
    for node, v in sorted(views.items()):
        for r in v.resources.values():
            if r.clone:
                continue
            if len(set(r.nodes)) > 1:
                problems.append(f"{r.id} active on {', '.join(sorted(set(r.nodes)))} (as {node} sees it)")
            where.setdefault(r.id, set()).update(r.nodes)
    for rid, on in sorted(where.items()):
        if len(on) > 1 and not any(rid in p for p in problems):
            problems.append(f"{rid} active on {', '.join(sorted(on))} (in different partitions)")
    if problems:
        return Check("primitives", False, "; ".join(sorted(set(problems))))
    return Check("primitives", True, f"each of {len(where)} primitives active at most once")


def _managed(views: dict[str, ClusterState], unread: dict[str, str], allow: Collection[str]) -> Check:
    if (c := _unreadable("managed", unread)) is not None:
        return c
    if not views:
        return Check("managed", UNKNOWN, "no running node to ask which resources are managed")
    bad: dict[str, str] = {}
    for v in views.values():
        for r in v.resources.values():
            if r.id in allow or "*" in allow:
                continue
            if not r.managed:
                bad[r.id] = "unmanaged"
            elif r.blocked:
                bad[r.id] = "blocked"
    if bad:
        return Check("managed", False, "; ".join(f"{rid} {how}" for rid, how in sorted(bad.items()))
                     + ": the cluster will not recover it")
    return Check("managed", True, "nothing unmanaged or blocked")
