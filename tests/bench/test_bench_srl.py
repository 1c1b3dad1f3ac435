"""`rbc-ray bench srl`: the JSON names the hardware and sets the paper's A100 figures beside ours."""

import json

from rbc_ray.bench.srl import bench_srl


def test_bench_quick_reports_hardware_and_paper_times():
    out = bench_srl(True, models=("huggett-pe",),
                    overrides={"n_b": 30, "n_r": 6, "n_paths": 4, "max_epochs": 3, "warmup": 1, "e_trunc": 0.2})
    row = out["models"]["huggett-pe"]
    assert out["hardware"]["torch"] and out["device"] == "cpu"
    assert row["paper_a100_seconds"] == 39.5 and row["epochs"] == 3 and row["seconds"] > 0
    json.dumps(out)
