"""What a backup, a restore and a disk repair ask of Pacemaker: the configuration (CIB) out and back in,
the group's application stopped while its filesystem stays mounted, and a group stopped and started afresh."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from harness.backup.cib import configuration
from harness.drivers.state import ClusterState
from harness.errors import FalloverError
from harness.result import Result
from harness.testbed.base import Progress, quiet


class PacemakerBackup:
    """Mixed into PacemakerDriver: needs its ``admin`` (returning the Result), ``state`` and ``wait_until``."""

    admin: Callable[..., Result]
    state: Callable[[], ClusterState | None]
    wait_until: Callable[..., ClusterState]
    cleanup: Callable[..., Any]

    def config_dump(self) -> str:
        """The whole CIB as the cluster holds it now (`cibadmin --query`): configuration and status."""
        out = self.admin(["cibadmin", "--query"], timeout=30).stdout
        configuration(out)  # raises if what came back is not a CIB
        return out

    def config_restore(self, cib_xml: str) -> None:
        """Replace the cluster's configuration section with the one of ``cib_xml`` (status is the cluster's own).

        Only the section is replaced, so the CIB's version counters go on from the live ones: a whole
        replaced CIB with an older epoch would be refused by the cluster, or lose to a node's newer copy.
        """
        conf = ET.tostring(configuration(cib_xml), encoding="unicode")
        self.admin(["cibadmin", "--replace", "--scope", "configuration", "--xml-pipe"], timeout=60, input=conf)

    @contextmanager
    def application_stopped(self, group: str, *, timeout: float = 60.0, progress: Progress = quiet) -> Iterator[str]:
        """Stop the group's application, keep the rest of the group (its filesystem) where it runs, yield that node.

        The application is the group's last member (a group starts in order: it is the one that needs
        the others). Its ``target-role`` goes back to what it was on every exit path, and the group is
        awaited started again.
        """
        s = self.state()
        g = s.groups.get(group) if s is not None else None
        if g is None:
            raise FalloverError(f"group {group} is not in the cluster: cannot stop its application")
        if len(g.resources) < 2:
            raise FalloverError(f"group {group} has no member besides its application: no filesystem to keep "
                                "mounted while the application is stopped")
        app, rest = g.resources[-1].id, [r.id for r in g.resources[:-1]]
        progress(f"stopping {app} (the rest of {group} stays where it is)")
        with self._stopped(app):
            def stopped(s: ClusterState) -> bool:
                grp = s.groups.get(group)
                if grp is None:
                    return False
                members = {r.id: r for r in grp.resources}
                return app in members and members[app].role == "Stopped" and not members[app].nodes and \
                    len(grp.nodes) == 1 and all(members[r].role == "Started" for r in rest if r in members)

            s = self.wait_until(stopped, timeout=timeout, what=f"{app} stopped, {group}'s other members running",
                                progress=progress)
            yield s.groups[group].nodes[0]
        progress(f"starting {app} again")
        self.wait_until(lambda s: s.group_node(group) is not None, timeout=timeout,
                        what=f"{group} started again", progress=progress)

    def restart_group(self, group: str, *, timeout: float = 120.0) -> None:
        """Stop every member of the group, forget its failures, and let the cluster start it where its policy says.

        Not `crm_resource --restart`: that waits until every member is active again where it was, and a
        group caught in its recovery (its filesystem's start failed on every node while its IP ran) never
        is, until the failures are cleared: a disk repair timed out there after 120 s, with 134 s of outage.
        The start is the cluster's (and the caller's wait for it): it may rightly go to another node.
        """
        with self._stopped(group):
            self.wait_until(lambda s: group in s.groups and not s.groups[group].nodes, timeout=timeout,
                            what=f"every member of {group} stopped")
            self.cleanup(group)

    @contextmanager
    def _stopped(self, rsc: str) -> Iterator[None]:
        """``rsc``'s target-role is Stopped inside the block, and back to what it was on every exit path."""
        before = _target_role(self.config_dump(), rsc)
        self.admin(["crm_resource", "--resource", rsc, "--meta", "--set-parameter", "target-role",
                    "--parameter-value", "Stopped"])
        try:
            yield
        finally:
            if before is None:
                self.admin(["crm_resource", "--resource", rsc, "--meta", "--delete-parameter", "target-role"])
            else:
                self.admin(["crm_resource", "--resource", rsc, "--meta", "--set-parameter", "target-role",
                            "--parameter-value", before])


def _target_role(cib_xml: str, rsc: str) -> str | None:
    """The resource's (primitive's or group's) own target-role meta attribute in a CIB, or None when it has none.

    >>> _target_role('<cib><configuration><resources><primitive id="a"><meta_attributes id="m">'
    ...              '<nvpair id="n" name="target-role" value="Started"/></meta_attributes></primitive>'
    ...              '</resources></configuration></cib>', "a")
    'Started'
    """
    for prim in configuration(cib_xml).iter():
        if prim.tag in ("primitive", "group") and prim.get("id") == rsc:
            for nv in prim.findall("meta_attributes/nvpair"):
                if nv.get("name") == "target-role":
                    return nv.get("value")
    return None
