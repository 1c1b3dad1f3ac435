"""`--address`: a sweep, then an analysis of its profiles, run on a real two-node Ray cluster
(cluster/local_cluster.sh, loopback only)."""

import os
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
SMOKE = str(ROOT / "tune_configs" / "open_rbc_smoke.yaml")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.2", 0))
        return s.getsockname()[1]


def test_sweep_on_two_node_cluster(tmp_path):
    cluster_dir = tempfile.mkdtemp(prefix="rbcc", dir="/tmp")  # Ray wants short socket paths
    port = _free_port()
    env = dict(os.environ, RBC_CLUSTER_DIR=cluster_dir, RBC_CLUSTER_PORT=str(port),
               RAY=str(Path(sys.executable).parent / "ray"), RAY_AUTH_MODE="token", PYTHONUNBUFFERED="1")
    script = str(ROOT / "cluster" / "local_cluster.sh")
    started = subprocess.run([script, "start"], env=env, capture_output=True, text=True, timeout=180)
    try:
        assert started.returncode == 0, started.stdout + started.stderr
        assert started.stdout.strip().endswith(f"127.0.0.2:{port}")
        out = tmp_path / "sweep"
        r = subprocess.run([sys.executable, "-m", "rbc_ray.cli", "sweep", SMOKE, "--address",
                            f"127.0.0.2:{port}", "--out", str(out), "--set", "train.total_episodes=20"],
                           env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        summary = pq.read_table(out / "summary.parquet").to_pylist()
        assert len(summary) == 2  # tune.seeds: [0, 1]
        assert all(row["error"] == "" for row in summary)
        assert {row["node_ip"] for row in summary} == {"127.0.0.2", "127.0.0.3"}  # one trial per node
        assert sorted(row["set.train.seed"] for row in summary) == ["0", "1"]
        for row in summary:
            assert (out / "trials" / row["trial_id"] / "metrics.parquet").exists()
        # the analyser on the same cluster: one best-response trial per sweep trial's end profile
        analysis = tmp_path / "analysis"
        r = subprocess.run([sys.executable, "-m", "rbc_ray.cli", "analyse", str(out), "--address",
                            f"127.0.0.2:{port}", "--out", str(analysis), "--types", "firm", "--init", "fresh",
                            "--br-episodes", "10", "--eval-episodes", "1", "--set", "br.eval_every=10",
                            "--set", "br.eval_envs=4"],
                           env=env, capture_output=True, text=True, timeout=600, cwd=ROOT)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        rows = pq.read_table(analysis / "epsilon.parquet").to_pylist()
        assert len(rows) == 2 and {row["seed"] for row in rows} == {0, 1}
        curves = pq.read_table(analysis / "curves.parquet").to_pylist()
        assert {row["node_ip"] for row in curves} == {"127.0.0.2", "127.0.0.3"}  # trials ran on both nodes
    finally:
        subprocess.run([script, "stop"], env=env, capture_output=True, timeout=120)
        shutil.rmtree(cluster_dir, ignore_errors=True)
