"""What a backup and a restore ask of Pacemaker: the configuration (CIB) out and back in, and the
group's application stopped while its filesystem stays mounted."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from contextlib import contextmanager

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
        before = _target_role(self.config_dump(), app)
        progress(f"stopping {app} (the rest of {group} stays where it is)")
        self.admin(["crm_resource", "--resource", app, "--meta", "--set-parameter", "target-role",
                    "--parameter-value", "Stopped"])
        try:
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
        finally:
            if before is None:
                self.admin(["crm_resource", "--resource", app, "--meta", "--delete-parameter", "target-role"])
            else:
                self.admin(["crm_resource", "--resource", app, "--meta", "--set-parameter", "target-role",
                            "--parameter-value", before])
            progress(f"starting {app} again")
            self.wait_until(lambda s: s.group_node(group) is not None, timeout=timeout,
                            what=f"{group} started again", progress=progress)


def _target_role(cib_xml: str, rsc: str) -> str | None:
    """The resource's own target-role meta attribute in a CIB, or None when it has none.

    >>> _target_role('<cib><configuration><resources><primitive id="a"><meta_attributes id="m">'
    ...              '<nvpair id="n" name="target-role" value="Started"/></meta_attributes></primitive>'
    ...              '</resources></configuration></cib>', "a")
    'Started'
    """
    for prim in configuration(cib_xml).iter("primitive"):
        if prim.get("id") == rsc:
            for nv in prim.findall("meta_attributes/nvpair"):
                if nv.get("name") == "target-role":
                    return nv.get("value")
    return None
