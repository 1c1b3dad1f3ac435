"""Fixtures of the analyser's tests."""

import pytest

from equilibrium_helpers import make_profile


@pytest.fixture(scope="module")
def trained_profile():
    return make_profile(iterations=2)
