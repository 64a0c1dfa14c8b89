"""The PyTorch run beside `sae train-vae`: the same architecture (784-400-20-400-784, ReLU,
Bernoulli decoder on MNIST's intensities), the same optimiser (Adam 1e-3, minibatches of 128,
10 epochs), PyTorch's own initialisation and sampling; prints the test set's -ELBO per image
(one sample of z per image) and the training time.

    python3 benches/peers/vae_torch.py [../shared/datasets/mnist] [epochs] [seed]
"""
import gzip
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def images(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    count, rows, cols = (int.from_bytes(data[i : i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(data, np.uint8, offset=16).reshape(count, rows * cols).astype(np.float32) / 255.0


class Vae(nn.Module):
    def __init__(self, n=784, h=400, d=20):
        super().__init__()
        self.encoder, self.latent = nn.Linear(n, h), nn.Linear(h, 2 * d)
        self.decoder, self.output = nn.Linear(d, h), nn.Linear(h, n)
        self.d = d

    def forward(self, x):
        mean, log_variance = self.latent(F.relu(self.encoder(x))).split(self.d, dim=1)
        z = mean + torch.exp(0.5 * log_variance) * torch.randn_like(mean)
        logits = self.output(F.relu(self.decoder(z)))
        reconstruction = F.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + log_variance - mean.pow(2) - log_variance.exp())
        return reconstruction, kl


def main():
    folder = sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/mnist"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 10
    torch.manual_seed(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    train = torch.from_numpy(images(f"{folder}/train-images-idx3-ubyte.gz"))
    test = torch.from_numpy(images(f"{folder}/t10k-images-idx3-ubyte.gz"))
    model = Vae()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for epoch in range(epochs):
        total = 0.0
        for batch in torch.randperm(len(train)).split(128):
            x = train[batch]
            reconstruction, kl = model(x)
            loss = (reconstruction + kl) / len(x)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            total += loss.item() * len(x)
        print(f"epoch {epoch + 1:3}: train -ELBO {total / len(train):.2f}  {time.perf_counter() - start:.1f} s", flush=True)
    with torch.no_grad():
        reconstruction, kl = model(test)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads: {epochs} epochs in "
          f"{time.perf_counter() - start:.1f} s; test -ELBO {(reconstruction + kl).item() / len(test):.2f} "
          f"nats/image (reconstruction {reconstruction.item() / len(test):.2f}, KL {kl.item() / len(test):.2f})")


if __name__ == "__main__":
    main()
