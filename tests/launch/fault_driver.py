"""A driver for tests/launch/test_faults.py and test_analyse.py: runs `rbc-ray train|sweep|analyse` in
this process with a fault planted at a fixed point by a Tune callback.

    python fault_driver.py COMMAND KWARGS_JSON FAULT
    COMMAND: train | sweep | analyse (run_train, run_sweep, run_analysis with KWARGS_JSON)
    FAULT:   none
             worker:ITERATION         SIGKILL the trial's worker process (by PID) once, when it reports
                                      that training iteration
             driver:FINISHED:REPORTS  SIGKILL this driver once FINISHED trials have ended and another
                                      trial has reported REPORTS results (only if MARKER is absent:
                                      the callback is pickled with the run and comes back on --resume)

`drive` runs this script in a process group of its own (the tests import it from here). The resumed
run must go through this script too: Tune restores the callbacks it pickled, by this
module's name.
"""

import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

from ray import tune


class KillWorker(tune.Callback):
    """Kill the reporting trial's worker process when it reports `iteration` (once)."""

    def __init__(self, iteration: int) -> None:
        self.iteration, self.fired = iteration, False

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        if not self.fired and result.get("training_iteration") == self.iteration:
            self.fired = True
            os.kill(int(result["pid"]), signal.SIGKILL)


class KillDriver(tune.Callback):
    """Kill this driver once `finished` trials have ended and another trial reported `reports` times."""

    def __init__(self, finished: int, reports: int, marker: str) -> None:
        self.finished, self.reports, self.marker = finished, reports, Path(marker)
        self.ended, self.counts = 0, Counter()

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.ended += 1

    def on_trial_result(self, iteration, trials, trial, result, **info) -> None:
        self.counts[trial.trial_id] += 1
        if self.ended >= self.finished and self.counts[trial.trial_id] >= self.reports and not self.marker.exists():
            self.marker.write_text(f"killed at {trial.trial_id} report {self.counts[trial.trial_id]}\n")
            os.kill(os.getpid(), signal.SIGKILL)


def callbacks(fault: str, out: str) -> list:
    kind, *args = fault.split(":")
    if kind == "none":
        return []
    if kind == "worker":
        return [KillWorker(int(args[0]))]
    if kind == "driver":
        return [KillDriver(int(args[0]), int(args[1]), str(Path(out) / "killed.txt"))]
    raise SystemExit(f"unknown fault {fault!r}")


def drive(command: str, kwargs: dict, fault: str, timeout: int = 400) -> subprocess.CompletedProcess:
    """Run the driver in a process group of its own; whatever of it survives its end is killed."""
    env = dict(os.environ, TUNE_GLOBAL_CHECKPOINT_S="0")  # save the experiment state at every step,
    # so what the killed driver leaves on disk does not depend on Tune's 10-second save throttle
    proc = subprocess.Popen([sys.executable, __file__, command, json.dumps(kwargs), fault],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # Ray processes the driver started, if any are left
        except ProcessLookupError:
            pass
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, "")


def result_lines(trial_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.strip()]


def main() -> None:
    command, kwargs, fault = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
    kwargs["callbacks"] = callbacks(fault, kwargs["out"])
    if command == "train":
        from rbc_ray.launch.train import run_train as run
    elif command == "sweep":
        from rbc_ray.launch.sweep import run_sweep as run
    else:
        from rbc_ray.launch.analyse import run_analysis as run
    run(**kwargs)


if __name__ == "__main__":
    main()
