"""Is the Pacemaker cluster still busy beyond what a crm_mon snapshot shows? One query, parsed.

A snapshot can look whole while the DC is still computing a transition or attrd holds an
attribute change it has not yet written to the CIB; both are "not settled yet".
"""

from __future__ import annotations

import re

from harness.drivers.state import ClusterState

SETTLE_QUERY = ('crmadmin --quiet --timeout=2000 --status="$1"; echo "@rc=$?"; shift; '
                'for n in "$@"; do attrd_updater --query --all --name="$n"; echo "@rc=$?"; done')
"""One shell on one node: the DC controller's state ($1), then attrd's value of every attribute named after."""
RUN_AGAIN_S = 0.3
"""Before a DC caught planning or running a transition counts as busy, it is asked again this much later.
The DC plans every cluster-recheck-interval (cluster.recheck_s: 5 s on the embedded testbed) whether anything changed or
not, tens of milliseconds on the embedded testbed; a look landing in one such empty run restarted the
3 s quiet stretch of a settled cluster, and a case whose recording ended just after (cpu_overload-node1,
2026-12-02) was judged never redundant again. A transition with work to do is still running when asked again."""


def in_a_transition(why: str | None, dc: str) -> bool:
    """Whether the settle query's answer is the DC planning or running a transition (ask again: RUN_AGAIN_S)."""
    return why in (f"the DC ({dc}) is in {state}" for state in ("S_POLICY_ENGINE", "S_TRANSITION_ENGINE"))


_ATTRD_LINE = re.compile(r'name="(?P<name>[^"]*)"\s+host="(?P<host>[^"]*)"\s+value="(?P<value>[^"]*)"')


def parse_settle_query(out: str, s: ClusterState, names: list[str], *, stderr: str = "") -> str | None:
    r"""Why SETTLE_QUERY's output says the cluster is busy, or None when the DC is idle and attrd has written all.

    >>> from harness.drivers.state import parse_crm_mon
    >>> s = parse_crm_mon('<r><summary><current_dc present="true" name="node3"/></summary><nodes>'
    ...     '<node name="node1" online="true"/></nodes><node_attributes><node name="node1">'
    ...     '<attribute name="reach-service" value="1"/></node></node_attributes></r>', "node1")
    >>> parse_settle_query('S_TRANSITION_ENGINE\n@rc=0\n', s, [])
    'the DC (node3) is in S_TRANSITION_ENGINE'
    >>> held = 'S_IDLE\n@rc=0\nname="reach-service" host="node1" value="0"\n@rc=0\n'
    >>> parse_settle_query(held, s, ["reach-service"])
    'reach-service on node1 is 0 in attrd, not yet written (CIB: 1)'
    >>> parse_settle_query(held.replace('"0"', '"1"'), s, ["reach-service"]) is None
    True
    """
    sections: list[tuple[list[str], int | None]] = []
    lines: list[str] = []
    for line in out.splitlines():
        if line.startswith("@rc="):
            try:
                rc: int | None = int(line[4:])
            except ValueError:
                rc = None
            sections.append((lines, rc))
            lines = []
        elif line.strip():
            lines.append(line.strip())
    if not sections:
        return f"no answer about the DC's state{': ' + stderr.strip().splitlines()[-1] if stderr.strip() else ''}"
    dc_lines, rc = sections[0]
    state = dc_lines[-1] if dc_lines else ""
    if rc != 0 or state != "S_IDLE":
        said = state or (stderr.strip().splitlines()[-1] if stderr.strip() else f"no answer (exit {rc})")
        return f"the DC ({s.dc}) is in {said}" if state else f"cannot read the DC's ({s.dc}) state: {said}"
    online = set(s.online)
    for name, (attr_lines, rc) in zip(names, sections[1:]):
        if rc != 0:
            return f"cannot read {name} from attrd (exit {rc})"
        for line in attr_lines:
            m = _ATTRD_LINE.search(line)
            if m is None or m["host"] not in online:
                continue
            held, written = m["value"] or None, s.attributes.get(m["host"], {}).get(name) or None
            if held != written:
                return (f"{name} on {m['host']} is {held or 'unset'} in attrd, not yet written "
                        f"(CIB: {written or 'unset'})")
    if len(sections) < len(names) + 1:
        return "the settle query was cut short"
    return None
