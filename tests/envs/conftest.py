"""A local Ray for the RLlib tests in this folder (started once, shut down by us only)."""

import pytest


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
