"""Economy: the stateful handle on the batched model (config + params + state + its own RNG).

Training code, the RLlib adapter and the bench all drive the model through this class; the maths
lives in the pure functions of step.py and observe.py.
"""

from __future__ import annotations


import torch

from . import fused
from .actions import Actions, action_nvec, check_actions, index_dtype
from .config import EconomyConfig
from .observe import Observation, observe
from .state import Params, State, initial_state
from .step import StepResult, step

BACKENDS = ("auto", "torch", "fused")


class Economy:
    """n_envs independent replicas of one economy on one torch device.

    backend: 'torch' runs step.py (any device; `compile=True` wraps it in torch.compile); 'fused'
    runs the same maths as one C++ kernel on CPU (fused.py); 'auto' picks 'fused' on CPU when it
    builds and `compile` is off, else 'torch'. `self.backend` says which one runs.
    """

    def __init__(self, cfg: EconomyConfig, n_envs: int = 1, device: str | torch.device = "cpu",
                 seed: int | None = None, compile: bool = False, backend: str = "auto") -> None:
        if not isinstance(cfg, EconomyConfig):
            raise TypeError(f"cfg must be an EconomyConfig, got {type(cfg).__name__}")
        if not isinstance(n_envs, int) or isinstance(n_envs, bool) or n_envs <= 0:
            raise ValueError(f"n_envs={n_envs!r}: must be a positive int")
        self.cfg = cfg
        self.n_envs = n_envs
        self.params = Params.build(cfg, device)
        self.device = self.params.device
        self.generator = torch.Generator(device=self.device)
        self.backend = self._choose_backend(backend, compile)
        if self.backend == "fused":
            self._step = fused.fused_step
        else:  # torch.compile fuses the step's elementwise ops into a few kernels (CPU: C++, GPU: Triton)
            self._step = torch.compile(step, dynamic=False) if compile else step
        self.state: State = initial_state(self.params, n_envs)
        self.reset(seed)

    def _choose_backend(self, backend: str, compile: bool) -> str:
        if backend not in BACKENDS:
            raise ValueError(f"backend={backend!r}: must be one of {BACKENDS}")
        if backend == "fused":
            if self.device.type != "cpu":
                raise ValueError(f"backend='fused' runs on CPU only, not on device {str(self.device)!r}")
            if compile:
                raise ValueError("backend='fused' and compile=True exclude each other")
            if not fused.available():
                raise RuntimeError(f"backend='fused' is unavailable here: {fused.error()}")
            return "fused"
        if backend == "auto" and self.device.type == "cpu" and not compile and fused.available():
            return "fused"
        return "torch"

    def reset(self, seed: int | None = None, theta_factor: float = 1.0) -> Observation:
        """Every replica back to the initial state; reseeds the shock RNG when a seed is given."""
        if seed is not None:
            if not isinstance(seed, int) or isinstance(seed, bool):
                raise ValueError(f"seed={seed!r}: must be an int")
            self.generator.manual_seed(seed)
        self.state = initial_state(self.params, self.n_envs, theta_factor)
        return observe(self.params, self.state)

    def step(self, actions: Actions, validate: bool = True) -> StepResult:
        """Advance every replica one step; `validate=False` skips the range check (trusted samplers)."""
        if validate:
            check_actions(self.cfg, actions, self.n_envs)
        noise = None
        if self.cfg.tfp_sigma > 0.0:
            noise = torch.randn(self.n_envs, generator=self.generator, device=self.device,
                                dtype=self.params.dtype)
        self.state, result = self._step(self.params, self.state, actions, noise)
        return result

    def observe(self) -> Observation:
        return observe(self.params, self.state)

    def random_actions(self, generator: torch.Generator | None = None) -> Actions:
        """Uniformly random valid actions for every agent (a baseline policy and a test helper). On CPU
        in the compact `index_dtype` (uint8 for the paper's economies: the fused step reads an eighth
        of int64's bytes); elsewhere int64, which torch's gathers take without a cast."""
        gen = generator or self.generator
        nvec = action_nvec(self.cfg)
        e, n, f = self.n_envs, self.cfg.n_consumers, self.cfg.n_firms
        dtype = index_dtype(self.cfg) if self.device.type == "cpu" else torch.int64

        def draw(kind: str, shape: tuple[int, ...]) -> torch.Tensor:
            high = torch.tensor(nvec[kind], device=self.device, dtype=torch.float32)
            u = torch.rand(*shape, len(nvec[kind]), generator=gen, device=self.device)
            return (u * high).long().clamp(max=high.long() - 1).to(dtype)

        return Actions(consumer=draw("consumer", (e, n)), firm=draw("firm", (e, f)),
                       government=draw("government", (e,)))
