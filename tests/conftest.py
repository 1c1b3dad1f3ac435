"""Shared pytest setup: one torch thread per test process, the --runslow switch, and one local Ray
for the tests that need one (started once, shut down by us only)."""

import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (long training, full-size models)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def local_ray():
    import ray

    started = not ray.is_initialized()
    if started:
        ray.init(_node_ip_address="127.0.0.2", num_cpus=2, include_dashboard=False,
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()
