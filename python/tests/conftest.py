import numpy as np
import pytest


@pytest.fixture
def patches():
    """200 examples of 16 features in [0.1, 0.9], as UFLDL's normalised patches are."""
    return np.random.default_rng(7).uniform(0.1, 0.9, size=(200, 16))


# Data of mean 100 saturates every sigmoid unit at the UFLDL initialisation (the model expects
# inputs scaled to about [0, 1]): the KL penalty is infinite there and fit says so.
SATURATED = "sigmoid units saturate on scikit-learn's data of mean 100; fit raises SaturationError naming the unit"


def saturating_checks(estimator):
    """scikit-learn's checks that fit on data of mean 100, as expected failures."""
    return {name: SATURATED for name in ("check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in")}
