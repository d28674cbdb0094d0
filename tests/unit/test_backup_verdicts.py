"""Backup verdicts from literal histories: configuration comparison, restored writes, RPO, and the SLA judgement."""

from __future__ import annotations

import pytest

from harness.backup.cib import differences, normalise
from harness.checkers.backup import BackupHistory, judge
from harness.timeline import Request
from harness.topology import DEFAULT_TESTBED, Sla, load_topology

CIB = ('<cib epoch="{epoch}" num_updates="{n}" admin_epoch="0" cib-last-written="{when}"><configuration>'
       '<crm_config><cluster_property_set id="o"><nvpair id="o-s" name="stonith-enabled" value="true"/>'
       '{refresh}</cluster_property_set></crm_config><nodes/><resources><group id="app">'
       '<primitive id="app-fs" class="ocf" provider="heartbeat" type="Filesystem"/>'
       '<primitive id="app-app" class="ocf" provider="fallover" type="fallover-app">{meta}</primitive>'
       '</group></resources><constraints/></configuration><status>{status}</status></cib>')


def cib(epoch: int = 5, n: int = 1, when: str = "Sun Nov 29", refresh: str = "", meta: str = "",
        status: str = "") -> str:
    return CIB.format(epoch=epoch, n=n, when=when, refresh=refresh, meta=meta, status=status)


def test_normalised_configuration_ignores_counters_status_and_what_the_cluster_writes() -> None:
    saved = cib()
    live = cib(epoch=9, n=40, when="Mon Nov 30", status='<node_state id="1" uname="node1"/>',
               refresh='<nvpair id="o-l" name="last-lrm-refresh" value="1795970000"/>',
               meta='<meta_attributes id="app-app-meta_attributes"/>')  # left by crm_resource --delete-parameter
    assert normalise(saved) == normalise(live)
    assert differences(normalise(saved), normalise(live)) == []


def test_a_real_configuration_change_is_a_difference_that_names_it() -> None:
    stopped = cib(meta='<meta_attributes id="m"><nvpair id="m-t" name="target-role" value="Stopped"/>'
                       '</meta_attributes>')
    diff = differences(normalise(cib()), normalise(stopped))
    assert diff and any("target-role" in line and line.startswith("+") for line in diff)
    reordered = cib().replace('<primitive id="app-fs" class="ocf" provider="heartbeat" type="Filesystem"/>', "") \
        .replace("</group>", '<primitive id="app-fs" class="ocf" provider="heartbeat" type="Filesystem"/></group>')
    assert normalise(cib()) != normalise(reordered)  # a group's member order is its start order


def test_an_erased_configuration_differs() -> None:
    erased = '<cib epoch="6"><configuration><crm_config/><nodes/><resources/><constraints/></configuration></cib>'
    assert differences(normalise(cib()), normalise(erased))


# -- verdicts over a recorded history: backup point at t=100, the loss at t=105 --------------------------------

def put(key: str, t: float, value: str | None = None, ok: bool = True) -> Request:
    return Request(t, 1e9 + t, "put", ok, 0.01, key, value or f"v-{key}", "node1", 201 if ok else 503)


def read(key: str, t: float, value: str | None, ok: bool = True) -> Request:
    return Request(t, 1e9 + t, "verify", ok, 0.01, key, value, "node1", 200 if ok else 404,
                   None if ok else "missing (404)")


def history(**kw: object) -> BackupHistory:
    base: dict[str, object] = {"case": "backup_restore_data", "disaster_kind": "data", "backup_point": 100.0,
                               "backup_s": 2.0, "freeze_s": 0.2, "disaster": 105.0, "restore_start": 106.0,
                               "restore_s": 8.0, "saved_config": normalise(cib()),
                               "restored_config": normalise(cib(epoch=12))}
    return BackupHistory(**{**base, **kw})  # type: ignore[arg-type]


SLA = Sla(max_backup_s=10, max_restore_s=30, max_rpo_s=10)


def recorded(lost_after_point: bool = True, lost_before_point: bool = False) -> list[Request]:
    reqs = [put("a", 95.0), put("b", 99.0), put("c", 102.0), put("d", 104.5), put("e", 120.0)]
    reqs += [read("a", 130.0, None if lost_before_point else "v-a", ok=not lost_before_point),
             read("b", 130.0, "v-b"), read("e", 130.0, "v-e")]
    reqs += [read(k, 130.0, None, ok=False) if lost_after_point else read(k, 130.0, f"v-{k}") for k in ("c", "d")]
    return reqs


def test_a_consistent_backup_passes_every_verdict() -> None:
    v = judge(history(), recorded(), SLA)
    assert {n: x.valid for n, x in v.items()} == {n: True for n in v}, [str(x) for x in v.values()]
    assert v["restored_writes"].explanation.startswith("all 2 writes acknowledged before the backup point")
    assert v["rpo"].measured == pytest.approx(105.0 - 102.01)  # the oldest write rolled back → the loss
    assert "2 acknowledged writes" in v["rpo"].explanation
    assert v["backup_time"].measured == 2.0 and "held for 0.2 s" in v["backup_time"].explanation


def test_a_write_acknowledged_before_the_backup_point_and_missing_fails_and_widens_the_window() -> None:
    v = judge(history(), recorded(lost_before_point=True), SLA)
    assert v["restored_writes"].valid is False and v["restored_writes"].measured == 1
    assert "a (acknowledged at -4.99 s, verify failed: missing (404))" in v["restored_writes"].explanation
    assert v["rpo"].measured == pytest.approx(105.0 - 95.01)
    assert v["rpo"].valid is True  # 9.99 s: within 10 s; a tighter SLA fails it
    assert judge(history(), recorded(lost_before_point=True), SLA.model_copy(update={"max_rpo_s": 5}))["rpo"] \
        .valid is False


def test_nothing_lost_is_an_rpo_of_zero_but_nothing_acknowledged_before_the_point_is_unknown() -> None:
    v = judge(history(), recorded(lost_after_point=False), SLA)
    assert v["rpo"].valid is True and v["rpo"].measured == 0.0
    late = [r for r in recorded() if r.mono > 100.0 or r.kind == "verify"]
    v = judge(history(), late, SLA)
    assert v["restored_writes"].valid == "unknown" and "no write was acknowledged" in v["restored_writes"].explanation


@pytest.mark.parametrize("field, measured, verdict", [
    ("backup_s", 10.0, True), ("backup_s", 10.01, False), ("restore_s", 30.0, True), ("restore_s", 31.0, False)])
def test_times_are_judged_against_their_sla(field: str, measured: float, verdict: bool) -> None:
    name = "backup_time" if field == "backup_s" else "restore_time"
    v = judge(history(**{field: measured}), recorded(), SLA)[name]
    assert v.valid is verdict and v.measured == measured and v.limit == (10 if field == "backup_s" else 30)


def test_an_unfinished_backup_or_restore_is_unknown_never_a_pass() -> None:
    v = judge(history(backup_s=None, backup_point=None, restore_s=None, restored_config=None), recorded(), SLA)
    for name in ("backup_time", "restore_time", "restored_writes", "rpo", "config_restored"):
        assert v[name].valid == "unknown", v[name]


def test_a_configuration_that_did_not_come_back_fails_naming_the_difference() -> None:
    v = judge(history(restored_config=normalise('<cib><configuration><resources/></configuration></cib>')),
              recorded(), SLA)["config_restored"]
    assert v.valid is False and "app-app" in v.explanation


def test_sla_defaults_and_topology_fields() -> None:
    assert (Sla().max_backup_s, Sla().max_restore_s, Sla().max_rpo_s) == (60.0, 120.0, 10.0)
    sla = load_topology(DEFAULT_TESTBED).sla
    assert sla.max_rpo_s > 0 and sla.max_restore_s > 0 and sla.max_backup_s > 0


# -- the driver side: the application stopped and started again on every path ------------------------------------

class FakePacemaker:
    """PacemakerBackup over a scripted cluster: admin commands are recorded, crm_mon is what they made it."""

    def __init__(self, target_role: str | None = None) -> None:
        self.commands: list[list[str]] = []
        self.app_role = "Started"
        self.group_role = "Started"
        self.meta = (f'<meta_attributes id="m"><nvpair id="m-t" name="target-role" value="{target_role}"/>'
                     '</meta_attributes>' if target_role else "")

    def admin(self, argv: list[str], timeout: float = 30.0, **_: object) -> object:
        from harness.result import Result

        self.commands.append(argv)
        if argv[:2] == ["cibadmin", "--query"]:
            return Result("node1", tuple(argv), 0, cib(meta=self.meta), "", 0.0)
        if "--resource" in argv and ("--set-parameter" in argv or "--delete-parameter" in argv):
            role = "Stopped" if "--set-parameter" in argv and argv[-1] == "Stopped" else "Started"
            setattr(self, "group_role" if argv[argv.index("--resource") + 1] == "app" else "app_role", role)
        return Result("node1", tuple(argv), 0, "", "", 0.0)

    def cleanup(self, resource: str | None = None) -> None:
        self.commands.append(["cleanup", str(resource)])

    def state(self) -> object:
        from harness.drivers.state import parse_crm_mon

        fs_role = self.group_role
        app_role = "Stopped" if "Stopped" in (self.group_role, self.app_role) else "Started"
        where = {"Started": '<node name="node1"/>', "Stopped": ""}
        return parse_crm_mon(
            '<crm_mon><summary><current_dc present="true" name="node1"/></summary><nodes>'
            '<node name="node1" online="true"/></nodes><resources><group id="app">'
            f'<resource id="app-fs" role="{fs_role}">{where[fs_role]}</resource>'
            f'<resource id="app-app" role="{app_role}">{where[app_role]}</resource>'
            '</group></resources></crm_mon>', "node1")

    def wait_until(self, predicate, *, timeout: float, what: str, **_: object) -> object:  # type: ignore[no-untyped-def]
        s = self.state()
        assert predicate(s), what
        return s


def pcmk(target_role: str | None = None):  # type: ignore[no-untyped-def]
    from harness.drivers.pcmk_backup import PacemakerBackup

    class Driver(FakePacemaker, PacemakerBackup):  # type: ignore[misc]
        pass

    return Driver(target_role)


def test_the_application_is_stopped_with_its_filesystem_kept_and_started_again_even_after_an_error() -> None:
    d = pcmk()
    with pytest.raises(RuntimeError), d.application_stopped("app") as node:
        assert node == "node1" and d.app_role == "Stopped"
        raise RuntimeError("the put-back failed")
    changes = [c for c in d.commands if c[0] == "crm_resource"]
    assert changes[0][-3:] == ["target-role", "--parameter-value", "Stopped"] and changes[0][2] == "app-app"
    assert changes[-1][-2:] == ["--delete-parameter", "target-role"]  # it had none: none is left
    assert d.app_role == "Started"


def test_a_target_role_the_application_had_is_put_back_as_it_was() -> None:
    d = pcmk(target_role="Started")
    with d.application_stopped("app"):
        pass
    assert [c for c in d.commands if c[0] == "crm_resource"][-1][-3:] == ["target-role", "--parameter-value",
                                                                          "Started"]


def test_a_group_restart_stops_every_member_clears_its_failures_then_lets_the_cluster_start_it() -> None:
    """Not crm_resource --restart, which waits for every member back where it was (a disk repair hung 120 s)."""
    d = pcmk()
    seen: list[str] = []
    real_cleanup = d.cleanup

    def cleanup(resource: str | None = None) -> None:
        seen.append(d.group_role)  # the failures are forgotten while the group is stopped
        real_cleanup(resource)

    d.cleanup = cleanup  # type: ignore[method-assign]
    d.restart_group("app")
    changes = [c for c in d.commands if c[0] in ("crm_resource", "cleanup")]
    assert changes[0][2] == "app" and changes[0][-1] == "Stopped"
    assert changes[1] == ["cleanup", "app"] and seen == ["Stopped"]
    assert changes[-1][-2:] == ["--delete-parameter", "target-role"] and d.group_role == "Started"
    assert not any("--restart" in c for c in d.commands)


def test_a_saved_case_is_judged_again_from_its_files_against_other_slas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json
    from dataclasses import asdict

    from harness.checkers.backup import judge_saved
    from harness.timeline import FAULT_HEALED, FAULT_INJECTED, Timeline

    (tmp_path / "history.json").write_text(json.dumps(history().to_dict()))
    (tmp_path / "load.jsonl").write_text("".join(json.dumps(asdict(r)) + "\n" for r in recorded()))
    t = Timeline()
    t.add(FAULT_INJECTED, None, mono=105.0, fault="data_loss")
    t.add(FAULT_HEALED, None, mono=114.0, fault="data_loss")
    t.save(tmp_path / "timeline.json")
    topo = load_topology(DEFAULT_TESTBED)
    first = judge_saved(tmp_path, topo.model_copy(update={"sla": SLA}))
    assert first["restore_time"].valid is True and first["redundancy_restored"].valid is False  # never redundant
    again = judge_saved(tmp_path, topo.model_copy(update={"sla": SLA.model_copy(update={"max_restore_s": 5})}))
    assert again["restore_time"].valid is False and again["restore_time"].limit == 5
