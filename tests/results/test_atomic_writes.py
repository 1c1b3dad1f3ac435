"""Atomic results: a writer SIGKILLed after writing the new version but before renaming it over the
old one leaves the previous complete file, which still reads; metrics keep their last complete
iteration. Each writer runs in its own process, with os.replace swapped for a SIGKILL of itself."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch

from rbc_ray.results import atomic_path, load

ROOT = Path(__file__).resolve().parents[2]

KILL_BEFORE_RENAME = """
import os, signal
os.replace = lambda src, dst: os.kill(os.getpid(), signal.SIGKILL)  # killed between write and rename
"""

WRITERS = {
    "metrics": """
from rbc_ray.results import MetricsWriter
w = MetricsWriter(OUT)
w.append({"iteration": 1, "reward": 1.0})
w.append({"iteration": 2, "reward": 2.0})
KILL
w.append({"iteration": 3, "reward": 3.0})
""",
    "rows": """
from rbc_ray.results import write_rows
write_rows([{"profile": "a", "gain": 1.0}], OUT / "epsilon.parquet")
KILL
write_rows([{"profile": "b", "gain": 2.0}], OUT / "epsilon.parquet")
""",
    "snapshot": """
from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import write_snapshot
trainer = Trainer(load_experiment(SMOKE, ["train.n_envs=2", "economy.n_consumers=2", "economy.n_firms=2"])[0])
write_snapshot(trainer, OUT)
KILL
with __import__("torch").no_grad():
    for p in trainer.policies["firm"].parameters():
        p.add_(1.0)
write_snapshot(trainer, OUT)
""",
    "plot": """
from rbc_ray.results import MetricsWriter, plot_training
w = MetricsWriter(OUT)
for i in (1, 2, 3):
    w.append({"iteration": i, "episodes": 10.0 * i, "reward_consumer": float(i), "mean_price": 1000.0 + i})
plot_training(OUT)
first = (OUT / "plots" / "training.png").read_bytes()
(OUT / "first.png").write_bytes(first)
w.append({"iteration": 4, "episodes": 40.0, "reward_consumer": -9.0, "mean_price": 5.0})
KILL
plot_training(OUT)
""",
    "srl summary": """
from rbc_ray.structural import solve
from rbc_ray.structural.report import write_outputs
result = solve("huggett-pe", {"max_epochs": 2, "warmup": 1, "n_paths": 4, "n_b": 30, "n_r": 6}, smoke=True,
               euler=False)
write_outputs(result, OUT, plots=False, irf=False)
result.epochs = 999
KILL
write_outputs(result, OUT, plots=False, irf=False)
""",
}


def run_writer(name: str, out: Path) -> subprocess.CompletedProcess:
    smoke = str(ROOT / "tune_configs" / "open_rbc_smoke.yaml")
    code = (f"from pathlib import Path\nOUT = Path({str(out)!r})\nSMOKE = {smoke!r}\n"
            + textwrap.dedent(WRITERS[name]).replace("KILL", KILL_BEFORE_RENAME.strip()))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)))


@pytest.fixture(scope="module")
def killed(tmp_path_factory):
    """Every writer, killed in its second write; {name: (out folder, process result)}."""
    outs = {name: tmp_path_factory.mktemp(name.replace(" ", "_")) for name in WRITERS}
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(outs, pool.map(lambda n: run_writer(n, outs[n]), outs)))
    for name, r in results.items():
        assert r.returncode == -signal.SIGKILL, f"{name}: {r.returncode} {r.stderr[-2000:]}"
    return {name: (outs[name], results[name]) for name in WRITERS}


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def test_metrics_keep_the_last_complete_iteration(killed):
    out, _ = killed["metrics"]
    assert load(out).column("iteration").to_pylist() == [1, 2]
    assert leftovers(out) and all(n.startswith(".metrics.") for n in leftovers(out))  # the unrenamed write


def test_a_table_of_rows_keeps_its_previous_version(killed):
    out, _ = killed["rows"]
    assert pq.read_table(out / "epsilon.parquet").to_pylist() == [{"profile": "a", "gain": 1.0}]


def test_a_snapshot_keeps_its_previous_version(killed):
    out, _ = killed["snapshot"]
    (path,) = out.glob("episode_*.pt")
    data = torch.load(path, weights_only=False)
    (tmp,) = out.glob(".episode_*")
    newer = torch.load(tmp, weights_only=False)  # the new version was written in full, then never renamed
    first = next(iter(data["policies"]["firm"].values()))
    assert torch.equal(next(iter(newer["policies"]["firm"].values())), first + 1.0)


def test_a_plot_keeps_its_previous_version(killed):
    out, _ = killed["plot"]
    assert (out / "plots" / "training.png").read_bytes() == (out / "first.png").read_bytes()
    assert any(n.endswith(".png") for n in leftovers(out / "plots"))


def test_an_srl_summary_keeps_its_previous_version(killed):
    out, _ = killed["srl summary"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["epochs"] == 2 and summary["model"] == "huggett-pe"
    (tmp,) = out.glob(".summary.*")
    assert json.loads(tmp.read_text())["epochs"] == 999


def test_atomic_path_removes_its_temporary_on_an_error_and_keeps_the_file(tmp_path):
    target = tmp_path / "x.json"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer failed")
    assert target.read_text() == "old" and leftovers(tmp_path) == []
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and tmp.suffix == ".json"
        tmp.write_text("new")
    assert target.read_text() == "new" and leftovers(tmp_path) == []
