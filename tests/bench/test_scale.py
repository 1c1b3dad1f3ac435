"""`rbc-ray bench scale`: the JSON fields, and the slopes fitted from the cases by the documented fit."""

import json
import math

import pytest

from rbc_ray.bench.scale import loglog_slope
from rbc_ray.cli import main

CASE_KEYS = {"agents", "consumers", "firms", "n_envs", "agent_steps", "seconds_per_iteration", "agent_steps_per_s",
             "cpu_seconds_per_iteration", "peak_memory_mb", "peak_rss_mb", "repeats"}


def test_loglog_slope_by_hand():
    # ln-ln points (ln 100, 0), (ln 1000, ln 100), (ln 10000, ln 1000): in units of ln 10 the x are
    # 2, 3, 4 (mean 3) and the y 0, 2, 3 (mean 5/3), so the slope is ((-1)(-5/3) + 0 + (1)(4/3)) / 2 = 1.5
    assert loglog_slope([100, 1000, 10000], [1.0, 100.0, 1000.0]) == pytest.approx(1.5)
    assert loglog_slope([111, 1011, 10101], [3 * a ** 0.8 for a in (111, 1011, 10101)]) == pytest.approx(0.8)
    assert loglog_slope([10, 20], [5.0, 5.0]) == 0.0
    with pytest.raises(ValueError):
        loglog_slope([10], [1.0])
    with pytest.raises(ValueError):
        loglog_slope([10, 10], [1.0, 2.0])


def test_quick_bench_reports_every_case_and_the_fitted_slopes(capsys):
    assert main(["bench", "scale", "--quick", "--json", "--threads", "1"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["bench"] == "scale" and out["hardware"]["torch"] and out["device"] == "cpu"
    cases = out["cases"]
    assert len(cases) == 3 and all(set(c) == CASE_KEYS for c in cases)
    for c in cases:
        assert c["agents"] == c["consumers"] + c["firms"] + 1 and c["n_envs"] == out["n_envs"]
        assert c["agent_steps"] == c["n_envs"] * out["episode_length"] * c["agents"]
        assert c["seconds_per_iteration"] > 0 and c["peak_memory_mb"] >= 0
        assert math.isclose(c["agent_steps_per_s"], c["agent_steps"] / c["seconds_per_iteration"])
    agents = [c["agents"] for c in cases]
    assert out["slope"] == pytest.approx(loglog_slope(agents, [c["seconds_per_iteration"] for c in cases]))
    assert out["cpu_slope"] == pytest.approx(loglog_slope(agents, [c["cpu_seconds_per_iteration"] for c in cases]))
    assert out["memory_slope"] == pytest.approx(loglog_slope(agents, [max(c["peak_memory_mb"], 1e-9) for c in cases]))
    assert len(out["segment_slopes"]) == len(out["cpu_segment_slopes"]) == len(out["memory_segment_slopes"]) == 2
