"""Structural reinforcement learning (Yang, Wang, Schaab & Moll) for heterogeneous-agent models.

    from rbc_ray.structural import solve
    res = solve("huggett", overrides={"sd_z": 0.0}, smoke=True)
    res.summary()   # the `rbc-ray srl --json` object

Models: 'huggett-pe', 'huggett', 'ks', 'hank' (docs/structural-rl.md). Layout: config (calibrations),
core/ (grids, distribution: Young lottery, market: clearing by interpolation, policy: monotone tables,
household, maths), models/ (huggett, krusell_smith, hank), kernels/ (fused C++ rollouts), solver
(training loop), egm (independent stationary solver, the test oracle), diagnostics, report / plots
(Parquet, PNG), api (solve). Ray Tune sweeps of SRL runs live in rbc_ray.launch.srl.
"""

from .api import SRLResult, solve
from .config import (HANKCalibration, HuggettCalibration, HuggettPECalibration, KSCalibration, MODELS,
                     PRESETS, SMOKE, calibration)

__all__ = ["solve", "SRLResult", "calibration", "MODELS", "PRESETS", "SMOKE", "HuggettCalibration",
           "HuggettPECalibration", "KSCalibration", "HANKCalibration"]
