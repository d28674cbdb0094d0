"""The pytest plugin end to end with pytester: plan ids, random scenarios that replay, bad options."""

from __future__ import annotations

import pytest


SUITE = """
FAMILIES = {"node", "network", "disk", "application", "cluster"}

def test_fallover(fallover_case):
    pass
"""


def ids(result: pytest.RunResult) -> list[str]:
    return [line.split("[", 1)[1].rstrip("]") for line in result.outlines if "::test_fallover[" in line]


def test_plan_parametrizes_one_test_per_fault_and_target(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    r = pytester.runpytest("--collect-only", "-q")
    got = ids(r)
    assert "node_power_off-node1" in got and "adapter_down-node2-standby" in got
    assert not any(i.startswith("group_move") for i in got)  # planned operations are another suite's


def test_random_scenario_replays_with_the_same_seed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    a = ids(pytester.runpytest("--collect-only", "-q", "--scenario", "random", "--repeat", "6", "--seed", "42"))
    b = ids(pytester.runpytest("--collect-only", "-q", "--scenario", "random", "--repeat", "6", "--seed", "42"))
    c = ids(pytester.runpytest("--collect-only", "-q", "--scenario", "random", "--repeat", "6", "--seed", "43"))
    assert len(a) == 6 and a == b and a != c
    assert a[0].startswith("step01-")
    header = pytester.runpytest("--collect-only", "--scenario", "random", "--seed", "42").stdout.str()
    assert "--seed 42" in header


def test_faults_filter_and_unknown_fault(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    got = ids(pytester.runpytest("--collect-only", "-q", "--faults", "disk_pull,app_kill"))
    assert got == ["disk_pull-shared", "app_kill-app"]
    r = pytester.runpytest("--collect-only", "-q", "--faults", "meteor_strike")
    assert r.ret != 0 and "meteor_strike" in r.stderr.str() + r.stdout.str()


def test_bad_testbed_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_suite=SUITE)
    bad = pytester.makefile(".yaml", bad="name: x\nnodes: []\n")
    r = pytester.runpytest_subprocess("--collect-only", "-q", "--testbed", str(bad))
    assert r.ret == 2
    out = r.stderr.str() + r.stdout.str()
    assert "bad.yaml: nodes:" in out


CLUSTER_SUITE = """
SUITE = "cluster"

def test_cluster(fallover_case):
    pass
"""


def test_a_suite_named_by_its_faults_gets_them_and_the_daily_suite_does_not(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_daily=SUITE, test_cluster=CLUSTER_SUITE)
    r = pytester.runpytest("--collect-only", "-q")
    daily = [line.split("[", 1)[1].rstrip("]") for line in r.outlines if "::test_fallover[" in line]
    cluster = [line.split("[", 1)[1].rstrip("]") for line in r.outlines if "::test_cluster[" in line]
    assert "controld_kill-node1" in cluster and "cluster_one_by_one-cluster" in cluster
    assert "partition_bridge-node2" in cluster and "node_power_off-node1" not in cluster
    assert not any(i.startswith(("controld_kill", "partition_majority", "cluster_")) for i in daily)
    assert "partition-node1" in daily


def test_collect_only_shows_each_case_with_its_expected_outcome(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_cluster=CLUSTER_SUITE)
    out = pytester.runpytest("--collect-only", "-q").stdout.str()
    assert ("expected test_cluster[corosync_pause_short-node1]: app stays on node1 (a 0.5 s pause is shorter "
            "than the 1000 ms token") in out
    assert "expected test_cluster[cluster_one_by_one-cluster]: app stops with the cluster and starts once" in out


def test_the_daily_suite_leaves_out_repetitions_and_the_matrix_suite_takes_only_them(pytester: pytest.Pytester) -> None:
    """REPETITIONS (issue 14's budget): the two suites split the plan, together exactly the suite without it."""
    pytester.makepyfile(test_all=SUITE, test_daily=SUITE.replace("}\n", '}\nREPETITIONS = "leave out"\n', 1),
                        test_matrix=SUITE.replace("}\n", '}\nREPETITIONS = "only"\n', 1))
    out = pytester.runpytest("--collect-only", "-q").outlines

    def of(module: str) -> list[str]:
        return [line.split("[", 1)[1].rstrip("]") for line in out if line.startswith(f"{module}::test_fallover[")]

    every, daily, matrix = of("test_all.py"), of("test_daily.py"), of("test_matrix.py")
    assert daily and matrix and sorted(daily + matrix) == sorted(every)
    assert "node_power_off-node3" in matrix and "node_power_off-node2" in daily and "disk_pull-shared" in daily
    # --faults narrows both the same way
    out = pytester.runpytest("--collect-only", "-q", "--faults", "partition").outlines
    assert of("test_daily.py") == ["partition-node1", "partition-node2"] and of("test_matrix.py") == ["partition-node3"]
