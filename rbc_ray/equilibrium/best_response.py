"""One best response: train type k against a profile whose other types are frozen, and measure it.

The deviating type starts from its profile policy (`warm`) or from a fresh network (`fresh`; a
near-deterministic trained policy cannot explore, so a warm start alone tends to report no gain).
Every `br.eval_every` episodes the current deviation is evaluated on the selection seed, paired with
the profile on the same draws; the best candidate (by selection gain), over the whole budget and over
its first half, is then evaluated once more on the separate confirmation seed, whose gain is the
one reported (choosing and reporting on the same episodes would overstate it).

At every evaluation `report` receives the progress state (`progress_state`): passed back as
`resume`, it continues the best response exactly where it was, as if it had not stopped.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..economy import AGENT_TYPES
from ..train import Trainer
from .config import BestResponseConfig
from .payoff import payoffs
from .profile import Profile, best_response_experiment
from .stats import GainEstimate, paired_gain

INITS = ("warm", "fresh")


@dataclass(frozen=True)
class Candidate:
    """The deviation at one evaluation: its episode, its selection gain and its network."""

    episode: int
    selection: GainEstimate
    policy: dict[str, torch.Tensor]


@dataclass
class BestResponseResult:
    """What one (profile, type, init, seed) best response found."""

    kind: str
    init: str
    seed: int
    curve: list[dict[str, float]] = field(default_factory=list)
    """one row per evaluation: episode, selection gain, se, lcb, the type's training reward, entropy"""
    best: Candidate | None = None
    """the best candidate over the whole budget (by selection gain)"""
    best_half: Candidate | None = None
    """the best candidate within the first half of the budget"""
    confirmed: GainEstimate | None = None
    """the best candidate's gain on the confirmation seed"""
    confirmed_half: GainEstimate | None = None
    """the half-budget candidate's gain on the confirmation seed"""
    policies: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """every type's network at the end (the frozen types' are the profile's, bit for bit)"""


def _state(net: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().clone() for k, v in net.state_dict().items()}


Report = Callable[[dict[str, float], Candidate, dict[str, Any]], None]


def best_response(profile: Profile, kind: str, init: str, seed: int, br: BestResponseConfig,
                  alpha: float = 0.05, report: Report | None = None, resume: dict[str, Any] | None = None
                  ) -> BestResponseResult:
    """Train `kind`'s best response to `profile` for br.episodes episodes and evaluate it.

    `report(row, candidate, state)` is called at every evaluation; `resume` (a `state` it was given)
    continues from that evaluation with every RNG, optimiser and candidate as they were."""
    if init not in INITS:
        raise ValueError(f"init={init!r}: one of {INITS}")
    cfg = best_response_experiment(profile, kind, br, seed)
    trainer = Trainer(cfg)
    for k in AGENT_TYPES:
        if not (k == kind and init == "fresh"):
            trainer.policies[k].load_state_dict(profile.policies[k])
    reference = copy.deepcopy(trainer.policies)              # the profile's networks, never trained
    reference[kind].load_state_dict(profile.policies[kind])
    econ = cfg.economy_config
    device = trainer.device

    def evaluate(seed_: int, nets) -> torch.Tensor:
        with torch.no_grad():
            return payoffs(econ, nets, seed_, br.eval_envs, br.eval_episodes, device)[kind].cpu()

    before = evaluate(br.selection_seed, reference)
    result = BestResponseResult(kind=kind, init=init, seed=seed)
    candidates: list[Candidate] = []
    metrics: dict[str, float] = {}

    def progress_state() -> dict[str, Any]:
        return {"kind": kind, "init": init, "seed": seed, "trainer": trainer.state_dict(),
                "candidates": list(candidates), "curve": list(result.curve), "metrics": dict(metrics)}

    def checkpoint() -> None:
        after = evaluate(br.selection_seed, {**reference, kind: trainer.policies[kind]})
        gain = paired_gain(before, after, alpha)
        cand = Candidate(trainer.episode, gain, _state(trainer.policies[kind]))
        candidates.append(cand)
        row = {"episode": float(trainer.episode), "selection_gain": gain.gain, "selection_se": gain.se,
               "selection_lcb": gain.lcb, "payoff_before": gain.before, "payoff_after": gain.after,
               "train_reward": metrics.get(f"reward_{kind}", float("nan")),
               "entropy": metrics.get(f"entropy_{kind}", float("nan"))}
        result.curve.append(row)
        if report is not None:
            report(row, cand, progress_state())

    if resume is None:
        checkpoint()
    else:
        if (resume["kind"], resume["init"], int(resume["seed"])) != (kind, init, seed):
            raise ValueError(f"resume state of a ({resume['kind']}, {resume['init']}, seed {resume['seed']}) best "
                             f"response given to ({kind}, {init}, seed {seed})")
        trainer.load_state_dict(resume["trainer"])
        candidates.extend(resume["candidates"])
        result.curve.extend(resume["curve"])
        metrics = dict(resume["metrics"])
    while trainer.episode < br.episodes:
        start = trainer.episode
        metrics = trainer.train_iteration()
        if trainer.episode // br.eval_every > start // br.eval_every or trainer.episode >= br.episodes:
            checkpoint()
    half = [c for c in candidates if c.episode <= br.episodes / 2]
    (result.best, result.confirmed), (result.best_half, result.confirmed_half) = (
        choose_and_confirm(candidates, reference, kind, evaluate, br.confirmation_seed, alpha),
        choose_and_confirm(half, reference, kind, evaluate, br.confirmation_seed, alpha))
    result.policies = {k: _state(net) for k, net in trainer.policies.items()}
    return result


def choose_and_confirm(candidates: list[Candidate], reference: dict[str, torch.nn.Module], kind: str,
                       evaluate: Callable[[int, dict], torch.Tensor], confirmation_seed: int,
                       alpha: float = 0.05) -> tuple[Candidate, GainEstimate]:
    """The candidate with the largest selection gain (the earliest of equals), and its gain paired
    with the profile on the confirmation seed: draws the choice never saw."""
    best = max(candidates, key=lambda c: (c.selection.gain, -c.episode))
    net = copy.deepcopy(reference[kind])
    net.load_state_dict(best.policy)
    before = evaluate(confirmation_seed, reference)
    after = evaluate(confirmation_seed, {**reference, kind: net})
    return best, paired_gain(before, after, alpha)


def trial_summary(result: BestResponseResult, profile: Profile, br: BestResponseConfig,
                  swept: str = "{}") -> dict[str, Any]:
    """The flat record of one best-response trial that `epsilon.epsilon_rows` aggregates."""
    est, half = result.confirmed, result.confirmed_half
    return {"profile": profile.name, "run": profile.run, "episode": profile.episode,
            "train_seed": profile.config.train.seed, "swept": swept, "type": result.kind, "init": result.init,
            "br_seed": result.seed, "selection_gain": result.best.selection.gain,
            "best_episode": result.best.episode, "u_before": est.before, "u_after": est.after,
            "gain": est.gain, "se": est.se, "lcb": est.lcb, "lcb_bootstrap": est.lcb_bootstrap,
            "alpha": est.alpha, "n_eval": est.n, "budget": br.episodes, "gain_half": half.gain,
            "lcb_half": half.lcb}
