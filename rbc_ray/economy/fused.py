"""The fused CPU step: step.py's maths as one C++ pass per env (fused_cpu.cpp), built on first use.

On a 2-core CPU the torch step is dispatch- and memory-bound (about a hundred small ops); the fused
kernel does the same arithmetic in cache, envs in parallel on torch's threads. It needs a C++
compiler and ninja (torch.utils.cpp_extension); without them `available()` is False and the
economy uses the torch step. Same signature as `step.step`, CPU tensors only.

The kernel's inputs, outputs, config scalars and switches are named: the tables below are those
of fused_cpu.cpp (its INPUTS, OUTPUTS, SCALARS and FLAGS), checked equal when the kernel loads.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from ..native import NativeExtension, cpu_flags
from .actions import Actions
from .config import EconomyConfig
from .observe import Observation
from .state import Params, State
from .step import Accounts, Rewards, StepResult

# Input tensors, "record.field" of the step's arguments (tfp_noise: the noise itself).
INPUTS = (
    "state.price", "state.wage", "state.stock", "state.capital", "state.firm_budget", "state.consumer_budget",
    "state.income_tax", "state.corporate_tax", "state.t", "state.log_tfp", "state.theta_factor",
    "params.theta", "params.alpha", "params.demand_grid", "params.hours_grid", "params.price_grid",
    "params.wage_grid", "params.tax_grid", "params.digit_scale",
    "actions.consumer", "actions.firm", "actions.government", "tfp_noise",
)
# Output tensors, "record.field" of the step's results (done: StepResult.done).
OUTPUTS = (
    "state.price", "state.wage", "state.stock", "state.overdemanded", "state.capital", "state.firm_budget",
    "state.consumer_budget", "state.income_tax", "state.corporate_tax", "state.t", "state.log_tfp",
    "accounts.consumed", "accounts.consumer_spending", "accounts.labour_income", "accounts.hours",
    "accounts.units_sold", "accounts.exported", "accounts.produced", "accounts.labour", "accounts.firm_revenue",
    "accounts.wage_bill", "accounts.investment", "accounts.profit", "accounts.income_tax",
    "accounts.corporate_tax", "accounts.taxes", "accounts.lump_sum",
    "rewards.consumer", "rewards.firm", "rewards.government", "done",
    "obs.global_", "obs.consumer", "obs.firm",
)
# Config scalars, by their EconomyConfig field.
SCALARS = (
    "eta", "p_export", "q_export", "investment_fraction", "firm_welfare_weight", "budget_epsilon",
    "interest_rate", "depreciation", "productivity", "tfp_rho", "tfp_sigma", "n_consumers", "episode_length",
    "price_scale", "wage_scale", "theta_scale", "capital_scale",
)
# Config switches, each as a function of the config.
FLAGS: dict[str, Callable[[EconomyConfig], bool]] = {
    "open_economy": lambda cfg: cfg.open_economy,
    "export_strict": lambda cfg: cfg.export_strict,
    "investment_from_income": lambda cfg: cfg.investment_base == "income",
    "quadratic_labour": lambda cfg: cfg.labour_disutility == "quadratic",
    "total_welfare": lambda cfg: cfg.welfare == "total",
    "digit_encoding": lambda cfg: cfg.digit_encoding,
    "tfp_shock": lambda cfg: cfg.tfp_sigma > 0.0 or cfg.tfp_rho != 0.0,
}

_EXTENSION = NativeExtension(
    name="rbc_ray_fused_step", source=Path(__file__).with_name("fused_cpu.cpp"), switch="RBC_RAY_FUSED",
    what="fused CPU step", cflags=cpu_flags("-fopenmp-simd"))
_checked: Any = None  # the module whose names were checked


def load() -> Any:
    """The compiled extension (cached under torch's extensions dir), or None with `error()` set.

    Raises RuntimeError when the kernel's tables of names differ from this module's."""
    global _checked
    module = _EXTENSION.load()
    if module is not None and module is not _checked:
        for table, ours in (("INPUTS", INPUTS), ("OUTPUTS", OUTPUTS), ("SCALARS", SCALARS), ("FLAGS", tuple(FLAGS))):
            theirs = tuple(getattr(module, table))
            if theirs != ours:
                raise RuntimeError(f"fused_cpu.cpp's {table} {theirs} differ from fused.py's {ours}")
        _checked = module
    return module


def available() -> bool:
    """True when the fused kernel is built (building it on first call)."""
    return load() is not None


def error() -> str | None:
    """Why the kernel is unavailable (None when it loaded or was not tried)."""
    return _EXTENSION.error


_SCALARS: dict[int, tuple[EconomyConfig, list[float], list[int]]] = {}


def _scalars(cfg: EconomyConfig) -> tuple[list[float], list[int]]:
    """The config's SCALARS and FLAGS as the kernel takes them, cached by identity (hashing the
    frozen config costs more than a small economy's step)."""
    hit = _SCALARS.get(id(cfg))
    if hit is not None and hit[0] is cfg:
        return hit[1], hit[2]
    if len(_SCALARS) > 256:  # sweeps over many configs: keep the cache small
        _SCALARS.clear()
    entry = (cfg, [float(getattr(cfg, name)) for name in SCALARS], [int(flag(cfg)) for flag in FLAGS.values()])
    _SCALARS[id(cfg)] = entry
    return entry[1], entry[2]


_NO_NOISE: dict[torch.dtype, torch.Tensor] = {}


def _no_noise(dtype: torch.dtype) -> torch.Tensor:
    """The empty tensor that tells the kernel there is no TFP shock (made once per dtype: a fresh one
    cost 2 us, a tenth of the wrapper)."""
    empty = _NO_NOISE.get(dtype)
    if empty is None:
        empty = _NO_NOISE[dtype] = torch.empty(0, dtype=dtype)
    return empty


# Where each input comes from: (argument, field), field "" for the argument itself.
_INPUT_FIELDS = tuple((name.partition(".")[0], name.partition(".")[2]) for name in INPUTS)


def _output_fields(record: str) -> tuple[tuple[str, int], ...]:
    """(field, index in OUTPUTS) of the outputs that go into `record`."""
    return tuple((name.partition(".")[2], k) for k, name in enumerate(OUTPUTS) if name.partition(".")[0] == record)


_STATE_OUT, _ACCOUNTS_OUT = _output_fields("state"), _output_fields("accounts")
_REWARDS_OUT, _OBS_OUT = _output_fields("rewards"), _output_fields("obs")
_DONE_OUT = OUTPUTS.index("done")
# every field of the records is filled (theta_factor passes through unchanged)
for _record, _fields in ((State, _STATE_OUT + (("theta_factor", -1),)), (Accounts, _ACCOUNTS_OUT),
                         (Rewards, _REWARDS_OUT), (Observation, _OBS_OUT)):
    assert sorted(f for f, _ in _fields) == sorted(_record.__dataclass_fields__), _record

_new = object.__new__


def fused_step(params: Params, state: State, actions: Actions, tfp_noise: torch.Tensor | None = None
               ) -> tuple[State, StepResult]:
    """step.step computed by the fused kernel; raises RuntimeError when it is unavailable."""
    module = _checked or load()
    if module is None:
        raise RuntimeError(f"the fused CPU step is unavailable: {error()}")
    if params.device.type != "cpu":
        raise ValueError(f"the fused step runs on CPU only, the economy is on {params.device}")
    scalars, flags = _scalars(params.cfg)
    noise = _no_noise(params.dtype) if tfp_noise is None else tfp_noise.to(params.dtype).contiguous()
    sources = {"state": state, "params": params, "actions": actions, "tfp_noise": noise}
    inputs = [getattr(sources[arg], field) if field else sources[arg] for arg, field in _INPUT_FIELDS]
    out = module.step(inputs, scalars, flags)
    # The records are frozen dataclasses filled without running their __init__: the kernel's outputs
    # need no checks, and a frozen __init__ costs about a microsecond per field (a fifth of a small
    # step); the assertion above checks that every field is filled.
    next_state = _new(State)
    next_state.__dict__.update({field: out[k] for field, k in _STATE_OUT}, theta_factor=state.theta_factor)
    accounts = _new(Accounts)
    accounts.__dict__.update({field: out[k] for field, k in _ACCOUNTS_OUT})
    obs = _new(Observation)
    obs.__dict__.update({field: out[k] for field, k in _OBS_OUT})
    rewards = _new(Rewards)
    rewards.__dict__.update({field: out[k] for field, k in _REWARDS_OUT})
    result = _new(StepResult)
    result.__dict__.update(obs=obs, rewards=rewards, done=out[_DONE_OUT], accounts=accounts)
    return next_state, result
