"""The other model kinds from Python: the variational autoencoder (an estimator, its files and
samples) and the stacked autoencoder's files."""

import pickle

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

import sae


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@parametrize_with_checks([sae.VariationalAutoencoder(2, n_hidden=8, max_iter=2, batch_size=16, decoder="gaussian")])
def test_scikit_learn_checks_of_the_vae(estimator, check):
    check(estimator)


@pytest.fixture
def vae(patches):
    return sae.VariationalAutoencoder(3, n_hidden=12, max_iter=8, batch_size=32, random_state=0).fit(patches)


def test_the_vae_trains_encodes_decodes_and_samples(vae, patches):
    assert vae.n_iter_ == 8 and vae.loss_curve_[-1] < vae.loss_curve_[0]
    latent = vae.transform(patches)
    assert latent.shape == (200, 3) and np.all(np.isfinite(latent))
    decoded = vae.inverse_transform(latent)
    assert decoded.shape == (200, 16) and np.all((0 < decoded) & (decoded < 1))
    samples = vae.sample(5, random_state=1)
    assert samples.shape == (5, 16)
    np.testing.assert_array_equal(samples, vae.sample(5, random_state=1))
    assert list(vae.get_feature_names_out()) == ["variationalautoencoder0", "variationalautoencoder1", "variationalautoencoder2"]


def test_vae_files_round_trip_and_load_as_their_kind(vae, patches, tmp_path):
    path = tmp_path / "vae.safetensors"
    vae.save(path)
    model = sae.load(path)
    assert isinstance(model, sae.VaeModel)
    assert model.shape == {"n_visible": 16, "n_hidden": 12, "n_latent": 3, "activation": "tanh", "decoder": "bernoulli"}
    np.testing.assert_array_equal(model.encode(patches), vae.transform(patches))
    assert model.encoder_weights.shape == (12, 16)
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(vae)).transform(patches), vae.transform(patches))


def test_a_callback_can_stop_the_vae(patches):
    epochs = []
    model = sae.VariationalAutoencoder(2, n_hidden=8, max_iter=50, batch_size=50, random_state=0)
    model.fit(patches, callback=lambda info: epochs.append(info) or len(epochs) < 3)
    assert len(epochs) == 3 and model.n_iter_ == 3
    assert {"epoch", "cost", "reconstruction", "kl", "time"} <= set(epochs[0])


def test_stack_files_round_trip_and_compute_as_their_equations_say(patches, tmp_path):
    n, h, k = 16, 6, 3
    rng = np.random.default_rng(2)
    theta = rng.normal(scale=0.3, size=k * h + h * n + h)
    stack = sae.StackModel.from_theta([n, h], k, theta)
    W1 = theta[k * h : k * h + h * n].reshape(n, h).T
    features = sigmoid(patches @ W1.T + theta[k * h + h * n :])
    np.testing.assert_allclose(stack.features(patches), features, rtol=1e-12)
    softmax = theta[: k * h].reshape(h, k).T
    np.testing.assert_array_equal(stack.predict(patches), np.argmax(features @ softmax.T, axis=1))
    np.testing.assert_array_equal(stack.first_layer_weights, W1)
    path = tmp_path / "stack.safetensors"
    stack.save(path)
    loaded = sae.load(path)
    assert isinstance(loaded, sae.StackModel) and loaded.sizes == [n, h] and loaded.n_classes == k
    np.testing.assert_array_equal(loaded.features(patches), stack.features(patches))
    with pytest.raises(sae.InvalidInputError, match="theta has 5 values"):
        sae.StackModel.from_theta([n, h], k, np.zeros(5))
