"""The scikit-learn estimator: scikit-learn's own checks, pipelines and searches, and the
controls of a run (callbacks, stopping, warm starts, minibatch solvers)."""

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import MinMaxScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import sae
from conftest import saturating_checks

@parametrize_with_checks(
    [sae.SparseAutoencoder(max_iter=20), sae.SparseAutoencoder(max_iter=2, solver="adam", batch_size=16)],
    expected_failed_checks=saturating_checks,
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_fit_transform_and_attributes(patches):
    model = sae.SparseAutoencoder(8, max_iter=50, random_state=0).fit(patches)
    features = model.transform(patches)
    assert features.shape == (200, 8) and features.dtype == np.float64
    assert model.components_.shape == (8, 16) and model.intercept_hidden_.shape == (8,)
    assert model.n_features_in_ == 16 and model.n_iter_ == 50 == len(model.loss_curve_)
    assert model.loss_curve_[-1] < model.loss_curve_[0]
    assert model.score(patches) == pytest.approx(-model.loss_curve_[-1], rel=1e-9)
    assert list(model.get_feature_names_out()) == [f"sparseautoencoder{i}" for i in range(8)]
    np.testing.assert_allclose(model.inverse_transform(features), model.reconstruct(patches), rtol=1e-12)


def test_float32_data_trains_a_float32_model(patches):
    model = sae.SparseAutoencoder(8, max_iter=10, random_state=0).fit(patches.astype(np.float32))
    assert model.model_.dtype == "float32" and model.transform(patches).dtype == np.float32


def test_a_callback_returning_false_stops_and_keeps_the_model(patches):
    seen = []
    model = sae.SparseAutoencoder(8, max_iter=100, random_state=0)
    model.fit(patches, callback=lambda info: seen.append(info) or len(seen) < 5)
    assert len(seen) == 5 and model.n_iter_ == 5 and model.stop_reason_ == "requested"
    assert {"iteration", "cost", "gradient_norm", "time"} <= set(seen[0])


def test_an_exception_in_the_callback_ends_the_run_and_is_raised(patches):
    def fail(info):
        raise RuntimeError("from the callback")

    model = sae.SparseAutoencoder(8, max_iter=100, random_state=0)
    with pytest.raises(RuntimeError, match="from the callback"):
        model.fit(patches, callback=fail)
    assert model.n_iter_ == 1 and model.transform(patches).shape == (200, 8)


def test_warm_start_continues_from_the_fitted_model(patches):
    model = sae.SparseAutoencoder(8, max_iter=20, random_state=0, warm_start=True).fit(patches)
    first = model.loss_curve_[-1]
    model.fit(patches)
    assert len(model.loss_curve_) == 40 and model.loss_curve_[-1] < first


@pytest.mark.parametrize("solver", ["adam", "sgd"])
def test_minibatch_solvers_and_partial_fit(patches, solver):
    model = sae.SparseAutoencoder(8, solver=solver, max_iter=5, batch_size=32, learning_rate_init=0.01, random_state=0)
    model.fit(patches)
    assert model.n_iter_ == 5 and len(model.loss_curve_) >= 5
    before = model.score(patches)
    for _ in range(5):
        model.partial_fit(patches)
    assert model.score(patches) > before


def test_partial_fit_is_only_offered_by_minibatch_solvers():
    assert not hasattr(sae.SparseAutoencoder(solver="lbfgs"), "partial_fit")


def test_verbose_prints_a_line_per_iteration(patches, capsys):
    sae.SparseAutoencoder(8, max_iter=3, random_state=0, verbose=True).fit(patches)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[0].startswith("iteration 1: cost ")


def test_in_a_pipeline_and_a_grid_search(patches):
    raw = patches * 40 - 7
    pipeline = make_pipeline(MinMaxScaler(), sae.SparseAutoencoder(max_iter=15, random_state=0))
    search = GridSearchCV(pipeline, {"sparseautoencoder__n_hidden": [4, 8]}, cv=2).fit(raw)
    assert search.best_params_["sparseautoencoder__n_hidden"] in (4, 8)
    assert search.transform(raw).shape[0] == 200


def test_bad_parameters_are_clear_errors(patches):
    with pytest.raises(sae.InvalidInputError, match="n_threads"):
        sae.SparseAutoencoder(n_threads=-1).fit(patches)
    with pytest.raises(ValueError, match="solver"):
        sae.SparseAutoencoder(solver="newton").fit(patches)
    with pytest.raises(ValueError, match="loss"):
        sae.SparseAutoencoder(loss="hinge").fit(patches)
    with pytest.raises(sae.InvalidInputError, match="output = 'sigmoid'"):
        sae.SparseAutoencoder(loss="cross-entropy", output="linear").fit(patches)
    with pytest.raises(sae.InvalidInputError, match="'sigmoid', 'linear'"):
        sae.SparseAutoencoder(output="softmax").fit(patches)


@pytest.mark.parametrize("n_threads", [None, 1])
def test_ctrl_c_stops_a_fit_keeping_the_model_so_far(n_threads):
    """SIGINT to a process training (the engine working, the interpreter detached): the fit
    ends at the next iteration with KeyboardInterrupt, and the model so far is usable."""
    import signal
    import subprocess
    import sys

    script = """
import sys, numpy as np, sae
X = np.random.default_rng(0).uniform(0.1, 0.9, size=(20000, 64))
model = sae.SparseAutoencoder(49, max_iter=100000, random_state=0, n_threads=N_THREADS)
def started(info):
    if info["iteration"] == 1:
        print("training", flush=True)
try:
    model.fit(X, callback=started)
except KeyboardInterrupt:
    print("interrupted after", model.n_iter_, model.transform(X[:3]).shape, flush=True)
"""
    script = script.replace("N_THREADS", repr(n_threads))
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "training"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert out.startswith("interrupted after ") and out.strip().endswith("(3, 49)"), out
    assert process.returncode == 0


def test_partial_fit_continues_one_run_as_fit_with_as_many_epochs(patches):
    kwargs = dict(solver="adam", batch_size=32, learning_rate_init=0.01, random_state=0)
    continued = sae.SparseAutoencoder(8, max_iter=1, **kwargs)
    for _ in range(3):
        continued.partial_fit(patches)
    assert continued.n_iter_ == 3 and len(continued.loss_curve_) == 3
    # The same seed, epochs and moments as one run of three epochs: the same model.
    whole = sae.SparseAutoencoder(8, max_iter=3, **kwargs).fit(patches)
    np.testing.assert_array_equal(continued.model_.theta, whole.model_.theta)
    np.testing.assert_allclose(continued.loss_curve_, whole.loss_curve_, rtol=1e-12)


def test_a_learning_rate_schedule_shapes_the_minibatch_solvers_steps(patches):
    kwargs = dict(solver="adam", batch_size=32, learning_rate_init=0.01, random_state=0)

    def theta(epochs, **schedule):
        return sae.SparseAutoencoder(8, max_iter=epochs, **kwargs, **schedule).fit(patches).model_.theta

    # Warmed up over far more steps than the run has, every step is all but 0: the model
    # barely moves from its start, where three constant epochs move it well away.
    slow = dict(lr_warmup=10**9)
    assert np.abs(theta(3, **slow) - theta(1, **slow)).max() < 1e-6
    assert np.abs(theta(3) - theta(1)).max() > 1e-2
    # A decay changes the run, and the run is reproducible.
    decayed = dict(lr_decay="cosine", lr_decay_start=0.0)
    assert np.abs(theta(3, **decayed) - theta(3)).max() > 1e-3
    np.testing.assert_array_equal(theta(3, **decayed), theta(3, **decayed))


def test_a_learning_rate_schedule_is_refused_where_it_means_nothing(patches):
    with pytest.raises(sae.InvalidInputError, match="lr_decay"):
        sae.SparseAutoencoder(solver="adam", lr_decay="exponential").fit(patches)
    with pytest.raises(sae.InvalidInputError, match="lbfgs"):
        sae.SparseAutoencoder(lr_decay="linear").fit(patches)
    with pytest.raises(sae.InvalidInputError, match="lr_decay_start"):
        sae.SparseAutoencoder(solver="adam", lr_decay="linear", lr_decay_start=1.5).fit(patches)
    scheduled = sae.SparseAutoencoder(8, solver="adam", max_iter=1, lr_warmup=10, random_state=0)
    with pytest.raises(sae.InvalidInputError, match="partial_fit"):
        scheduled.partial_fit(patches)
    assert not hasattr(scheduled, "model_")


def test_a_callback_returning_any_false_value_but_none_stops(patches):
    for falsy in (np.False_, 0):
        model = sae.SparseAutoencoder(8, max_iter=50, random_state=0)
        model.fit(patches, callback=lambda info, falsy=falsy: falsy)
        assert model.n_iter_ == 1
    model = sae.SparseAutoencoder(8, max_iter=5, random_state=0).fit(patches, callback=lambda info: None)
    assert model.n_iter_ == 5


def test_hyper_parameter_errors_name_the_python_parameter(patches):
    with pytest.raises(sae.InvalidInputError, match="sparsity_target"):
        sae.SparseAutoencoder(sparsity_target=1.5).fit(patches)
    with pytest.raises(sae.InvalidInputError, match="sparsity_weight = 0"):
        sae.SparseAutoencoder(activation="relu").fit(patches)
