"""The diagnosis turns crm_mon's account into lines a person can act on (recorded-shape XML, no cluster)."""

from __future__ import annotations

from harness.diagnosis import explain


def mon(nodes: str, resources: str, *, extra: str = "", quorum: bool = True, dc: bool = True) -> str:
    return f"""<pacemaker-result api-version="2.25" request="crm_mon">
  <summary>
    <current_dc present="{str(dc).lower()}" name="node2" id="2" with_quorum="{str(quorum).lower()}"/>
    <cluster_options stonith-enabled="true" no-quorum-policy="stop" maintenance-mode="false"
                     stop-all-resources="false"/>
  </summary>
  <nodes>{nodes}</nodes>
  <resources>{resources}</resources>
  {extra}
  <status code="0" message="OK"/>
</pacemaker-result>"""


ONLINE = ('<node name="node2" online="true" unclean="false" standby="false" maintenance="false" pending="false"/>'
          '<node name="node3" online="true" unclean="false" standby="false" maintenance="false" pending="false"/>')
UNCLEAN = '<node name="node1" online="false" unclean="true" standby="false" maintenance="false" pending="false"/>'


def group(role: str = "Started", node: str | None = "node1", **flags: str) -> str:
    attrs = " ".join(f'{k}="{v}"' for k, v in {"blocked": "false", "managed": "true", "failed": "false",
                                                 **flags}.items())
    where = f'<node name="{node}" id="1" cached="true"/>' if node else ""
    members = "".join(f'<resource id="app-{m}" resource_agent="x" role="{role}" active="true" {attrs}>{where}'
                      f'</resource>' for m in ("fs", "ip", "app"))
    return f'<group id="app" number_resources="3" managed="true">{members}</group>'


def test_a_healthy_group_only_says_where_it_last_ran() -> None:
    history = ('<node_history><node name="node2"><resource_history id="app-app" migration-threshold="1">'
               '<operation_history call="48" task="start" rc="0" last-rc-change="Sun Nov 29 14:18:14 2026"/>'
               '</resource_history></node></node_history>')
    d = explain(mon(ONLINE, group(node="node2"), extra=history), "<list/>", group="app", seen_from="node2")
    assert d.lines == ["app-fs: no online node has a successful start of it in its operation history",
                       "app-ip: no online node has a successful start of it in its operation history",
                       "app-app last ran on node2 (start ok at Sun Nov 29 14:18:14 2026)"]
    assert d.errors == []


def test_an_unclean_node_and_its_failed_fencing_come_first() -> None:
    fence = ('<fence_history><fence_event action="off" target="node1" client="pacemaker-controld.42" '
             'origin="node2" status="failed" completed="2026-11-29 14:28:13Z"/></fence_history>')
    d = explain(mon(UNCLEAN + ONLINE, group(), extra=fence), None, group="app")
    assert d.lines[0].startswith("node1 is UNCLEAN: the cluster must fence it")
    assert d.lines[1].startswith("fencing (off) of node1 requested by node2: failed")
    assert any("app-app counts as still running on node1 (UNCLEAN)" in line for line in d.lines)
    assert d.errors == ["fencing history (stonith_admin) not read"]  # said, not taken for "no fencing"


def test_failed_actions_blocked_resources_bans_and_fail_counts_are_named() -> None:
    extra = ('<failures><failure op_key="app-app_monitor_2000" node="node1" exitstatus="not running" '
             'exitreason="pid 44 gone" exitcode="7" call="12" status="complete" task="monitor"/></failures>'
             '<bans><ban id="ban-app-node3" resource="app" node="node3" weight="-1000000"/></bans>'
             '<node_history><node name="node2"><resource_history id="app-app" migration-threshold="3" '
             'fail-count="1"/></node></node_history>')
    d = explain(mon(ONLINE, group(node="node2", blocked="true", failed="true"), extra=extra), "<list/>",
                group="app")
    text = "\n".join(d.lines)
    assert 'failed action: app-app monitor on node1: rc=7 (not running), complete, exit reason "pid 44 gone"' in text
    assert "app-app is BLOCKED on node2" in text
    assert "constraint ban-app-node3: app banned from node3" in text
    assert "app-app failed 1 time(s) on node2, below migration-threshold=3" in text


def test_no_quorum_and_no_dc_are_reported() -> None:
    assert explain(mon(ONLINE, group(), quorum=False), "<list/>", group="app").lines[0].startswith(
        "no quorum: the partition of node2 has lost quorum and no-quorum-policy=stop")
    assert explain(mon(ONLINE, group(), dc=False), "<list/>", group="app").lines[0].startswith("no DC")


def test_unreadable_xml_is_an_error_not_an_empty_diagnosis() -> None:
    d = explain("Could not connect to the CIB", None, group="app")
    assert d.lines == [] and d.errors and "unreadable" in d.errors[0]
