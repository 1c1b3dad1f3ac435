"""Structural reinforcement learning (Yang, Wang, Schaab & Moll) for heterogeneous-agent models.

    from rbc_ray.structural import solve
    res = solve("huggett", overrides={"sd_z": 0.0}, smoke=True)
    res.summary()   # the `rbc-ray srl --json` object

Models: 'huggett-pe', 'huggett', 'ks', 'hank' (docs/structural_rl.md). Modules: config (calibrations),
grids, distribution (Young lottery), market (clearing by interpolation), policy (monotone tables),
solver (training loop), huggett / krusell_smith / hank (the economies), egm (independent stationary
solver, the test oracle), diagnostics, report / plots (Parquet, PNG), cli, tune (Ray Tune sweeps).
"""

from .api import SRLResult, solve
from .config import (HANKCalibration, HuggettCalibration, HuggettPECalibration, KSCalibration, MODELS,
                     PRESETS, SMOKE, calibration)

__all__ = ["solve", "SRLResult", "calibration", "MODELS", "PRESETS", "SMOKE", "HuggettCalibration",
           "HuggettPECalibration", "KSCalibration", "HANKCalibration"]
