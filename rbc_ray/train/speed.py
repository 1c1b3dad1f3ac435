"""End-to-end training speed of the Trainer (rollout + PPO), as one JSON object on stdout.

How to run (paper scale, every type training, 2 PPO epochs):
    python -m rbc_ray.train.speed tune_configs/open_rbc.yaml --iterations 3 --episodes 2
Results to expect: agent-steps/s (median over iterations after one warm-up iteration) and the share
of wall time spent in the policy networks (forward, sampling, backward, optimiser).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys

import torch

from .config import load_experiment
from .trainer import Trainer


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", help="experiment YAML")
    p.add_argument("--iterations", type=int, default=3, help="timed iterations (after one warm-up)")
    p.add_argument("--episodes", type=int, default=2, help="episodes per iteration")
    p.add_argument("--consumers-only", action="store_true",
                   help="keep the YAML's curriculum (only consumers train early) instead of training all")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    args = p.parse_args(argv)
    overrides = [f"train.episodes_per_iteration={args.episodes}", "train.profile=true"]
    if not args.consumers_only:
        overrides += ["curriculum.firm_start=0", "curriculum.government_start=0"]
    cfg, _ = load_experiment(args.config, overrides + args.set)
    trainer = Trainer(cfg)
    print(f"warm-up ({cfg.train.n_envs} envs, {trainer.n_agents} agents) ...", file=sys.stderr)
    trainer.train_iteration()
    runs = []
    for i in range(args.iterations):
        m = trainer.train_iteration()
        runs.append(m)
        print(f"iteration {i}: {m['agent_steps_per_s']:.0f} agent-steps/s, policy share "
              f"{m['policy_time_share']:.2f}", file=sys.stderr)
    out = {
        "bench": "train",
        "agent_steps_per_s": statistics.median(m["agent_steps_per_s"] for m in runs),
        "env_steps_per_s": statistics.median(m["env_steps_per_s"] for m in runs),
        "policy_time_share": statistics.median(m["policy_time_share"] for m in runs),
        "env_time_share": statistics.median(
            m["time_env_s"] * m["policy_time_share"] / max(m["time_policy_s"], 1e-12) for m in runs),
        "n_envs": cfg.train.n_envs, "agents": trainer.n_agents,
        "hidden": {k: list(cfg.agent(k).hidden) for k in ("consumer", "firm", "government")},
        "epochs": cfg.agent("consumer").epochs, "device": cfg.train.device, "dtype": cfg.train.dtype,
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
        "cpu": platform.processor() or platform.machine(),
    }
    print(json.dumps(out))
    return out


if __name__ == "__main__":
    main()
