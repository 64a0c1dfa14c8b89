"""TopK sparse autoencoders from Python: training on planted directions, the codes, the
reconstruction, the metrics, files and the SAELens and sparsify folders."""

import numpy as np
import pytest

import sae


def planted(n=24, atoms=32, active=2, m=12000, seed=3):
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((atoms, n))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    x = np.zeros((m, n))
    for row in x:
        chosen = rng.choice(atoms, active, replace=False)
        row += rng.uniform(0.5, 2.5, active) @ directions[chosen]
    return directions, (x + 0.01 * rng.standard_normal(x.shape)).astype(np.float32)


def test_a_topk_model_learns_the_planted_directions_and_reports_its_epochs():
    directions, x = planted()
    model, epochs = sae.train_topk(x, 64, 4, epochs=25, batch_size=128)
    assert isinstance(model, sae.TopKModel) and model.dtype == "float32"
    assert (model.n_visible, model.n_latents, model.k) == (24, 64, 4)
    assert [e["epoch"] for e in epochs] == list(range(1, 26))
    assert epochs[-1]["fvu"] < epochs[0]["fvu"] and epochs[-1]["l0"] <= 4
    decoder = model.W_dec.astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(decoder, axis=1), 1.0, atol=1e-5)
    best = (directions @ decoder.T).max(axis=1)
    # (Random unit directions in 24 dimensions are rarely within cosine 0.9 of one another; the
    # issue's recovery target is tested on its own problem by the Rust suite.)
    assert np.mean(best >= 0.9) >= 0.75, best


def test_codes_reconstruction_and_metrics_follow_the_models_formula():
    _, x = planted(m=500)
    model, _ = sae.train_topk(x, 32, 3, epochs=2, batch_size=100)
    indices, values = model.encode(x)
    assert indices.shape == values.shape == (500, 3) and indices.dtype == np.int64
    # The formula, in numpy: z = W_enc (x − b_dec) + b_enc, the 3 largest positive kept.
    z = (x - model.b_dec) @ model.W_enc.T + model.b_enc
    for e in range(500):
        active = indices[e][indices[e] >= 0]
        want = np.argsort(-z[e])[: len(active)]
        assert set(active) == set(want[z[e][want] > 0])
        np.testing.assert_allclose(values[e][: len(active)], z[e][active], rtol=1e-5, atol=1e-6)
    reconstructed = model.reconstruct(x)
    manual = model.b_dec + np.stack([values[e] @ model.W_dec[np.maximum(indices[e], 0)] for e in range(500)])
    np.testing.assert_allclose(reconstructed, manual, rtol=1e-5, atol=1e-5)
    metrics = model.metrics(x, chunk=128)
    np.testing.assert_allclose(metrics["loss"], 0.5 * np.mean(np.sum((reconstructed - x) ** 2, axis=1)), rtol=1e-4)
    assert metrics["frequencies"].shape == (32,) and 0 <= metrics["dead"] <= 1


def test_more_rows_than_one_encoding_takes_are_encoded_by_chunks_with_the_same_codes():
    # 9 000 rows: three chunks of the encoder's 4 096 (its buffers are bounded by a chunk, not X).
    _, x = planted(n=16, atoms=24, m=9000)
    topk, _ = sae.train_topk(x, 32, 3, epochs=1, batch_size=500)
    relu, _ = sae.train_topk(x, 64, architecture="relu", l1_coefficient=0.05, epochs=1, batch_size=500)
    for model in (topk, relu):
        # The first chunk's rows at the encoder's centre b_dec (z = b_enc) fire few latents, the
        # others up to 43 for the ReLU model: chunks of different widths, padded to the widest.
        x = x.copy()
        x[:4096] = model.b_dec
        indices, values = model.encode(x)
        assert indices.shape == values.shape and indices.shape[0] == 9000
        fired = (indices >= 0).sum(axis=1)
        if model.selection == "all":
            assert fired[:4096].max() < 16 and fired[4096:].max() > 32, (fired[:4096].max(), fired[4096:].max())
        z = (x - model.b_dec) @ model.W_enc.T + model.b_enc
        for e in range(9000):
            kept = indices[e][indices[e] >= 0]
            want = np.flatnonzero(z[e] > 0)
            if model.selection == "example":
                want = np.sort(want[np.argsort(-z[e][want], kind="stable")[:3]])
            np.testing.assert_array_equal(kept, want)
            np.testing.assert_allclose(values[e][: len(kept)], z[e][kept], rtol=1e-5, atol=1e-6)
            assert np.all(values[e][len(kept):] == 0) and np.all(indices[e][len(kept):] == -1)
        # A Fortran-order X gives the same codes.
        f_indices, f_values = model.encode(np.asfortranarray(x))
        np.testing.assert_array_equal(f_indices, indices)
        np.testing.assert_array_equal(f_values, values)


def test_files_and_folders_round_trip(tmp_path):
    _, x = planted(m=300)
    model, _ = sae.train_topk(x, 20, 2, epochs=1, batch_size=100)
    model.save(tmp_path / "topk.safetensors")
    loaded = sae.load(tmp_path / "topk.safetensors")
    assert isinstance(loaded, sae.TopKModel)
    np.testing.assert_array_equal(loaded.W_dec, model.W_dec)
    for fmt in ("saelens", "sparsify"):
        model.export(tmp_path / fmt, format=fmt)
        back = sae.TopKModel.import_folder(tmp_path / fmt, format=fmt)
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            np.testing.assert_array_equal(getattr(back, name), getattr(model, name))
    safetensors = pytest.importorskip("safetensors.numpy")
    tensors = safetensors.load_file(str(tmp_path / "saelens" / "sae_weights.safetensors"))
    np.testing.assert_array_equal(tensors["W_enc"], model.W_enc.T)


def test_bad_arguments_raise_named_errors():
    _, x = planted(m=100)
    with pytest.raises(sae.InvalidInputError, match="k"):
        sae.train_topk(x, 8, 9)
    with pytest.raises(sae.InvalidInputError, match="optimizer"):
        sae.train_topk(x, 8, 2, optimizer="lbfgs")
    model, _ = sae.train_topk(x, 8, 2, epochs=1)
    with pytest.raises(sae.InvalidInputError, match="n_visible"):
        model.encode(np.zeros((3, 5), dtype=np.float32))
    with pytest.raises(sae.InvalidInputError, match="format"):
        model.export("nowhere", format="onnx")


def test_the_learning_rate_follows_its_schedule_and_bad_schedules_are_named():
    _, x = planted(m=2000)
    constant, _ = sae.train_topk(x, 16, 2, epochs=3, batch_size=256)
    scheduled, _ = sae.train_topk(
        x, 16, 2, epochs=3, batch_size=256, lr_warmup=8, lr_decay="cosine", lr_decay_start=0.5
    )
    assert not np.array_equal(constant.W_dec, scheduled.W_dec)
    # A decay that starts at the end of a run changes nothing; a warm-up of one step is none.
    same, _ = sae.train_topk(x, 16, 2, epochs=3, batch_size=256, lr_warmup=1, lr_decay="linear", lr_decay_start=0.999)
    np.testing.assert_array_equal(constant.W_dec, same.W_dec)
    with pytest.raises(sae.InvalidInputError, match="lr_decay"):
        sae.train_topk(x, 16, 2, epochs=1, lr_decay="exponential")
    with pytest.raises(sae.InvalidInputError, match="lr_decay_start"):
        sae.train_topk(x, 16, 2, epochs=1, lr_decay="linear", lr_decay_start=1.0)


def test_a_k_sparse_autoencoder_has_tied_linear_units_and_encodes_with_more_latents(tmp_path):
    _, x = planted(m=2000)
    model, epochs = sae.train_topk(
        x, 48, 3, architecture="k-sparse", k_start=12, epochs=6, batch_size=100, resample_every=20, dead_after=500
    )
    assert (model.units, model.tied) == ("linear", True)
    assert "k-sparse" in repr(model)
    np.testing.assert_array_equal(model.W_enc, model.W_dec)
    # Linear units fill every slot: L0 is the scheduled k, 3 after the first half.
    assert epochs[0]["l0"] > 3 and epochs[-1]["l0"] == 3
    assert epochs[-1]["fvu"] < epochs[0]["fvu"]
    # The formula, in numpy: the 9 largest of z = W (x − b_dec) + b_enc, whatever their sign.
    indices, values = model.encode(x[:200], k=9)
    assert indices.shape == (200, 9) and (indices >= 0).all()
    z = (x[:200] - model.b_dec) @ model.W_enc.T + model.b_enc
    for e in range(200):
        assert set(indices[e]) == set(np.argsort(-z[e], kind="stable")[:9])
        np.testing.assert_allclose(values[e], z[e][indices[e]], rtol=1e-5, atol=1e-6)
    model.save(tmp_path / "k-sparse.safetensors")
    loaded = sae.load(tmp_path / "k-sparse.safetensors")
    assert (loaded.units, loaded.tied, loaded.k) == ("linear", True, 3)
    with pytest.raises(sae.InvalidInputError, match="linear"):
        model.export(tmp_path / "saelens")
    with pytest.raises(sae.InvalidInputError, match="architecture"):
        sae.train_topk(x, 48, 3, architecture="gated")
    with pytest.raises(sae.InvalidInputError, match="resample_every"):
        sae.train_topk(x, 48, 3, resample_every=0)
    with pytest.raises(sae.InvalidInputError, match="dead_after"):
        sae.train_topk(x, 48, 3, dead_after=100)
    with pytest.raises(sae.InvalidInputError, match="k = 49: from 1"):
        model.encode(x, k=49)
    assert model.pre_encoder_bias


def test_a_batch_topk_model_keeps_k_per_example_on_average_and_encodes_by_its_threshold(tmp_path):
    _, x = planted(m=4000)
    model, epochs = sae.train_topk(x, 64, 2, architecture="batch-topk", epochs=10, batch_size=100)
    assert model.selection == "batch" and "BatchTopK" in repr(model)
    assert epochs[-1]["l0"] == 2 and model.threshold > 0
    # The formula, in numpy: every latent whose z = W_enc (x − b_dec) + b_enc exceeds the
    # threshold, as many as there are.
    indices, values = model.encode(x[:300])
    z = (x[:300] - model.b_dec) @ model.W_enc.T + model.b_enc
    for e in range(300):
        kept = indices[e][indices[e] >= 0]
        np.testing.assert_array_equal(kept, np.flatnonzero(z[e] > model.threshold))
        np.testing.assert_allclose(values[e][: len(kept)], z[e][kept], rtol=1e-5, atol=1e-6)
    assert abs(model.metrics(x)["l0"] - 2) < 0.5
    with pytest.raises(sae.InvalidInputError, match="threshold"):
        model.encode(x, k=3)
    model.export(tmp_path / "saelens")
    back = sae.TopKModel.import_folder(tmp_path / "saelens")
    assert (back.selection, back.k) == ("batch", 2) and back.threshold == pytest.approx(model.threshold, rel=1e-6)
    with pytest.raises(sae.InvalidInputError, match="threshold"):
        model.export(tmp_path / "sparsify", format="sparsify")


def test_a_relu_sparse_autoencoder_keeps_every_positive_latent_and_its_penalty_makes_them_few():
    _, x = planted(n=16, atoms=24, m=3000)
    model, epochs = sae.train_topk(x, 48, architecture="relu", l1_coefficient=0.2, epochs=10, batch_size=100)
    assert model.selection == "all" and "ReLU" in repr(model)
    assert epochs[-1]["l0"] < epochs[0]["l0"]
    indices, values = model.encode(x[:200])
    z = (x[:200] - model.b_dec) @ model.W_enc.T + model.b_enc
    for e in range(200):
        kept = indices[e][indices[e] >= 0]
        np.testing.assert_array_equal(kept, np.flatnonzero(z[e] > 0))
        np.testing.assert_allclose(values[e][: len(kept)], z[e][kept], rtol=1e-5, atol=1e-6)
    with pytest.raises(sae.InvalidInputError, match="l1_coefficient"):
        sae.train_topk(x, 48, 4, architecture="relu", l1_coefficient=0.2)
    with pytest.raises(sae.InvalidInputError, match="k_start"):
        sae.train_topk(x, 48, architecture="relu", l1_coefficient=0.2, k_start=4)
    with pytest.raises(sae.InvalidInputError, match="linear"):
        sae.train_topk(x, 48, 3, architecture="k-sparse", l1_coefficient=0.2, epochs=1)
    with pytest.raises(sae.InvalidInputError, match="needs l1_coefficient"):
        sae.train_topk(x, 48, architecture="relu")
    with pytest.raises(sae.InvalidInputError, match="needs k"):
        sae.train_topk(x, 48)


def test_held_out_rows_are_measured_after_every_epoch_as_the_models_metrics():
    _, x = planted(n=16, atoms=24, m=3500)
    train, held_out = x[:3000], x[3000:]
    model, epochs = sae.train_topk(train, 48, 2, epochs=3, batch_size=100, held_out=held_out)
    assert all("held_out" in e for e in epochs)
    assert epochs[-1]["held_out"]["fvu"] < epochs[0]["held_out"]["fvu"]
    assert epochs[-1]["held_out"]["fvu"] == pytest.approx(model.metrics(held_out, chunk=100)["fvu"], rel=1e-12)
    with pytest.raises(sae.InvalidInputError, match="held_out"):
        sae.train_topk(train, 48, 2, epochs=1, held_out=held_out[:, :5])


def test_early_stopping_returns_the_model_of_the_lowest_held_out_fvu():
    # Few rows, many latents, a large rate: the held-out FVU turns up and the run stops.
    _, x = planted(n=16, atoms=24, m=1150, seed=17)
    train, held_out = x[:150], x[150:]
    model, epochs = sae.train_topk(
        train, 96, 4, epochs=80, batch_size=50, learning_rate=3e-2, held_out=held_out, early_stopping=3
    )
    fvu = [e["held_out"]["fvu"] for e in epochs]
    lowest = int(np.argmin(fvu))
    assert len(epochs) == lowest + 1 + 3 < 80
    assert [e["chosen"] for e in epochs] == [i == lowest for i in range(len(epochs))]
    assert model.metrics(held_out, chunk=50)["fvu"] == pytest.approx(fvu[lowest], rel=1e-12)
    with pytest.raises(sae.InvalidInputError, match="early_stopping"):
        sae.train_topk(train, 96, 4, epochs=2, early_stopping=3)


def test_a_run_resumed_from_its_checkpoint_takes_the_uninterrupted_runs_steps(tmp_path):
    _, x = planted(m=3000)
    options = dict(batch_size=256, normalize_inputs=True)
    straight, straight_epochs = sae.train_topk(x, 32, 3, epochs=4, **options)
    # Two epochs checkpointed, then two more from the checkpoint (a run whose rate, k and
    # resampling do not depend on its length may grow).
    checkpoint = tmp_path / "run.ckpt"
    sae.train_topk(x, 32, 3, epochs=2, checkpoint=checkpoint, checkpoint_every=5, **options)
    resumed, epochs = sae.train_topk(x, 32, 3, epochs=4, resume=checkpoint, **options)
    np.testing.assert_array_equal(resumed.W_dec, straight.W_dec)
    assert [e["epoch"] for e in epochs] == [3, 4] and epochs[-1]["fvu"] == straight_epochs[-1]["fvu"]
    with pytest.raises(sae.ModelFileError, match="topk.option.batch_size"):
        sae.train_topk(x, 32, 3, epochs=4, resume=checkpoint, **{**options, "batch_size": 128})
    with pytest.raises(sae.InvalidInputError, match="checkpoint_every"):
        sae.train_topk(x, 32, 3, checkpoint=checkpoint, checkpoint_every=0, epochs=1)


def test_a_checkpoint_that_cannot_be_written_is_raised_naming_it_with_the_model_of_that_moment(tmp_path):
    _, x = planted(m=500)
    missing = tmp_path / "no-such-folder" / "run.ckpt"
    with pytest.raises(sae.FileAccessError, match="no-such-folder/run.ckpt") as raised:
        sae.train_topk(x, 32, 3, epochs=2, batch_size=100, checkpoint=missing, checkpoint_every=1)
    assert not missing.parent.exists()
    # The first checkpoint (after one step) failed: the run stopped there, its model kept.
    model, epochs = raised.value.model, raised.value.epochs
    assert isinstance(model, sae.TopKModel) and model.W_dec.shape == (32, x.shape[1])
    assert epochs == []
    indices, values = model.encode(x[:10])
    assert indices.shape == values.shape == (10, 3)

