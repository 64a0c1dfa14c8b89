"""Models from Python: their parts as arrays, encoding and decoding as the equations say, and
model files that round-trip."""

import pickle

import numpy as np
import pytest

import sae


def sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@pytest.fixture
def model(patches):
    hyper = sae.HyperParams(16, 5)
    return sae.Model.from_theta(hyper, sae.initial_theta(16, 5, seed=4) + 0.01)


def test_parts_are_the_theta_layout(model):
    theta = model.theta
    W1, W2 = model.W1, model.W2
    assert W1.shape == (5, 16) and W2.shape == (16, 5)
    np.testing.assert_array_equal(W1, theta[:80].reshape(16, 5).T)
    np.testing.assert_array_equal(W2, theta[80:160].reshape(5, 16).T)
    np.testing.assert_array_equal(model.b1, theta[160:165])
    np.testing.assert_array_equal(model.b2, theta[165:])


def test_encode_decode_and_reconstruct_follow_the_equations(model, patches):
    a2 = sigmoid(patches @ model.W1.T + model.b1)
    np.testing.assert_allclose(model.encode(patches), a2, rtol=1e-12)
    a3 = sigmoid(a2 @ model.W2.T + model.b2)
    np.testing.assert_allclose(model.decode(a2), a3, rtol=1e-12)
    np.testing.assert_allclose(model.reconstruct(np.asfortranarray(patches)), a3, rtol=1e-12)


def test_files_round_trip_in_their_precision(model, patches, tmp_path):
    path = tmp_path / "model.safetensors"
    model.save(path)
    loaded = sae.load(path)
    assert loaded.dtype == "float64" and loaded.hyper == model.hyper
    np.testing.assert_array_equal(loaded.theta, model.theta)
    single = sae.Model.from_theta(model.hyper, model.theta.astype(np.float32))
    single.save(tmp_path / "single.safetensors")
    assert sae.load(tmp_path / "single.safetensors").dtype == "float32"


def test_models_and_hyper_parameters_pickle(model, patches):
    copy = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(copy.encode(patches), model.encode(patches))
    assert pickle.loads(pickle.dumps(model.hyper)) == model.hyper


def test_a_file_that_is_not_a_model_is_a_clear_error(tmp_path):
    path = tmp_path / "x.safetensors"
    path.write_bytes(b"not a model")
    with pytest.raises(ValueError, match="x.safetensors"):
        sae.load(path)
    with pytest.raises(OSError, match="missing.safetensors"):
        sae.load(tmp_path / "missing.safetensors")


def test_data_of_another_width_is_refused(model, patches):
    with pytest.raises(ValueError, match="X has 10 columns but the model has n_visible = 16"):
        model.encode(patches[:, :10])
    with pytest.raises(ValueError, match="H has 3 columns but the model has n_hidden = 5"):
        model.decode(patches[:, :3])


def test_any_array_like_is_converted(model, patches):
    np.testing.assert_array_equal(model.encode(patches[::2].tolist()), model.encode(patches[::2]))
    # float32 data for a float64 model: converted (its values were rounded to float32 first).
    np.testing.assert_allclose(model.encode(patches.astype(np.float32)), model.encode(patches), rtol=1e-6)


def test_a_relu_model_round_trips_through_saelens_files_that_numpy_reproduces(patches, tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    import json

    estimator = sae.SparseAutoencoder(
        12, activation="relu", output="linear", penalty="l1", max_iter=30, random_state=0, dtype="float32"
    ).fit(patches)
    model = estimator.model_
    model.export_saelens(str(tmp_path / "saelens"))
    weights = safetensors_numpy.load_file(str(tmp_path / "saelens" / "sae_weights.safetensors"))
    config = json.loads((tmp_path / "saelens" / "cfg.json").read_text())
    assert (config["architecture"], config["d_in"], config["d_sae"], config["dtype"]) == ("standard", 16, 12, "float32")
    assert weights["W_enc"].shape == (16, 12) and weights["W_dec"].shape == (12, 16)
    X = patches.astype(np.float32)
    # SAELens's standard SAE: f = relu((x − b_dec·apply) W_enc + b_enc), x̂ = f W_dec + b_dec.
    features = np.maximum(X @ weights["W_enc"] + weights["b_enc"], 0)
    np.testing.assert_allclose(features, model.encode(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(features @ weights["W_dec"] + weights["b_dec"], model.reconstruct(X), rtol=1e-5, atol=1e-5)
    back = sae.Model.import_saelens(str(tmp_path / "saelens"))
    assert back.dtype == "float32"
    np.testing.assert_array_equal(back.theta, model.theta)


def test_a_sigmoid_model_is_not_written_for_saelens(model, tmp_path):
    with pytest.raises(sae.SaeError, match="ReLU"):
        model.export_saelens(str(tmp_path / "saelens"))
