"""What Pacemaker's own source says follows the SIGKILL of each subdaemon, and for which versions.

The prose docs say only that pacemakerd respawns a child that exits. The source says what else
happens before the respawned child is back, and that is what the plan must expect. Read at the
tags Pacemaker-2.0.0, 2.1.0, 2.1.5, 3.0.0 and 3.0.2 of ClusterLabs/pacemaker (`fetch`, then
`git show <tag>:<path>`); the lines quoted are the same in all of them unless a row says so:

- `daemons/pacemakerd/pcmkd_subdaemons.c` `pcmk_process_exit`: every child has `respawn` set and is
  started again, unless `PCMK_fail_fast` is true: then pacemakerd panics the node ("Rebooting system
  because of …" up to 2.1.x, `pcmk__panic("Subdaemon failed")` in 3.0).
- A controller that loses one of its daemons exits (I_ERROR → S_RECOVERY → "Fast-tracking shutdown in
  response to errors", `controld_control.c` `do_recover`): the CIB manager (`controld_callbacks.c`
  `crmd_cib_connection_destroy`, in `controld_cib.c` from 3.0: "@TODO This should trigger a reconnect,
  not a shutdown"), the executor (`controld_execd.c` `lrm_connection_destroy`), and on the DC the
  scheduler (`controld_schedulerd.c` `handle_disconnect`, only with R_PE_REQUIRED). The fencer's loss
  only makes it reconnect (`controld_fencing.c` `tengine_stonith_connection_destroy`).
- While a node is in the membership with its controller gone and expected up, the DC's scheduler fences
  it: "peer process is no longer available" (`lib/pengine/unpack.c` `determine_online_status_fencing`).
  A respawned controller that rejoins before the scheduler runs wins the race, and nothing is fenced.
- When a node's controller leaves, the DC erases that node's transient attributes
  (`controld_callbacks.c` `peer_update_callback`, `controld_delete_node_state(… controld_section_attrs …)`);
  the node's attrd, if it kept running, does not write them back (2.1.5 `pacemaker-attrd.c`
  `attrd_cib_updated_cb`: the controller is not a client that triggers a refresh). A group with a
  location rule on such an attribute (the testbed's link and reachability rules) is then banned from the
  node and moved off it cleanly: stopped there by its controller, started on the next node.
- A starting attrd, respawned ones included, clears its node's transient attributes from the CIB
  (2.1.5 `pacemaker-attrd.c` `attrd_erase_attrs`: "We have no attribute values in memory, wipe the CIB to
  match", with a \\todo that a respawned one should sync from the writer instead; `attrd_cib_init` in 3.0),
  so until the node's monitors set them again the same rules ban the group from the node.
- attrd's loss is noticed only at the controller's next attribute update: on the DC a failed one makes the
  controller exit fatally (`controld_attrd.c` `handle_attr_error`) and pacemakerd stop the node cleanly.
  That needs an update within attrd's respawn (about a second), so the plan does not expect it.
- CTS's ComponentFail (2.1.5 `cts/lab/CTStests.py`, `ClusterManager.py` `Components`) passes either way:
  "if shot: … return self.success()", else it looks for the recovery patterns (S_RECOVERY, "Lost
  connection to the CIB manager", "LRM Connection failed", …); it kills the scheduler on the DC only
  (`dc_only=1`), and has no attrd component.
"""

from __future__ import annotations

import functools
import re
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.topology import Topology

if TYPE_CHECKING:
    from harness.drivers.state import ClusterState

READ_RANGE = ((2, 0, 0), (3, 0, 2))
"""The versions whose source the rows below were read from (both ends read)."""


@dataclass(frozen=True)
class Subdaemon:
    """One of pacemakerd's children and what its SIGKILL does, per the source (`READ_RANGE`)."""

    daemon: str            # the process name, e.g. pacemaker-based
    short: str             # the fault is "<short>_kill"
    controller_exits: bool  # the node's controller goes down with it (always, or on the DC only)
    source: str            # what the source says happens, with the file
    dc_only: bool = False  # the controller exits only when the node is the DC
    wipes_attributes: bool = False  # the node's transient attributes leave the CIB until its monitors set them

    @property
    def either(self) -> bool:
        """Whether the group may stay or move: what follows the kill can ban it from the node, or fence the node."""
        return self.controller_exits or self.wipes_attributes


SUBDAEMONS: tuple[Subdaemon, ...] = (
    Subdaemon("pacemaker-based", "based", True,
              "the controller loses the CIB manager and exits (controld_callbacks.c crmd_cib_connection_destroy: "
              "\"Lost connection to the CIB manager, shutting down\"; attrd and fenced exit with it)"),
    Subdaemon("pacemaker-fenced", "fenced", False,
              "the controller reconnects to the respawned fencer (controld_fencing.c "
              "tengine_stonith_connection_destroy) and nothing else exits"),
    Subdaemon("pacemaker-execd", "execd", True,
              "the controller exits with its executor (controld_execd.c lrm_connection_destroy: \"Connection to "
              "executor failed\", \"Lost connection to local executor\" from 2.1.7)"),
    Subdaemon("pacemaker-attrd", "attrd", False,
              "the respawned attrd clears the node's transient attributes from the CIB (pacemaker-attrd.c "
              "attrd_erase_attrs: \"We have no attribute values in memory, wipe the CIB to match\")",
              wipes_attributes=True),
    Subdaemon("pacemaker-schedulerd", "schedulerd", True,
              "the controller exits with its scheduler (controld_schedulerd.c handle_disconnect, with R_PE_REQUIRED)",
              dc_only=True),
    Subdaemon("pacemaker-controld", "controld", True, "the controller itself is gone until pacemakerd respawns it (pcmkd_subdaemons.c)"),
)


def parse_version(text: str) -> tuple[int, int, int] | None:
    """(2, 1, 5) from "Pacemaker 2.1.5" (the first line of `pacemakerd --version`) or "2.1.5-a3f44794f94".

    >>> parse_version("Pacemaker 2.1.5\\nWritten by Andrew Beekhof"), parse_version("?")
    ((2, 1, 5), None)
    """
    m = re.search(r"(\d+)\.(\d+)\.(\d+)", text)
    return (int(m[1]), int(m[2]), int(m[3])) if m else None


@functools.cache
def _host_version() -> tuple[int, int, int] | None:
    try:
        r = subprocess.run(["pacemakerd", "--version"], capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_version(r.stdout)


def installed_version(topology: Topology) -> tuple[int, int, int] | None:
    """The Pacemaker the cluster runs, as far as it can be known before anything is up.

    The embedded testbed's nodes run this host's binaries, so `pacemakerd --version` here is theirs
    (one call, cached). The SSH and VM testbeds' nodes may differ and are not asked while a plan is
    built: None (the report's environment section records their versions once they are up).
    """
    return _host_version() if topology.provider == "local" else None


def _v(version: tuple[int, int, int]) -> str:
    return ".".join(map(str, version))


def expected_after_kill(facts: Subdaemon, topology: Topology, group: str, home: str,
                        seen: ClusterState | None = None) -> tuple[str, str, set[str]]:
    """(outcome, why, nodes that cannot take over) for a SIGKILL of ``facts.daemon`` on ``home``, ``group``'s node.

    ``seen`` (the runner's look at the cluster before the case) gives the version the DC runs, which
    wins over the one planning assumed, and which node is the DC (the scheduler matters there only).
    """
    version = parse_version((seen.stack_versions.get("pacemaker") or "") if seen else "") or installed_version(topology)
    lo, hi = READ_RANGE
    span = f"{_v(lo)}-{_v(hi)}"
    if version is not None and not lo <= version <= hi:
        return "stay", (f"pacemakerd respawns {facts.daemon}, as documented: Pacemaker {_v(version)} is outside the "
                        f"versions whose source was read ({span})"), set()
    which = f"Pacemaker {_v(version)}" if version else f"the Pacemaker of {topology.provider} nodes (unknown yet)"
    dc = seen.dc if seen else None
    if facts.dc_only and dc is not None and dc != home:
        return "stay", (f"pacemakerd respawns {facts.daemon}, and no controller is connected to it: {home} is not "
                        f"the DC ({dc} is; {facts.source} on the DC only; {which}, source {span})"), set()
    if not facts.either:
        return "stay", f"pacemakerd respawns {facts.daemon} and {facts.source} ({which}, source {span})", set()
    order = topology.group(group).nodes
    i = order.index(home) if home in order else -1
    nxt = next(iter(order[i + 1:] + order[:max(i, 0)]), None)  # the group's next node after home
    where = f"{group} moves to {nxt}" if nxt else f"{group} stops"
    if not facts.controller_exits:
        return "planned", (
            f"{home} keeps it, perhaps stopped and started again there, or {where} after a clean stop on {home}, "
            f"never running twice: {facts.source}, and until {home}'s monitors set them again the group's rules on "
            f"them ban it from {home}. Documented: respawned, nothing happens; {which}, source {span}"), {home}
    when = "" if not facts.dc_only else f" ({home} is the DC)" if dc == home else f" (on the DC only: is {home} it?)"
    return "planned", (
        f"{home} keeps it, or {where} once {home} is fenced or stopped there cleanly, never running twice: "
        f"{facts.source}{when}; the DC fences {home} if its scheduler runs before the respawned controller rejoins "
        f"(\"peer process is no longer available\", unpack.c), and erases {home}'s transient attributes "
        f"(controld_callbacks.c), which bans the group from {home} where its rules need them. Documented: "
        f"respawned, nothing happens; {which}, source {span}; CTS ComponentFail passes either way"), {home}
