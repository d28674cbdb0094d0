"""The embedded testbed's fence devices as the fence faults see them: break one (`fail`, `hang`), mend it, ask it.

Each device of `cluster.fencing_topology` is the fence broker behind a socket of its own; a
switch file per device (`Layout.fence_fault`) tells the broker to fail or hold that device's
power actions. The check goes the way pacemaker-fenced goes: the real `fence_fallover` agent,
with the device's parameters, asking for a harmless action (`on` of a node that is running).
"""

from __future__ import annotations

import os
import subprocess

from harness.errors import TestbedError
from harness.testbed.layout import Layout

MODES = ("ok", "fail", "hang")
AGENT = "/usr/sbin/fence_fallover"


def _known(layout: Layout, device: str) -> None:
    if device not in layout.topology.cluster.fencing_topology:
        raise TestbedError(f"no fence device {device!r}; the topology has "
                           f"{', '.join(layout.topology.cluster.fencing_topology)}")


def mode(layout: Layout, device: str) -> str | None:
    """`ok`, `fail` or `hang`; None when the device's broker socket is not there (testbed down)."""
    _known(layout, device)
    if not layout.fence_socket_for(device).exists():
        return None
    try:
        return layout.fence_fault(device).read_text().strip() or "fail"
    except FileNotFoundError:
        return "ok"


def set_mode(layout: Layout, device: str, new: str) -> None:
    """Write (or remove, for `ok`) the device's switch file; atomic, so the broker never reads half of it."""
    _known(layout, device)
    if new not in MODES:
        raise ValueError(f"unknown fence device mode {new!r}, expected one of {MODES}")
    switch = layout.fence_fault(device)
    if new == "ok":
        switch.unlink(missing_ok=True)
        return
    if not layout.fence_socket_for(device).exists():
        raise TestbedError(f"fence device {device}: its broker socket {layout.fence_socket_for(device)} is not there "
                           f"(is the testbed up?)")
    switch.parent.mkdir(parents=True, exist_ok=True)
    tmp = switch.with_name(f"{switch.name}.tmp")
    tmp.write_text(new + "\n")
    os.replace(tmp, switch)


def check(layout: Layout, device: str, node: str, timeout: float = 3.0) -> str | None:
    """What the agent gets for `on <node>` through the device: None when OK (a running node is left alone)."""
    _known(layout, device)
    try:
        r = subprocess.run([AGENT, f"--broker={layout.fence_socket_for(device)}", "-o", "on", "-n", node],
                           capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return f"no answer from fence device {device} within {timeout:g} s"
    except OSError as e:
        return f"{AGENT}: {e.strerror or e}"
    return None if r.returncode == 0 else (r.stderr.strip() or f"{AGENT} exited {r.returncode}")
