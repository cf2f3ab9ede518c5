"""The paper-scale script's estimate arithmetic and its JSON schema
(benchmarks/paper_scale.py; the measuring itself needs a Dask cluster and is not run here).
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "paper_scale.py"


@pytest.fixture(scope="module")
def ps():
    spec = importlib.util.spec_from_file_location("paper_scale", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run(campaign, workers, items_wall_s, *, items=100, item_s=6.0, cpu_per_item=5.0,
         longest=20.0):
    return {"campaign": campaign, "workers": workers, "executor": "dask", "items": items,
            "wall_s": items_wall_s + 10.0, "items_wall_s": items_wall_s, "serial_s": 10.0,
            "item_seconds_sum": item_s * items, "item_s": item_s,
            "longest_item_s": longest, "serial_fixed_s": 4.0, "serial_per_item_s": 0.06,
            "items_per_s": items / items_wall_s, "cpu_seconds_workers": cpu_per_item * items,
            "cpu_seconds_per_item": cpu_per_item, "cpu_seconds_main": 9.0, "failed": 0,
            "details": {}}


def test_campaign_wall_time_is_serial_plus_the_larger_of_longest_item_and_shared_work(ps):
    # S + max(L, W / max(1, N * eta))
    assert ps.campaign_wall_s(100.0, 10.0, 5.0, 4, 0.5) == pytest.approx(5 + 100 / 2)
    assert ps.campaign_wall_s(100.0, 10.0, 5.0, 100, 1.0) == pytest.approx(5 + 10)
    # one worker does all the work whatever the efficiency; more are never slower
    assert ps.campaign_wall_s(100.0, 10.0, 5.0, 1, 0.3) == pytest.approx(105)
    assert ps.campaign_wall_s(100.0, 10.0, 5.0, 2, 0.3) == pytest.approx(105)
    with pytest.raises(ValueError, match="n_workers"):
        ps.campaign_wall_s(1.0, 1.0, 0.0, 0)
    with pytest.raises(ValueError, match="efficiency"):
        ps.campaign_wall_s(1.0, 1.0, 0.0, 2, 1.5)


def test_a_prefix_scales_to_the_full_item_count(ps):
    scaled = ps.scaled_campaign({"items": 100, "item_s": 6.0, "longest_item_s": 20.0,
                                 "serial_fixed_s": 4.0, "serial_per_item_s": 0.2}, 10000)
    assert scaled == {"items": 10000, "work_s": 60000.0, "longest_s": 20.0,
                      "serial_s": pytest.approx(2004.0)}


def test_campaigns_together_share_the_workers_one_by_one_add_up(ps):
    campaigns = {"rss": {"work_s": 1000.0, "longest_s": 10.0, "serial_s": 20.0},
                 "compression": {"work_s": 600.0, "longest_s": 600.0, "serial_s": 5.0}}
    # together: 25 + max(600, 1600 / 8); one by one: (20 + 1000 / 8) + (5 + 600)
    assert ps.estimate_wall_s(campaigns, 8) == pytest.approx(625.0)
    assert ps.estimate_wall_s(campaigns, 8, together=False) == pytest.approx(750.0)
    assert ps.estimate_wall_s(campaigns, 1) == pytest.approx(1625.0)
    with pytest.raises(ValueError):
        ps.estimate_wall_s({}, 2)


def test_efficiency_is_the_speed_up_over_two_capped_at_one(ps):
    assert ps.efficiency_from(100.0, 62.5) == pytest.approx(0.8)
    assert ps.efficiency_from(100.0, 40.0) == 1.0
    with pytest.raises(ValueError):
        ps.efficiency_from(0.0, 1.0)


def test_the_estimate_lists_unmeasured_campaigns_and_one_time_per_n(ps):
    est = ps.estimate({"rss": _run("rss", 1, 600.0)}, 0.8, workers=(1, 2, 4))
    assert est["missing"] == ["compression", "cv"]
    assert est["campaigns"]["rss"]["work_s"] == pytest.approx(6.0 * 10000)
    assert est["workers"] == [1, 2, 4]
    assert len(est["together_s"]) == len(est["one_by_one_s"]) == 3
    assert est["together_s"][0] == pytest.approx(4.0 + 600.0 + 60000.0)
    assert est["together_s"][2] == pytest.approx(604.0 + 60000.0 / 3.2)


def test_report_has_the_schema_scaling_and_an_idle_core_estimate(ps, tmp_path):
    runs = [_run("rss", 1, 600.0), _run("rss", 2, 375.0, cpu_per_item=5.5),
            _run("compression", 1, 500.0, items=1, item_s=500.0, longest=500.0,
                 cpu_per_item=250.0)]
    report = ps.build_report(runs, {"spec": "sw", "name": "sw", "sha256": None},
                             {"cpus": 2}, "paper_scale.py")
    assert ps.check_report(report) == []
    json.loads(json.dumps(report))  # JSON all the way
    assert report["scaling"]["rss"]["speedup_1_to_2"] == pytest.approx(1.6)
    assert report["scaling"]["rss"]["efficiency"] == pytest.approx(0.8)
    assert "compression" not in report["scaling"]  # measured on one size only
    est, idle = report["estimate"], report["estimate_idle_cores"]
    assert est["missing"] == idle["missing"] == ["cv"]
    assert est["efficiency"] == pytest.approx(0.8) and idle["efficiency"] == 1.0
    # idle cores: CPU seconds per item instead of wall seconds, the longest item scaled
    assert idle["campaigns"]["rss"]["work_s"] == pytest.approx(5.0 * 10000)
    assert idle["campaigns"]["compression"]["longest_s"] == pytest.approx(250.0)
    # the run on the fewest workers is the measurement the estimate scales
    assert est["campaigns"]["rss"]["work_s"] == pytest.approx(6.0 * 10000)


def test_check_report_names_what_is_missing(ps):
    report = ps.build_report([_run("rss", 1, 600.0)], {}, {}, "x")
    del report["runs"][0]["cpu_seconds_per_item"]
    report["estimate"]["together_s"].pop()
    report["schema"] = "other/1"
    problems = ps.check_report(report)
    assert "runs[0] missing cpu_seconds_per_item" in problems
    assert "estimate.together_s does not match estimate.workers" in problems
    assert any("schema" in p for p in problems)


def test_arguments_after_pytest_go_to_pytest(ps):
    args = ps.parse_args(["--workers", "2", "--pytest", "--", "-k", "md", "-x"])
    assert args.pytest and args.workers == [2]
    assert args.pytest_args == ["-k", "md", "-x"]
    args = ps.parse_args(["--structures", "40"])
    assert not args.pytest and args.pytest_args == [] and args.structures == 40


def test_repeated_runs_of_one_size_are_combined_from_their_sums(ps):
    runs = [_run("rss", 1, 600.0), _run("rss", 2, 400.0), _run("rss", 2, 350.0),
            _run("rss", 1, 650.0, item_s=7.0, longest=30.0, cpu_per_item=6.0)]
    one = ps.combine([runs[0], runs[3]])
    assert one["items"] == 200 and one["items_wall_s"] == pytest.approx(1250.0)
    assert one["item_s"] == pytest.approx(6.5)
    assert one["cpu_seconds_per_item"] == pytest.approx(5.5)
    assert one["longest_item_s"] == 30.0
    assert ps.combine([runs[0]]) is runs[0]
    report = ps.build_report(runs, {}, {}, "x")
    # 1 -> 2 workers: 1250 s against 750 s for the same 200 items
    assert report["scaling"]["rss"]["speedup_1_to_2"] == pytest.approx(1250 / 750)
    assert report["estimate"]["campaigns"]["rss"]["work_s"] == pytest.approx(6.5 * 10000)
