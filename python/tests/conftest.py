import numpy as np
import pytest


@pytest.fixture
def patches():
    """200 examples of 16 features in [0.1, 0.9], as UFLDL's normalised patches are."""
    return np.random.default_rng(7).uniform(0.1, 0.9, size=(200, 16))
