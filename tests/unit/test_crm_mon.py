"""crm_mon XML → ClusterState, on output recorded from the embedded cluster."""

from __future__ import annotations

from pathlib import Path

from harness.drivers.state import parse_crm_mon

DATA = Path(__file__).resolve().parent.parent / "data"


def test_moved_group_is_reported_on_node2_with_dc_and_quorum() -> None:
    s = parse_crm_mon((DATA / "crm_mon_moved.xml").read_text(), seen_from="node1")
    assert s.dc == "node1" and s.quorate
    assert s.online == ["node1", "node2", "node3"]
    assert s.group_node("app") == "node2"
    assert s.groups["app"].started_count == 3
    assert s.resources["fence"].nodes == ("node1",)
    assert s.stack_versions["pacemaker"] == "2.1.5"
    assert "app=node2(3/3)" in s.summary()


def test_offline_node_failed_action_and_split_group() -> None:
    xml = """<pacemaker-result api-version="2.25" request="crm_mon">
  <summary><current_dc present="true" name="node2" with_quorum="true" version="2.1.5-x"/></summary>
  <nodes>
    <node name="node1" online="false" unclean="true"/>
    <node name="node2" online="true" is_dc="true"/>
    <node name="node3" online="true"/>
  </nodes>
  <resources>
    <group id="app" number_resources="2">
      <resource id="app-fs" resource_agent="ocf:heartbeat:Filesystem" role="Started" active="true">
        <node name="node2"/></resource>
      <resource id="app-ip" resource_agent="ocf:heartbeat:IPaddr2" role="Started" active="true">
        <node name="node2"/><node name="node3"/></resource>
    </group>
  </resources>
  <failures>
    <failure op_key="app-app_monitor_2000" node="node2" exitstatus="not running" exitreason="gone"
             exitcode="7" call="12" status="complete" task="monitor"/>
  </failures>
</pacemaker-result>"""
    s = parse_crm_mon(xml, seen_from="node3")
    assert s.offline == ["node1"] and s.online == ["node2", "node3"]
    assert s.nodes["node1"].status == "unclean"
    g = s.groups["app"]
    assert g.node is None and g.nodes == ("node2", "node3")  # multi-active: not "started"
    (f,) = s.failed_actions
    assert (f.resource, f.task, f.node, f.exitcode) == ("app-app", "monitor", "node2", 7)
    assert "gone" in str(f)


def test_no_dc_view_of_a_just_joined_node() -> None:
    xml = """<pacemaker-result><summary><current_dc present="false"/></summary>
      <nodes><node name="node3" online="true"/></nodes><resources/></pacemaker-result>"""
    s = parse_crm_mon(xml, seen_from="node3")
    assert s.dc is None and not s.quorate and s.groups == {}
