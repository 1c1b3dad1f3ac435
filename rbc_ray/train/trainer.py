"""Trainer: the whole multi-agent PPO loop of one experiment, on one device, with no Ray in it.

How to run (smoke size, seconds):
    from rbc_ray.train import Trainer, load_experiment
    cfg, _ = load_experiment("tune_configs/open_rbc_smoke.yaml")
    trainer = Trainer(cfg)
    for _ in range(3):
        print(trainer.train_iteration())

One iteration = `episodes_per_iteration` episodes; one episode = reset all envs, roll out T steps with
every type's policy, then one PPO update per type that trains at this episode (see curriculum.py).
Metrics (METRIC_KEYS, one flat dict of floats per iteration) are documented next to the list.
"""

from __future__ import annotations

import math
import time
from typing import Any, Mapping

import torch

from ..economy import AGENT_TYPES, Economy, action_nvec, obs_sizes
from ..policies import ActorCritic
from .config import ExperimentConfig
from .chunks import agent_steps_per_piece, pieces
from .curriculum import Curriculum
from .ppo import GradSync, ppo_update
from .rollout import ECONOMY_STATS, RolloutStorage, Timer, collect_episode


def _per_type(prefix: str) -> list[str]:
    return [f"{prefix}_{kind}" for kind in AGENT_TYPES]


METRIC_KEYS: tuple[str, ...] = (
    "iteration",            # iterations done (1 after the first call)
    "episodes",             # episodes done in total (the curriculum position)
    "env_steps",            # env-steps in total (episodes x n_envs x T)
    "agent_steps",          # agent-steps in total (env_steps x agents per economy)
    "time_s",               # cumulative wall time spent in train_iteration
    "agent_steps_per_s",    # this iteration
    "env_steps_per_s",      # this iteration
    *_per_type("reward"),   # mean per-agent per-step unscaled reward over the iteration's episodes
    *_per_type("entropy"),  # mean joint entropy per agent (PPO's last epoch when training, else rollout)
    *_per_type("policy_loss"),  # clipped surrogate, last epoch, mean over episodes (NaN if not trained)
    *_per_type("value_loss"),   # smooth-L1 value loss, same (NaN if not trained)
    *_per_type("entropy_coef"),  # scheduled entropy coefficient at the iteration's last episode
    *_per_type("training"),      # 1.0 if the type updated in this iteration's last episode, else 0.0
    *ECONOMY_STATS,          # price/wage/stock/exports per firm-step, hours/consumption per consumer-step,
                             # tax rates in effect, welfare = government reward per step,
                             # firm_profit = profit before corporate tax per firm-step
    "price_low", "price_high", "wage_low", "wage_high", "tax_cap", "theta_factor",  # curriculum
)
PROFILE_KEYS = ("time_policy_s", "time_env_s", "policy_time_share")
"""Extra keys when train.profile is on: policy forward/sample/backward/step time, economy time, and
policy time / iteration wall time."""


class TrainingDivergedError(RuntimeError):
    """NaN or inf in a reward, a loss or a parameter; the message names type, quantity and position."""


def policy_shapes(cfg: ExperimentConfig) -> dict[str, dict[str, tuple[int, ...]]]:
    """{type: {parameter: shape}} of the networks `cfg` builds (made on the CPU; the global RNG is
    left as it was)."""
    econ = cfg.economy_config
    sizes, nvec = obs_sizes(econ), action_nvec(econ)
    with torch.random.fork_rng(devices=[]):
        return {kind: {k: tuple(v.shape) for k, v in ActorCritic(
            sizes["global"], sizes[kind] - sizes["global"], nvec[kind], cfg.agent(kind).hidden).state_dict().items()}
            for kind in AGENT_TYPES}


def check_fits(policies: Mapping[str, Mapping[str, torch.Tensor]], shapes: Mapping[str, Mapping[str, tuple]],
               saved_config: Any, cfg: ExperimentConfig, what: str) -> None:
    """A one-line ValueError unless every type's saved network has the shapes this run's networks
    have (a checkpoint of another economy: other firm counts, grids or hidden widths; networks are
    shared by the agents of a type, so the number of consumers does not change them)."""
    for kind in AGENT_TYPES:
        if not isinstance(policies, Mapping) or kind not in policies:
            raise ValueError(f"{what} holds no {kind} network")
        got = {k: tuple(v.shape) for k, v in policies[kind].items()}
        if got == dict(shapes[kind]):
            continue
        diffs = _config_differences(saved_config, cfg)
        if not diffs:
            bad = next((k for k in shapes[kind] if got.get(k) != tuple(shapes[kind][k])), next(iter(got), "?"))
            diffs = [f"the {kind} network's {bad} is {list(got.get(bad, ()))} there, "
                     f"{list(shapes[kind].get(bad, ()))} here"]
        more = f" (and {len(diffs) - 3} more)" if len(diffs) > 3 else ""
        raise ValueError(f"{what} was made for another economy or network: {'; '.join(diffs[:3])}{more}")


def _config_differences(saved: Any, cfg: ExperimentConfig) -> list[str]:
    """'key is A there, B here' for the economy keys and network widths that differ (counts first)."""
    if not isinstance(saved, Mapping) or not isinstance(saved.get("economy"), Mapping):
        return []
    here = cfg.to_dict()
    pairs = [(f"economy.{k}", saved["economy"].get(k), here["economy"].get(k))
             for k in sorted(here["economy"], key=lambda k: (k not in ("n_consumers", "n_firms"), k))]
    pairs += [(f"policies.{kind}.hidden", ((saved.get("policies") or {}).get(kind) or {}).get("hidden"),
               here["policies"][kind]["hidden"]) for kind in AGENT_TYPES]

    def short(v: Any) -> str:
        text = repr(list(v) if isinstance(v, tuple) else v)
        return text if len(text) <= 40 else text[:37] + "..."

    return [f"{key} is {short(a)} there, {short(b)} here" for key, a, b in pairs
            if a is not None and _as_list(a) != _as_list(b)]


def _as_list(v: Any) -> Any:
    return list(v) if isinstance(v, (list, tuple)) else v


def check_finite_networks(policies: Mapping[str, Mapping[str, torch.Tensor]], what: str) -> None:
    """TrainingDivergedError naming the type and parameter if any network holds NaN or inf (so a
    diverged network is never written over the last good snapshot or checkpoint)."""
    for kind, state in policies.items():
        for name, value in state.items():
            if torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
                raise TrainingDivergedError(f"{kind} parameter {name} is not finite: {what} not written "
                                            "(the last good one is kept)")


class Trainer:
    """Multi-agent PPO with one shared actor-critic per agent type, curricula as data."""

    def __init__(self, cfg: ExperimentConfig | Mapping[str, Any], grad_sync: GradSync | None = None,
                 device: str | torch.device | None = None) -> None:
        """`device`: run here instead of on train.device (a data-parallel worker's own GPU); the
        config, and so every checkpoint, keeps its train.device."""
        if not isinstance(cfg, ExperimentConfig):
            cfg = ExperimentConfig.from_dict(cfg)
        self.cfg = cfg
        t = cfg.train
        self.device = torch.device(device if device is not None else t.device)
        if self.device.type == "cpu":
            torch.set_num_threads(t.torch_threads)
        self.dtype = torch.float64 if t.dtype == "float64" else torch.float32
        econ = cfg.economy_config
        self.economy = Economy(econ, t.n_envs, self.device, seed=t.seed)
        self.curriculum = Curriculum(cfg.curriculum, t.frozen)
        sizes, nvec = obs_sizes(econ), action_nvec(econ)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(t.seed)
            self.policies = {
                kind: ActorCritic(sizes["global"], sizes[kind] - sizes["global"], nvec[kind],
                                  cfg.agent(kind).hidden).to(self.device, self.dtype)
                for kind in AGENT_TYPES}
        self.optimizers = {kind: torch.optim.Adam(self.policies[kind].parameters(), lr=cfg.agent(kind).lr)
                           for kind in AGENT_TYPES}
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(t.seed + 1)
        self.storage = RolloutStorage.allocate(self.economy, self.dtype)
        self.grad_sync = grad_sync
        self.episode = 0
        self.iteration = 0
        self.time_s = 0.0
        self.n_agents = econ.n_agents
        self._eval: tuple[Economy, RolloutStorage] | None = None
        self._fused_masks: dict = {}  # (kind, ids of the curriculum's mask tensors) -> (masks, fused)

    # ------------------------------------------------------------------ training
    def _masks(self, episode: int) -> dict[str, torch.Tensor | None]:
        masks = self.curriculum.masks(self.economy.params, episode)
        out = {}
        for kind in AGENT_TYPES:  # fuse once per distinct mask (the curriculum reuses tensors)
            key = (kind, None if masks[kind] is None else tuple(id(m) for m in masks[kind]))
            if key not in self._fused_masks:
                self._fused_masks[key] = (masks[kind], self.policies[kind].mask(masks[kind]))
            out[kind] = self._fused_masks[key][1]
        return out

    def train_iteration(self) -> dict[str, float]:
        """Run episodes_per_iteration episodes (rollout + PPO updates) and return METRIC_KEYS."""
        start = time.perf_counter()
        t = self.cfg.train
        dev = self.device
        timer = Timer(t.profile, dev)
        n_types = len(AGENT_TYPES)
        reward_sum = torch.zeros(n_types, device=dev, dtype=torch.float64)
        entropy_sum = torch.zeros(n_types, device=dev, dtype=torch.float64)
        loss_sum = torch.zeros(n_types, 2, device=dev, dtype=torch.float64)
        stats_sum = torch.zeros(len(ECONOMY_STATS), device=dev, dtype=torch.float64)
        n_updates = [0] * n_types
        n_episodes = t.episodes_per_iteration
        for _ in range(n_episodes):
            ep = self.episode
            masks = self._masks(ep)
            training = {k: self.curriculum.training(k, ep) for k in AGENT_TYPES}
            reuse = tuple(k for k in AGENT_TYPES if training[k] and t.reuse_rollout_forward
                          and self.cfg.agent(k).minibatches == 1 and self._one_piece(k))
            kept = collect_episode(self.economy, self.policies, masks, self.storage,
                                   self.curriculum.theta_factor(ep), self.generator, timer,
                                   with_entropy={k: not training[k] for k in AGENT_TYPES}, keep_graph=reuse,
                                   chunk_mb=t.chunk_mb)
            checks: list[torch.Tensor] = []       # [reward means..., then (policy, value) loss pairs]
            losses: list[torch.Tensor] = []
            for i, kind in enumerate(AGENT_TYPES):
                buf = self.storage.types[kind]
                reward_mean = buf.reward.mean()
                reward_sum[i] += reward_mean
                checks.append(reward_mean)
                if training[kind]:
                    timer.start()
                    stats = ppo_update(
                        kind, self.policies[kind], self.optimizers[kind], self.cfg.agent(kind),
                        self.storage.global_, buf.own, buf.actions, buf.logp, buf.value, buf.reward,
                        masks[kind], self.curriculum.entropy_coef(kind, ep), self.generator,
                        self.grad_sync, rollout_forward=kept.get(kind), chunk_mb=t.chunk_mb,
                        compile=t.compile)
                    timer.stop("policy")
                    loss_sum[i] += stats[:2]
                    entropy_sum[i] += stats[2]
                    n_updates[i] += 1
                    losses += [stats[0], stats[1]]
                else:
                    entropy_sum[i] += buf.entropy.mean()
            stats_sum += self.storage.stats.mean(0)
            self._check_finite(checks + losses, training)
            self.episode += 1
        self.iteration += 1
        return self._metrics(start, timer, n_episodes, reward_sum, entropy_sum, loss_sum, stats_sum,
                             n_updates)

    def _one_piece(self, kind: str) -> bool:
        """Whether a whole episode's update of `kind` fits one piece of train.chunk_mb (only then is
        the rollout's autograd graph kept for reuse: it is as large as the update)."""
        buf = self.storage.types[kind]
        rows, n = buf.own.shape[0] * buf.own.shape[1], buf.own.shape[2]
        return len(pieces(rows, n, agent_steps_per_piece(self.policies[kind], self.cfg.train.chunk_mb))) == 1

    def _check_finite(self, checks: list[torch.Tensor], training: dict[str, bool]) -> None:
        """One host sync per episode; on failure, name the first bad type and quantity."""
        params = [p for kind in AGENT_TYPES if training[kind] for p in self.policies[kind].parameters()]
        flags = [torch.isfinite(torch.stack([c.to(torch.float64) for c in checks])).all()]
        if params:
            flags.append(torch.stack([torch.isfinite(p).all() for p in params]).all())
        if bool(torch.stack(flags).all()):
            return
        where = f"at iteration {self.iteration} (0-based, in progress), episode {self.episode}"
        for kind in AGENT_TYPES:
            r = self.storage.types[kind].reward
            if not bool(torch.isfinite(r).all()):
                raise TrainingDivergedError(
                    f"{kind} reward is not finite ({int((~torch.isfinite(r)).sum())} non-finite entries) "
                    f"{where}; check the economy config (rbc_ray/economy)")
        k = len(AGENT_TYPES)
        losses = iter(checks[k:])
        for kind in AGENT_TYPES:
            if not training[kind]:
                continue
            for name in ("policy_loss", "value_loss"):
                value = float(next(losses))
                if not math.isfinite(value):
                    raise TrainingDivergedError(
                        f"{kind} {name} is {value} {where}; lower policies.{kind}.lr or check "
                        f"policies.{kind}.reward_scale")
            for name, p in self.policies[kind].named_parameters():
                if not bool(torch.isfinite(p).all()):
                    raise TrainingDivergedError(f"{kind} parameter {name} is not finite {where}")
        raise TrainingDivergedError(f"non-finite value {where}")  # pragma: no cover

    def _metrics(self, start: float, timer: Timer, n_episodes: int, reward_sum, entropy_sum,
                 loss_sum, stats_sum, n_updates: list[int]) -> dict[str, float]:
        host = torch.cat([reward_sum, entropy_sum, loss_sum.flatten(), stats_sum]).tolist()  # one sync
        wall = time.perf_counter() - start
        self.time_s += wall
        k = len(AGENT_TYPES)
        rewards, entropies, losses = host[:k], host[k:2 * k], host[2 * k:4 * k]
        stats = host[4 * k:]
        env_steps_iter = n_episodes * self.cfg.train.n_envs * self.economy.cfg.episode_length
        last = self.episode - 1
        out: dict[str, float] = {
            "iteration": float(self.iteration), "episodes": float(self.episode),
            "env_steps": float(self.episode * self.cfg.train.n_envs * self.economy.cfg.episode_length),
            "agent_steps": float(self.episode * self.cfg.train.n_envs * self.economy.cfg.episode_length
                                 * self.n_agents),
            "time_s": self.time_s,
            "agent_steps_per_s": env_steps_iter * self.n_agents / wall,
            "env_steps_per_s": env_steps_iter / wall,
        }
        for i, kind in enumerate(AGENT_TYPES):
            out[f"reward_{kind}"] = rewards[i] / n_episodes
        for i, kind in enumerate(AGENT_TYPES):
            out[f"entropy_{kind}"] = entropies[i] / n_episodes
        for j, name in enumerate(("policy_loss", "value_loss")):
            for i, kind in enumerate(AGENT_TYPES):
                out[f"{name}_{kind}"] = losses[2 * i + j] / n_updates[i] if n_updates[i] else math.nan
        for kind in AGENT_TYPES:
            out[f"entropy_coef_{kind}"] = self.curriculum.entropy_coef(kind, last)
        for kind in AGENT_TYPES:
            out[f"training_{kind}"] = float(self.curriculum.training(kind, last))
        for name, value in zip(ECONOMY_STATS, stats):
            out[name] = value / n_episodes
        out.update(self.curriculum.values(last))
        if self.cfg.train.profile:
            out["time_policy_s"] = timer.policy_s
            out["time_env_s"] = timer.env_s
            out["policy_time_share"] = timer.policy_s / wall
        return out

    # ------------------------------------------------------------------ evaluation
    def evaluate(self, n_episodes: int = 1, policy: str = "current",
                 types: tuple[str, ...] = AGENT_TYPES) -> dict[str, float]:
        """Mean per-agent per-step reward of each type over n_episodes played without learning.

        policy='random' makes `types` act uniformly at random (under the current masks), the other
        types keep their current policies. Every call replays the same episodes (train.eval_seed) and
        leaves the training RNG untouched, so policies are compared on the same seeds."""
        if policy not in ("current", "random"):
            raise ValueError(f"policy={policy!r}: 'current' or 'random'")
        t = self.cfg.train
        if self._eval is None:
            econ = Economy(self.economy.cfg, t.n_envs, self.device, seed=t.eval_seed)
            self._eval = (econ, RolloutStorage.allocate(econ, self.dtype, per_agent_steps=1))
        econ, storage = self._eval
        econ.generator.manual_seed(t.eval_seed)
        gen = torch.Generator(device=self.device)
        gen.manual_seed(t.eval_seed)
        ep = self.episode
        totals = torch.zeros(len(AGENT_TYPES), dtype=torch.float64, device=self.device)
        for _ in range(n_episodes):
            collect_episode(econ, self.policies, self._masks(ep), storage, self.curriculum.theta_factor(ep),
                            gen, Timer(False, self.device), {k: False for k in AGENT_TYPES},
                            random_types=tuple(types) if policy == "random" else (), chunk_mb=t.chunk_mb)
            totals += torch.stack([storage.types[k].reward.mean() for k in AGENT_TYPES]).to(torch.float64)
        values = (totals / n_episodes).tolist()
        return {f"reward_{k}": v for k, v in zip(AGENT_TYPES, values)}

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict[str, Any]:
        """Networks, optimisers, curriculum position, every RNG state and the exact config."""
        rng = {"sampler": self.generator.get_state(), "economy": self.economy.generator.get_state(),
               "torch_cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            rng["torch_cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "config": self.cfg.to_dict(), "episode": self.episode, "iteration": self.iteration,
            "time_s": self.time_s,
            "policies": {k: net.state_dict() for k, net in self.policies.items()},
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "rng": rng,
        }

    def load_state_dict(self, sd: Mapping[str, Any]) -> None:
        """Restore a state_dict. Learning rates stay those of this trainer's optimisers (its config's,
        or what a PBT reset_config set on them before the restore); everything else, including every
        RNG, comes from the checkpoint. Networks of another shape (another economy's firm count or
        grids, other hidden widths) are a one-line ValueError saying which keys differ."""
        check_fits(sd.get("policies"), {k: {n: tuple(v.shape) for n, v in net.state_dict().items()}
                                        for k, net in self.policies.items()}, sd.get("config"), self.cfg, "checkpoint")
        for kind in AGENT_TYPES:
            lrs = [group["lr"] for group in self.optimizers[kind].param_groups]
            self.policies[kind].load_state_dict(sd["policies"][kind])
            self.optimizers[kind].load_state_dict(sd["optimizers"][kind])
            for group, lr in zip(self.optimizers[kind].param_groups, lrs):
                group["lr"] = lr
        self.episode = int(sd["episode"])
        self.iteration = int(sd["iteration"])
        self.time_s = float(sd.get("time_s", 0.0))
        rng = sd["rng"]
        self.generator.set_state(rng["sampler"])
        self.economy.generator.set_state(rng["economy"])
        torch.set_rng_state(rng["torch_cpu"])
        if "torch_cuda" in rng and self.device.type == "cuda":
            torch.cuda.set_rng_state(rng["torch_cuda"], self.device)

    @classmethod
    def from_state_dict(cls, sd: Mapping[str, Any], grad_sync: GradSync | None = None) -> "Trainer":
        """A fresh trainer built from the checkpoint's own config, then restored."""
        trainer = cls(ExperimentConfig.from_dict(sd["config"]), grad_sync=grad_sync)
        trainer.load_state_dict(sd)
        return trainer
