"""The paper-on-a-GPU script (rbc_ray.bench.paper_gpu): its experiments are the paper config with
the curriculum compressed, sizes and devices come from flags or environment variables, and the
summary and figure are written from metrics (fast, no Ray). The whole pipeline at tiny size on CPU
(train 2 seeds, analyse, figures, summary) is a slow test."""

import json
import math
import os
from pathlib import Path

import pytest
import torch
import yaml

from rbc_ray.bench import paper_gpu
from rbc_ray.bench.paper_gpu import PAPER_CONFIG, SIZES, build_parser, experiment, plan_from
from rbc_ray.results import write_rows
from rbc_ray.train import load_experiment


@pytest.mark.parametrize("size", sorted(SIZES))
def test_each_size_is_the_paper_config_with_the_curriculum_compressed(size):
    plan = SIZES[size]
    cfg, tune = load_experiment(experiment(plan, "cpu"))
    paper, _ = load_experiment(PAPER_CONFIG)
    sizes = ("n_consumers", "n_firms")
    assert {k: v for k, v in cfg.economy.items() if k not in sizes} == \
        {k: v for k, v in paper.economy.items() if k not in sizes}  # the paper's open economy
    assert (cfg.economy["n_consumers"], cfg.economy["n_firms"]) == (plan.n_consumers, plan.n_firms)
    assert cfg.train.n_envs == plan.n_envs and cfg.train.device == "cpu"
    # the run is the paper's 150K episodes / compress, with the curriculum laid out in proportion
    assert cfg.train.total_episodes * plan.compress == pytest.approx(paper.train.total_episodes, rel=0.01)
    assert cfg.curriculum.compress == plan.compress
    assert cfg.curriculum.firm_start == paper.curriculum.firm_start
    assert cfg.train.snapshot_every * 2 == cfg.train.total_episodes  # snapshots: mid and end
    assert tune["seeds"] == [0, 1, 2] and tune["max_concurrent"] == 3
    if size == "paper":
        assert (cfg.economy["n_consumers"], cfg.economy["n_firms"], cfg.train.n_envs) == (100, 10, 128)


def test_size_and_device_come_from_flags_or_the_environment(monkeypatch):
    monkeypatch.setenv("RBC_PAPER_SIZE", "tiny")
    monkeypatch.setenv("RBC_PAPER_DEVICE", "cpu")
    args = build_parser().parse_args([])
    assert (args.size, args.device) == ("tiny", "cpu") and plan_from(args) == SIZES["tiny"]
    args = build_parser().parse_args(["--size", "paper", "--device", "cuda", "--seeds", "4,5", "--compress", "50",
                                      "--types", "firm", "--set", "train.seed=3"])
    plan = plan_from(args)
    assert args.device == "cuda" and plan.seeds == (4, 5) and plan.episodes == 3000 and plan.types == ("firm",)
    assert plan.n_consumers == 100 and plan.extra == ("train.seed=3",)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error a machine without CUDA gives")
def test_cuda_without_a_gpu_is_one_line_and_exit_2(tmp_path, capsys):
    assert paper_gpu.main(["--size", "tiny", "--device", "cuda", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert "needs a CUDA GPU" in err and len(err.splitlines()) == 1


def fake_metrics(seed: int) -> dict[str, list]:
    episodes = [50.0 * (i + 1) for i in range(20)]
    ramp = [i / 19 for i in range(20)]
    return {"episodes": episodes, "mean_price": [1000 + 1200 * r + seed for r in ramp],
            "mean_wage": [20 - 11 * r for r in ramp], "reward_firm": [-7e4 + 2.1e5 * r for r in ramp],
            "reward_consumer": [5 - 2 * r for r in ramp], "reward_government": [100 + r for r in ramp]}


def test_summary_and_figure_from_metrics(tmp_path):
    runs = {seed: fake_metrics(seed) for seed in (0, 1, 2)}
    write_rows([{"profile": f"t{s}@{e}", "seed": s, "episode": e, "epsilon_lcb": 1.5, "epsilon_type": "firm",
                 "verdict": "no significant gain"} for s in runs for e in (500, 1000)],
               tmp_path / "analysis" / "verdicts.parquet")
    figure = paper_gpu.plot_runs({f"seed {s}": c for s, c in runs.items()}, paper_gpu.QUANTITIES,
                                 tmp_path / "figures" / "paper_gpu.png",
                                 bands={k: v[1] for k, v in paper_gpu.PAPER.items() if v[1]})
    assert figure.stat().st_size > 10_000
    s = paper_gpu.summarise(runs, tmp_path / "analysis", SIZES["paper"], "cuda", {"train_s": 100.0}, figure)
    json.dumps(s)
    price = next(q for q in s["quantities"] if q["quantity"] == "mean_price")
    assert price["start"] == pytest.approx(1001) and price["paper_end"] == [2150.0, 2300.0]
    # end = the mean of the last tenth of the iterations (2 of 20)
    assert price["per_seed"]["2"]["end"] == pytest.approx(1002 + 1200 * (18 / 19 + 1) / 2)
    assert price["in_paper_range"] is True
    wage = next(q for q in s["quantities"] if q["quantity"] == "mean_wage")
    assert wage["in_paper_range"] is False and math.isclose(wage["start"], 20)
    assert [v["seed"] for v in s["verdicts"]] == [0, 0, 1, 1, 2, 2]
    text = paper_gpu.summary_markdown(s)
    assert "1000 -> 2150-2300" in text and "seed 1, episode 1000" in text and "| mean wage |" in text


@pytest.mark.slow
def test_the_whole_pipeline_at_tiny_size_on_cpu(tmp_path):
    out = tmp_path / "paper"
    assert paper_gpu.main(["--size", "tiny", "--device", "cpu", "--seeds", "0,1", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["plan"]["seeds"] == [0, 1] and summary["device"] == "cpu"
    assert {q["quantity"] for q in summary["quantities"]} >= {"mean_price", "mean_wage", "reward_firm"}
    assert len(summary["verdicts"]) == 4  # 2 seeds x (mid, end), firm only
    assert (out / "figures" / "paper_gpu.png").exists() and (out / "analysis" / "plots" / "epsilon.png").exists()
    assert yaml.safe_load((out / "experiment.yaml").read_text())["curriculum"]["compress"] == 7500.0
    assert "paper: start -> end" in (out / "summary.md").read_text()
