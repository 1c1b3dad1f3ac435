"""The one-line cause of a failed run (rbc_ray.launch.failures.root_cause) behind Ray's wrappers."""

from ray.exceptions import RayTaskError
from ray.train.v2.api.exceptions import WorkerGroupError

from rbc_ray.launch.failures import root_cause
from rbc_ray.train import TrainingDivergedError


def test_root_cause_unwraps_a_remote_task_error():
    cause = TrainingDivergedError("firm policy_loss is nan at iteration 0, episode 0")
    wrapped = RayTaskError("train", "Traceback (most recent call last):\n  ...", cause).as_instanceof_cause()
    assert root_cause(wrapped) == "TrainingDivergedError: firm policy_loss is nan at iteration 0, episode 0"


def test_root_cause_unwraps_ray_train_worker_failures():
    cause = TrainingDivergedError("consumer reward is inf at iteration 2, episode 5")
    inner = RayTaskError("loop", "Traceback ...", cause).as_instanceof_cause()
    error = WorkerGroupError("Training failed due to worker errors", {0: inner})
    assert root_cause(error) == "TrainingDivergedError: consumer reward is inf at iteration 2, episode 5"


def test_root_cause_of_a_plain_error_is_itself():
    assert root_cause(ValueError("bad\nlast line")) == "ValueError: last line"
