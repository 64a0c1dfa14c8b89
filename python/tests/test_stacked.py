"""The stacked autoencoder classifier: greedy pretraining, softmax, fine-tuning, as a
scikit-learn classifier."""

import pickle

import numpy as np
import pytest
from sklearn.datasets import load_digits
from sklearn.exceptions import NotFittedError
from sklearn.metrics import log_loss
from sklearn.model_selection import GridSearchCV
from sklearn.utils.estimator_checks import parametrize_with_checks

import sae
from sae import _sae
from conftest import saturating_checks

@pytest.fixture(scope="module")
def digits():
    """scikit-learn's 8×8 digits scaled to [0, 1]: 1 797 examples of 64 features, 10 classes."""
    X, y = load_digits(return_X_y=True)
    return X / 16.0, y


def small(**kwargs):
    defaults = dict(hidden_layer_sizes=(24,), max_iter=40, softmax_max_iter=40, fine_tune_max_iter=40, random_state=0)
    return sae.StackedAutoencoderClassifier(**{**defaults, **kwargs})


@parametrize_with_checks(
    [small(hidden_layer_sizes=(8,), max_iter=20, softmax_max_iter=50, fine_tune_max_iter=50)],
    expected_failed_checks=saturating_checks,
)
def test_scikit_learn_checks(estimator, check):
    check(estimator)


def test_fine_tuning_learns_the_digits(digits):
    X, y = digits
    train, test = slice(0, 1300), slice(1300, None)
    model = small(hidden_layer_sizes=(48, 24), fine_tune_max_iter=150).fit(X[train], y[train])
    assert model.score(X[test], y[test]) > 0.9
    assert list(model.classes_) == list(range(10)) and model.n_features_in_ == 64
    assert model.transform(X[test]).shape == (497, 24) and model.predict_proba(X[test]).shape == (497, 10)
    assert [layer.n_hidden for layer in model.layers_] == [48, 24] and model.model_.sizes == [64, 48, 24]
    assert model.n_iter_ == len(model.loss_curve_) > 0 and model.loss_curve_[-1] < model.loss_curve_[0]


def test_fine_tuning_lowers_the_training_log_loss_of_the_pretrained_network(digits):
    X, y = digits
    pretrained = small(fine_tune_max_iter=0).fit(X, y)
    fine_tuned = small(fine_tune_max_iter=60).fit(X, y)
    # The same pretraining and softmax (same seeds), then backpropagation through the stack.
    np.testing.assert_array_equal(pretrained.layers_[0].model_.theta, fine_tuned.layers_[0].model_.theta)
    assert log_loss(y, fine_tuned.predict_proba(X)) < 0.9 * log_loss(y, pretrained.predict_proba(X))


def test_without_fine_tuning_the_network_is_softmax_on_the_pretrained_features(digits):
    X, y = digits
    model = small(fine_tune_max_iter=0).fit(X, y)
    layer = model.layers_[0]
    np.testing.assert_array_equal(model.model_.first_layer_weights, layer.components_)
    features = layer.transform(X)
    np.testing.assert_allclose(model.transform(X), features, rtol=1e-12)
    # The softmax weights lead the parameters, n_classes×h column-major.
    weights = model.model_.theta[: 10 * 24].reshape(24, 10).T
    scores = features @ weights.T
    expected = np.exp(scores - scores.max(axis=1, keepdims=True))
    expected /= expected.sum(axis=1, keepdims=True)
    np.testing.assert_allclose(model.predict_proba(X), expected, rtol=1e-10)
    np.testing.assert_array_equal(model.predict(X), np.argmax(expected, axis=1))
    assert model.n_iter_ == len(model.loss_curve_) > 0  # the softmax's


def test_without_fine_tuning_two_layers_are_the_two_autoencoders_encoders_in_turn(digits):
    X, y = digits
    model = small(hidden_layer_sizes=(16, 8), fine_tune_max_iter=0).fit(X[:400], y[:400])
    first, second = model.layers_
    np.testing.assert_allclose(model.transform(X[400:500]), second.transform(first.transform(X[400:500])), rtol=1e-12)


def test_log_probabilities_are_computed_as_such(digits):
    X, y = digits
    model = small().fit(X[:400], y[:400])
    logs = model.predict_log_proba(X[400:500])
    assert np.all(np.isfinite(logs))
    probabilities = model.predict_proba(X[400:500])
    visible = probabilities > 1e-300
    np.testing.assert_allclose(np.exp(logs[visible]), probabilities[visible], rtol=1e-10)
    # A confident float32 network: probabilities that round to 0, logs that do not.
    sure = small(softmax_alpha=0.0, fine_tune_max_iter=300).fit(X[:100].astype(np.float32), y[:100])
    assert np.any(sure.predict_proba(X[:100]) == 0)
    assert np.all(np.isfinite(sure.predict_log_proba(X[:100])))


def test_fortran_ordered_data_trains_the_same_network(digits):
    X, y = digits
    c_order = small().fit(X[:300], y[:300])
    f_order = small().fit(np.asfortranarray(X[:300]), y[:300])
    np.testing.assert_allclose(f_order.model_.theta, c_order.model_.theta, rtol=1e-9, atol=1e-12)


def test_a_failed_fit_leaves_nothing_fitted(digits):
    X, y = digits
    model = small().fit(X[:100, :32], y[:100])

    def fail(info):
        raise RuntimeError("from the callback")

    with pytest.raises(RuntimeError, match="from the callback"):
        model.fit(X[:100], y[:100], callback=fail)
    assert not hasattr(model, "model_") and not hasattr(model, "n_features_in_")
    with pytest.raises(NotFittedError):
        model.predict(X[:1])


def test_labels_of_any_kind_come_back_as_given(digits):
    X, y = digits
    names = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])
    model = small().fit(X[:600], names[y[:600]])
    assert set(model.predict(X[600:700])) <= set(names) and list(model.classes_) == sorted(names)
    np.testing.assert_allclose(model.predict_proba(X[:5]).sum(axis=1), 1.0, rtol=1e-12)


def test_float32_data_trains_a_float32_network(digits):
    X, y = digits
    model = small().fit(X[:500].astype(np.float32), y[:500])
    assert model.model_.dtype == "float32" and model.layers_[0].model_.dtype == "float32"
    assert model.transform(X[:10]).dtype == np.float32 and model.predict_proba(X[:10]).dtype == np.float32


def test_the_callback_sees_every_stage_and_false_ends_only_that_stage(digits):
    X, y = digits
    seen = []

    def callback(info):
        seen.append(info["stage"])
        return info["stage"] != "layer 1"  # one iteration of the first layer, the rest in full

    model = small(hidden_layer_sizes=(16, 8), max_iter=5, softmax_max_iter=5, fine_tune_max_iter=5)
    model.fit(X[:300], y[:300], callback=callback)
    assert seen == ["layer 1"] + ["layer 2"] * 5 + ["softmax"] * 5 + ["fine-tuning"] * 5
    assert model.layers_[0].n_iter_ == 1 and model.layers_[0].stop_reason_ == "requested"
    assert model.n_iter_ == 5 and model.stop_reason_ == "max-iterations"


def test_verbose_prints_the_stage(digits, capsys):
    X, y = digits
    small(max_iter=2, softmax_max_iter=2, fine_tune_max_iter=2, verbose=True).fit(X[:200], y[:200])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("layer 1, iteration 1: cost") and lines[-1].startswith("fine-tuning, iteration 2")


def test_pickled_and_saved_networks_predict_alike(digits, tmp_path):
    X, y = digits
    model = small().fit(X[:400], y[:400])
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict_proba(X[400:500]), model.predict_proba(X[400:500]))
    model.save(tmp_path / "stack.safetensors")
    loaded = sae.load(tmp_path / "stack.safetensors")
    assert isinstance(loaded, sae.StackModel)
    np.testing.assert_array_equal(loaded.predict_proba(X[400:500]), model.predict_proba(X[400:500]))


def test_grid_search_over_the_fine_tuning(digits):
    X, y = digits
    search = GridSearchCV(small(max_iter=20), {"fine_tune_max_iter": [0, 40]}, cv=2).fit(X[:400], y[:400])
    assert search.best_params_ == {"fine_tune_max_iter": 40}


@pytest.mark.parametrize(
    "params, fragment",
    [
        (dict(hidden_layer_sizes=()), "hidden_layer_sizes = ()"),
        (dict(hidden_layer_sizes=(4, 0)), "hidden_layer_sizes = (4, 0)"),
        (dict(max_iter=0), "max_iter = 0"),
        (dict(fine_tune_max_iter=-1), "fine_tune_max_iter = -1"),
        (dict(softmax_alpha=-1.0), "softmax_alpha = -1.0"),
        (dict(softmax_alpha=float("nan")), "softmax_alpha = nan"),
        (dict(n_threads=0), "n_threads"),
    ],
)
def test_bad_parameters_are_named(digits, params, fragment):
    X, y = digits
    with pytest.raises(sae.InvalidInputError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
        small(**params).fit(X[:50], y[:50])


@pytest.mark.filterwarnings("ignore:The number of unique classes is greater than 50%")
def test_one_class_or_more_than_256_are_refused(digits):
    X, _ = digits
    with pytest.raises(sae.InvalidInputError, match="1 class"):
        small().fit(X[:20], np.zeros(20))
    many = np.random.default_rng(0).uniform(size=(300, 4))
    with pytest.raises(sae.InvalidInputError, match="300 classes"):
        small().fit(many, np.arange(300))


def test_the_extension_takes_class_indices_as_uint8_below_n_classes(digits):
    X, y = digits
    theta0 = np.zeros(10 * 64)
    with pytest.raises(TypeError, match="uint8"):
        _sae.train_softmax(X, y.astype(np.int64), 10, theta0)
    with pytest.raises(sae.InvalidInputError, match="at example"):
        _sae.train_softmax(X, y.astype(np.uint8), 5, np.zeros(5 * 64))
    with pytest.raises(TypeError, match="theta0 must be a 1-D float64"):
        _sae.train_softmax(X, y.astype(np.uint8), 10, theta0.astype(np.float32))
    with pytest.raises(sae.InvalidInputError, match="n_classes = 1"):
        _sae.fine_tune_stack(X, y.astype(np.uint8), [64, 4], 1, np.zeros(4))


def test_the_extension_names_what_does_not_fit(digits):
    X, y = digits
    labels = y.astype(np.uint8)
    with pytest.raises(sae.InvalidInputError, match="theta0 has 5 values; the objective has 640"):
        _sae.train_softmax(X, labels, 10, np.zeros(5))
    with pytest.raises(sae.InvalidInputError, match="y has 10 labels for the 1797 rows of X"):
        _sae.train_softmax(X, labels[:10], 10, np.zeros(640))
    with pytest.raises(sae.InvalidInputError, match="X must be 2-D"):
        _sae.train_softmax(X[0], labels[:1], 10, np.zeros(640))
    with pytest.raises(TypeError, match="theta0 must be a 1-D float32"):
        _sae.fine_tune_stack(X.astype(np.float32), labels, [64, 4], 10, np.zeros(10 * 4 + 64 * 4 + 4))
    with pytest.raises(sae.InvalidInputError, match="X has 64 columns but the model has sizes\\[0\\] = 32"):
        _sae.fine_tune_stack(X, labels, [32, 4], 10, np.zeros(10 * 4 + 32 * 4 + 4))
    with pytest.raises(sae.InvalidInputError, match="fits in memory"):
        sae.StackModel.from_theta([2, 2**62, 2**62], 2, np.zeros(0))
    layer = sae.Model.from_theta(sae.HyperParams(64, 4), sae.initial_theta(64, 4))
    with pytest.raises(sae.InvalidInputError, match="layer 2"):
        sae.StackModel.from_pretrained(10, np.zeros(40), [layer, layer])
    with pytest.raises(TypeError, match="one dtype"):
        sae.StackModel.from_pretrained(10, np.zeros(40, dtype=np.float32), [layer])


def test_ctrl_c_during_fine_tuning_keeps_the_network_so_far():
    """SIGINT while the network is fine-tuned: the fit ends at the next iteration with
    KeyboardInterrupt, and the network so far predicts."""
    import signal
    import subprocess
    import sys

    script = """
import numpy as np, sae
rng = np.random.default_rng(0)
X = rng.uniform(0.1, 0.9, size=(20000, 64))
y = (X[:, 0] > 0.5).astype(int)
model = sae.StackedAutoencoderClassifier((32,), max_iter=2, softmax_max_iter=2, fine_tune_max_iter=100000)
def started(info):
    if info["stage"] == "fine-tuning" and info["iteration"] == 1:
        print("fine-tuning", flush=True)
try:
    model.fit(X, y, callback=started)
except KeyboardInterrupt:
    print("interrupted", model.stop_reason_, model.predict(X[:3]).shape, flush=True)
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "fine-tuning"
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        process.kill()
    assert out.strip() == "interrupted interrupted (3,)", out
    assert process.returncode == 0
