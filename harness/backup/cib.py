"""Cluster configuration (CIB) comparison: what a restore must bring back, and what it may not.

A CIB dump (`cibadmin --query`) carries, besides the configuration an operator wrote, what
the cluster keeps for itself and rewrites on its own: version counters, the status section,
and a few properties the DC sets. Two configurations are "the same" when everything else is
identical, element order included (the order of a group's members is its start order).
"""

from __future__ import annotations

import difflib
import xml.etree.ElementTree as ET

from harness.errors import FalloverError

VOLATILE_NVPAIRS: dict[str, str] = {
    "last-lrm-refresh": "written by every `crm_resource --cleanup`, which recovery runs",
    "dc-version": "set by each newly elected DC",
    "cluster-infrastructure": "set by each newly elected DC",
    "have-watchdog": "set by each newly elected DC",
}
"""Cluster properties the cluster writes itself, with why they are not compared."""

EMPTY_SETS = ("meta_attributes", "instance_attributes", "utilization")
"""Attribute sets with no nvpair say nothing; `crm_resource --delete-parameter` may leave one behind
(the data restore sets and then deletes the application's target-role)."""


def configuration(cib_xml: str) -> ET.Element:
    """The `<configuration>` element of a CIB dump (or the element itself when given one)."""
    try:
        root = ET.fromstring(cib_xml)
    except ET.ParseError as e:
        raise FalloverError(f"not a CIB (XML does not parse: {e})") from None
    conf = root if root.tag == "configuration" else root.find("configuration")
    if conf is None:
        raise FalloverError(f"not a CIB: no <configuration> under <{root.tag}>")
    return conf


def normalise(cib_xml: str) -> str:
    """The configuration alone, canonical and indented, without what the cluster writes itself.

    Version counters (epoch, num_updates, admin_epoch) live on `<cib>` and the status section
    beside `<configuration>`: taking the configuration leaves both out.

    >>> a = '<cib epoch="3" num_updates="9"><configuration><crm_config><cluster_property_set id="o">'
    >>> b = '<nvpair id="o-l" name="last-lrm-refresh" value="1"/></cluster_property_set></crm_config>'
    >>> normalise(a + b + '</configuration><status/></cib>') == normalise(
    ...     '<cib epoch="7"><configuration><crm_config><cluster_property_set id="o"/></crm_config></configuration></cib>')
    True
    """
    conf = configuration(cib_xml)
    for parent in list(conf.iter()):
        for child in list(parent):
            if child.tag == "nvpair" and child.get("name") in VOLATILE_NVPAIRS:
                parent.remove(child)
    for parent in list(conf.iter()):
        for child in list(parent):
            if child.tag in EMPTY_SETS and not list(child):
                parent.remove(child)
    canonical = ET.canonicalize(ET.tostring(conf, encoding="unicode"), strip_text=True)
    tree = ET.fromstring(canonical)
    ET.indent(tree)
    return ET.tostring(tree, encoding="unicode")


def differences(saved: str, live: str, *, lines: int = 12) -> list[str]:
    """The first lines of a unified diff between two normalised configurations (empty: the same)."""
    if saved == live:
        return []
    diff = difflib.unified_diff(saved.splitlines(), live.splitlines(), "saved", "live", n=0, lineterm="")
    out = [d for d in diff if not d.startswith(("---", "+++"))]
    return out[:lines] + ([f"… {len(out) - lines} more diff lines"] if len(out) > lines else [])


def version(cib_xml: str) -> str:
    """`admin_epoch.epoch` of a CIB dump: it changes with every configuration change, and only then.

    >>> version('<cib admin_epoch="0" epoch="12" num_updates="40"><configuration/></cib>')
    '0.12'
    """
    root = ET.fromstring(cib_xml)
    return f"{root.get('admin_epoch', '?')}.{root.get('epoch', '?')}"
