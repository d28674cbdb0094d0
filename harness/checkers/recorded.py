"""The checkers' input rebuilt from a saved case, so that a run can be judged again without its cluster.

The runner saves what it gave the checkers in the timeline's meta ("expectation",
"fault_start"); the live run and a re-judgement both build their Context here, from the same
data, so the same recording with the same SLA gives the same verdicts. Runs saved before the
meta held the expectation get it rebuilt from what they did save ("expected", "fault").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from harness.checkers.base import Context
from harness.timeline import FAULT_INJECTED, Request, Timeline
from harness.topology import Topology


def expectation_of(meta: Mapping[str, Any], topology: Topology | None, *, load: bool) -> dict[str, Any]:
    """The expectation the checkers were given: the saved one, else rebuilt from the saved expected outcome.

    >>> expectation_of({"expectation": {"group": "app"}}, None, load=True)
    {'group': 'app'}
    """
    if isinstance(meta.get("expectation"), Mapping):
        return dict(meta["expectation"])
    expected = meta.get("expected")
    if not isinstance(expected, Mapping):
        return {}
    from harness.faults import FAULTS

    fault = FAULTS.get(str(meta.get("fault")))
    group = topology.group(expected["group"]) if topology is not None and expected.get("group") else None
    fallover = expected.get("outcome") == "fallover"
    return {"group": expected.get("group"), "expect_fallover": fallover,
            "expected_node": expected.get("takeover") if fallover else expected.get("home"),
            "fault_node": (meta.get("target") or {}).get("node"), "load": load,
            "planned": fault is not None and fault.family == "planned",
            "shared_storage": group is None or group.disk is not None,
            "membership": True}  # every stack that saved runs before this field had a membership


def fault_start_of(timeline: Timeline) -> float | None:
    """When the judged fault began: the saved moment, else the first injection recorded."""
    saved = timeline.meta.get("fault_start")
    if isinstance(saved, (int, float)):
        return float(saved)
    first = timeline.first(FAULT_INJECTED)
    return first.mono if first else None


def context_of(timeline: Timeline, requests: Sequence[Request], topology: Topology | None,
               *, load: bool | None = None) -> Context:
    """The Context for a recorded case. ``load``: whether the case ran load (default: it recorded requests)."""
    had_load = bool(requests) if load is None else load
    return Context(timeline, requests, topology, fault_start=fault_start_of(timeline),
                   expectation=expectation_of(timeline.meta, topology, load=had_load))
