"""`rbc-ray srl` (--json keys, bad input, output files) and the structural-RL notebook."""

import json
import os
import subprocess
import sys

import pytest
import yaml

from rbc_ray.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TINY = ["--set", "n_b=30", "--set", "n_r=6", "--set", "n_paths=4", "--set", "max_epochs=3",
        "--set", "warmup=1", "--set", "e_trunc=0.2"]


def test_srl_json_has_the_contract_keys(capsys, tmp_path):
    rc = main(["srl", "huggett", "--smoke", "--json", "--quiet", "--out", str(tmp_path), *TINY, "--set", "n_z=3"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in ("model", "converged", "epochs", "seconds", "device", "mean_r", "clearing_residual_mean",
              "clearing_residual_max", "euler_error_mean_log10", "euler_error_max_log10"):
        assert k in out, k
    assert out["model"] == "huggett" and out["epochs"] == 3 and out["device"] == "cpu"
    for f in ("summary.json", "calibration.yaml", "convergence.parquet", "paths.parquet", "moments.parquet",
              "irf.parquet", "convergence.png", "price_path.png", "distribution.png", "policy.png", "irf.png"):
        assert (tmp_path / f).exists(), f
    import pyarrow.parquet as pq
    mom = pq.read_table(tmp_path / "moments.parquet").to_pydict()
    assert "wealth_gini" in mom["series"] and "mass_at_borrowing_limit" in mom["series"]
    cal = yaml.safe_load((tmp_path / "calibration.yaml").read_text())
    assert cal["model"] == "huggett" and cal["n_b"] == 30


@pytest.mark.parametrize("model,extra", [("ks", ["mean_K"]), ("hank", ["mean_w", "mean_inflation"])])
def test_model_specific_json_keys(capsys, model, extra):
    sets = TINY + (["--set", "n_w=4", "--set", "n_z=3"] + (["--set", "n_m=2"] if model == "hank" else []))
    assert main(["srl", model, "--smoke", "--json", "--quiet", *sets]) == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for k in extra:
        assert k in out and out[k] is not None


@pytest.mark.parametrize("sets,needle", [(["betta=0.9"], "betta"), (["beta=1.5"], "beta"),
                                         (["n_b=-3"], "n_b"), (["n_b=abc"], "n_b"), (["beta"], "key=value")])
def test_bad_input_exits_2_naming_the_key(capsys, sets, needle):
    args = ["srl", "huggett"]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 2
    assert needle in capsys.readouterr().err


def test_notebook_executes():
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(os.path.join(ROOT, "notebooks", "structural_rl.ipynb"), as_version=4)
    env_before = os.environ.get("SRL_NOTEBOOK_EPOCHS")
    os.environ["SRL_NOTEBOOK_EPOCHS"] = "15"
    try:
        nbclient.NotebookClient(nb, timeout=300, kernel_name="python3",
                                resources={"metadata": {"path": ROOT}}).execute()
    finally:
        if env_before is None:
            os.environ.pop("SRL_NOTEBOOK_EPOCHS", None)
        else:
            os.environ["SRL_NOTEBOOK_EPOCHS"] = env_before
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not any(o.get("output_type") == "error" for o in outputs)
    assert sum("image/png" in o.get("data", {}) for o in outputs) >= 4
