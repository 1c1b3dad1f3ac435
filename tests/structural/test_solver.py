"""The SRL loop stops on NaN or inf before the step, naming the epoch and the parameter tables."""

import math

import pytest
import torch

from rbc_ray.structural.api import build
from rbc_ray.structural.config import calibration
from rbc_ray.structural.solver import SRLDivergedError, train


def _model_breaking_at(epoch: int, how: str):
    """Smoke Huggett whose rollout at `epoch` returns a NaN objective ("objective") or a finite
    objective whose gradient of share_first alone is inf ("gradient"); also returns the parameters
    as they stood when that rollout began."""
    m = build("huggett", calibration("huggett", {"n_b": 30, "n_r": 6, "n_z": 3, "n_paths": 4, "e_trunc": 0.3},
                                     smoke=True))
    real, calls, snapshot = m.rollout, [], []

    def rollout(state, shocks, record=False):
        objective, final, rec = real(state, shocks, record)
        calls.append(1)
        if len(calls) == epoch:
            snapshot.extend(p.detach().clone() for p in m.params)
            if how == "objective":
                objective = objective * float("nan")
            else:
                m.first.register_hook(lambda g: g * float("inf"))
        return objective, final, rec

    m.rollout = rollout
    return m, snapshot


@pytest.mark.parametrize("how", ["objective", "gradient"])
def test_non_finite_training_stops_before_the_step_and_says_where(how):
    m, snapshot = _model_breaking_at(3, how)
    with pytest.raises(SRLDivergedError) as info:
        train(m)
    msg = str(info.value)
    assert "epoch 3" in msg and "share_first" in msg and "not updated" in msg
    if how == "objective":
        assert "objective is nan" in msg and "share_incr" in msg
    else:
        assert "objective is finite" in msg and "share_incr" not in msg
    for p, before in zip(m.params, snapshot):  # the bad gradient never reached Adam
        assert torch.equal(p.detach(), before)
        assert all(math.isfinite(float(v)) for v in p.detach().flatten()[:10])
