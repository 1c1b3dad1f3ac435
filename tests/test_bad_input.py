"""Bad input through the real CLI (`python -m rbc_ray.cli`, one process per case): exit code 2, one
line on stderr naming the file, key or value, no traceback, and nothing started (no Ray: every case
fails before it). `rbc-ray --debug` shows the traceback instead."""

import os
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch
import yaml

from rbc_ray.train import Trainer, load_experiment
from rbc_ray.train.snapshots import snapshot, write_snapshot

ROOT = Path(__file__).resolve().parents[1]
SMOKE = str(ROOT / "tune_configs" / "open_rbc_smoke.yaml")
TINY = ["train.n_envs=4", "train.episodes_per_iteration=2", "train.torch_threads=1", "economy.n_consumers=3",
        "economy.n_firms=3"]  # networks of another shape than the smoke economy's (2 firms)

# (case, argv with {placeholders} for the files `files` makes, texts stderr must hold)
CASES = [
    ("malformed YAML", ["train", "{bad_yaml}"], ["bad.yaml", "not valid YAML at line 3, column 1"]),
    ("empty file", ["train", "{empty}"], ["empty.yaml", "is empty"]),
    ("top-level list", ["train", "{list}"], ["list.yaml", "mapping, not a list"]),
    ("binary file", ["train", "{binary}"], ["snap.bin", "not a text (UTF-8) YAML file"]),
    ("folder as config", ["train", "{folder}"], ["is a folder"]),
    ("missing config", ["train", "{folder}/nope.yaml"], ["nope.yaml", "does not exist"]),
    ("unknown key", ["train", SMOKE, "--set", "train.n_env=3"], ["'train.n_env'", "did you mean 'n_envs'"]),
    ("unknown top-level key", ["train", "{typo_top}"], ["'trian'", "did you mean 'train'"]),
    ("unknown section in --set", ["sweep", SMOKE, "--set", "trian.seed=1"], ["'trian.seed'", "did you mean"]),
    ("wrong type", ["train", SMOKE, "--set", "train.n_envs=lots"], ["train.n_envs must be an int", "'lots'"]),
    ("wrong type (list)", ["train", SMOKE, "--set", "policies.firm.hidden=64"], ["policies.firm.hidden"]),
    ("not finite", ["train", SMOKE, "--set", "policies.firm.lr=.nan"], ["policies.firm.lr must be a finite"]),
    ("out of range", ["train", SMOKE, "--set", "policies.consumer.gamma=1.5"], ["policies.consumer.gamma=1.5"]),
    ("economy out of range", ["train", SMOKE, "--set", "economy.n_firms=-2"], ["n_firms"]),
    ("nothing would train", ["train", SMOKE, "--set", "train.frozen=[firm, government]",
                             "--set", "curriculum.consumer_start=1e6"],
     ["no agent type would ever train", "curriculum.consumer_start", "train.total_episodes=60"]),
    ("all types frozen", ["train", SMOKE, "--set", "train.frozen=[consumer, firm, government]"],
     ["no agent type would ever train", "train.frozen"]),
    ("bad tune section", ["sweep", "{bad_tune}"], ["tune.seeds"]),
    ("bad override syntax", ["train", SMOKE, "--set", "train.n_envs"], ["must look like key=value"]),
    ("--out is a file", ["train", SMOKE, "--out", "{a_file}/run"], ["a_file/run", "Not a directory"]),
    ("--resume with no run", ["train", SMOKE, "--resume", "--out", "{folder}/empty_run"],
     ["--resume", "holds no run of 'open_rbc_smoke'"]),
    ("--resume changing the economy", ["train", SMOKE, "--resume", "--out", "{tiny_run}"],
     ["--resume continues the run", "economy.n_consumers (3 -> 6"]),
    ("--resume of a truncated checkpoint", ["train", SMOKE, "--resume", "--out", "{truncated_run}"],
     ["trainer.pt", "cannot be read, truncated or corrupted"]),
    ("data-parallel checkpoint of another economy",
     ["train", SMOKE, "--workers", "2", "--resume", "--out", "{dp_other_economy}"],
     ["checkpoint_000000", "made for another economy", "economy.n_firms is 3 there, 2 here"]),
    ("data-parallel truncated checkpoint", ["train", SMOKE, "--workers", "2", "--resume", "--out", "{dp_truncated}"],
     ["trainer_rank0.pt", "cannot be read"]),
    ("srl unknown key", ["srl", "huggett", "--set", "betta=0.9"], ["'betta'", "did you mean 'beta'"]),
    ("srl wrong type", ["srl", "huggett", "--set", "n_b=lots"], ["n_b must be an int"]),
    ("srl out of range", ["srl", "huggett", "--set", "beta=1.5"], ["beta must lie in (0, 1)", "1.5"]),
    ("srl inconsistent", ["srl", "ks", "--set", "w_min=2"], ["w_min must be < w_max"]),
    ("srl not finite", ["srl", "hank", "--set", "sd_z=.inf"], ["sd_z must be a finite number"]),
    ("br unknown key", ["analyse", "{run}", "--set", "br.episodez=3"], ["'br.episodez'", "did you mean 'episodes'"]),
    ("br wrong type", ["analyse", "{run}", "--set", "br.lr=fast"], ["br.lr must be a number"]),
    ("br out of range", ["analyse", "{run}", "--set", "br.eval_envs=0"], ["br.eval_envs=0"]),
    ("br inconsistent with the profile", ["analyse", "{run_minibatches}", "--set", "br.n_envs=1"],
     ["do not fit profile", "policies.consumer.minibatches"]),
    ("no such checkpoint", ["analyse", "{run}", "--checkpoints", "7"], ["--checkpoints 7", "have [2]"]),
    ("missing run folder", ["analyse", "{folder}/no_run"], ["no_run", "is not a folder"]),
    ("run folder without snapshots", ["analyse", "{folder}"], ["no policy snapshots"]),
    ("analyse an SRL output folder", ["analyse", "{srl_out}"], ["srl_out", "`rbc-ray srl` output folder"]),
    ("plot an SRL output folder", ["plot", "{srl_out}"], ["srl_out", "`rbc-ray srl` output folder"]),
    ("plot a missing folder", ["plot", "{folder}/no_run"], ["no_run", "no metrics"]),
    ("truncated snapshot", ["analyse", "{truncated_snapshot_run}"], ["episode_00000002.pt", "cannot be read"]),
    ("snapshot that is not one", ["analyse", "{garbage_snapshot_run}"], ["episode_00000002.pt", "cannot be read"]),
    ("snapshot of another economy", ["analyse", "{mismatched_snapshot_run}"],
     ["episode_00000002.pt", "made for another economy or network", "consumer network"]),
    ("truncated metrics Parquet", ["plot", "{truncated_parquet_run}"],
     ["metrics.parquet", "not a readable Parquet file"]),
    ("corrupted sweep summary Parquet", ["analyse", "{sweep_bad_summary}", "--out", "{folder}/analysis"],
     ["summary.parquet", "not a readable Parquet file"]),
]


def _cli(argv, cwd, timeout=120):
    """The CLI in its own process group; a case that runs on (it started work) is killed with its group."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "rbc_ray.cli", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=cwd, env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        err += f"\n[still running after {timeout} s: killed]"
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The bad files and folders the cases name."""
    d = tmp_path_factory.mktemp("bad")
    (d / "bad.yaml").write_text("train:\n  n_envs: [1, 2\n")
    (d / "empty.yaml").write_text("")
    (d / "list.yaml").write_text("- a\n- b\n")
    (d / "typo_top.yaml").write_text("name: x\ntrian:\n  n_envs: 3\n")
    smoke = yaml.safe_load(open(SMOKE))
    (d / "bad_tune.yaml").write_text(yaml.safe_dump({**smoke, "tune": {"seeds": 3}}))
    (d / "a_file").write_text("not a folder")
    (d / "empty_run").mkdir()

    tiny = Trainer(load_experiment(SMOKE, TINY)[0])
    tiny.train_iteration()
    run = d / "run"
    snap = write_snapshot(tiny, run / "snapshots")
    (d / "snap.bin").write_bytes(snap.read_bytes())
    state = tiny.state_dict()

    mini = Trainer(load_experiment(SMOKE, TINY + ["policies.consumer.minibatches=2"])[0])
    mini.train_iteration()
    write_snapshot(mini, d / "run_minibatches" / "snapshots")

    def resumable(name, cfg_dict, ckpt_bytes):
        out = d / name
        (out / "tune" / "open_rbc_smoke" / "trial_0" / "checkpoint_000001").mkdir(parents=True)
        (out / "config.yaml").write_text(yaml.safe_dump(cfg_dict, sort_keys=False))
        (out / "tune" / "open_rbc_smoke" / "trial_0" / "checkpoint_000001" / "trainer.pt").write_bytes(ckpt_bytes)

    import io
    buf = io.BytesIO()
    torch.save(state, buf)
    smoke_cfg = load_experiment(SMOKE)[0].to_dict()
    resumable("tiny_run", tiny.cfg.to_dict(), buf.getvalue())
    resumable("truncated_run", smoke_cfg, buf.getvalue()[:2000])

    for name, data in (("dp_other_economy", buf.getvalue()), ("dp_truncated", buf.getvalue()[:2000])):
        ckpt = d / name / "raytrain" / "open_rbc_smoke" / "checkpoint_000000"
        ckpt.mkdir(parents=True)
        for rank in (0, 1):
            (ckpt / f"trainer_rank{rank}.pt").write_bytes(data)

    (d / "srl_out").mkdir()
    (d / "srl_out" / "summary.json").write_text("{}")
    (d / "srl_out" / "calibration.yaml").write_text("model: huggett\n")

    for name, data in (("truncated_snapshot_run", snap.read_bytes()[:3000]), ("garbage_snapshot_run", b"hello")):
        (d / name / "snapshots").mkdir(parents=True)
        (d / name / "snapshots" / snap.name).write_bytes(data)
    wrong = snapshot(tiny)
    wrong["config"]["economy"]["n_firms"] = 2  # networks of 3 firms, config of 2
    (d / "mismatched_snapshot_run" / "snapshots").mkdir(parents=True)
    torch.save(wrong, d / "mismatched_snapshot_run" / "snapshots" / snap.name)

    (d / "truncated_parquet_run").mkdir()
    from rbc_ray.results import MetricsWriter
    writer = MetricsWriter(d / "truncated_parquet_run")
    writer.append({"iteration": 1, "episodes": 2.0})
    table = (d / "truncated_parquet_run" / "metrics.parquet").read_bytes()
    (d / "truncated_parquet_run" / "metrics.parquet").write_bytes(table[: len(table) // 2])

    trial = d / "sweep_bad_summary" / "trials" / "abc_00000"
    (trial / "snapshots").mkdir(parents=True)
    (trial / "snapshots" / snap.name).write_bytes(snap.read_bytes())
    (d / "sweep_bad_summary" / "summary.parquet").write_bytes(table[: len(table) // 2])
    return d


def test_every_bad_input_is_one_line_exit_2_naming_it(files):
    names = {p.name for p in files.iterdir()} | {"folder"}
    paths = {n: str(files if n == "folder" else files / n) for n in names}
    paths.update({k: str(files / f"{k}.yaml") for k in ("bad_yaml", "empty", "list", "typo_top", "bad_tune")})
    paths["bad_yaml"] = str(files / "bad.yaml")
    paths["binary"] = str(files / "snap.bin")
    argvs = [[a.format(**paths) for a in argv] for _, argv, _ in CASES]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda argv: _cli(argv, files), argvs))
    failures = []
    for (case, _, needles), argv, r in zip(CASES, argvs, results):
        lines = r.stderr.strip().splitlines()
        ok = (r.returncode == 2 and len(lines) == 1 and "Traceback" not in r.stderr
              and lines[0].startswith(f"rbc-ray {argv[0]}: error: ")
              and all(n.format(**paths) in lines[0] for n in needles))
        if not ok:
            failures.append(f"{case}: rc={r.returncode} stderr={r.stderr[-600:]!r}")
    assert not failures, "\n".join(failures)
    assert not (files / "results").exists()  # nothing ran: no default results folder was made


def test_debug_shows_the_traceback(files):
    r = _cli(["--debug", "train", str(files / "empty.yaml")], files)
    assert r.returncode == 1 and "Traceback" in r.stderr and "ConfigError" in r.stderr


def test_loading_a_checkpoint_of_another_economy_says_so_in_one_line():
    other = Trainer(load_experiment(SMOKE, TINY)[0])  # 3 firms
    here = Trainer(load_experiment(SMOKE, ["train.n_envs=4"])[0])  # 2 firms
    with pytest.raises(ValueError, match=r"^checkpoint was made for another economy or network: economy.n_consumers "
                                         r"is 3 there, 6 here; economy.n_firms is 3 there, 2 here$"):
        here.load_state_dict(other.state_dict())
    same_shapes = Trainer(load_experiment(SMOKE, ["train.n_envs=4", "economy.n_consumers=3"])[0])
    here.load_state_dict(same_shapes.state_dict())  # another consumer count: the same shared networks
