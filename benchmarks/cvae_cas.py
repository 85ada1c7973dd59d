"""Issue 5: would a conditional VAE's samples (better recall, blurrier) train a better fakes-only classifier than the GAN's?

    python benchmarks/cvae_cas.py EPOCHS BETA [THREADS]

A scratch conditional VAE built from the library's VAE parts: the Encoder sees the image plus 10 one-hot label planes,
the Decoder gets [z, one-hot label]; z 32, width 32, Adam 1e-3, batch 128, Bernoulli reconstruction + BETA * KL.
Then 60,000 balanced prior samples (noise seed 0) train augment-eval's classifier (fit_classifier, 2 epochs, batch
256, seed 0); prints real-test accuracy and per-class recall. Not a library model: it exists to answer the question.
"""

import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

try:
    import counterfeit  # noqa: F401
except ImportError:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
from counterfeit.data import load_dataset  # noqa: E402
from counterfeit.evaluator import fit_classifier, predict  # noqa: E402
from counterfeit.losses import gaussian_kl, reconstruction_loss  # noqa: E402
from counterfeit.models.autoencoders import Decoder, Encoder  # noqa: E402

epochs, beta = float(sys.argv[1]), float(sys.argv[2])
Z, W = 32, 32
torch.manual_seed(0)
train = load_dataset("fashion-mnist", "train", 28, 1, None)
test = load_dataset("fashion-mnist", "test", 28, 1, None)
x_all = train.x.float() / 127.5 - 1  # (60000, 1, 28, 28)
y_all = train.labels
enc = Encoder(Z, 28, 11, W, 512, variational=True)
dec = Decoder(Z + 10, 28, 1, W, 512)
opt = torch.optim.Adam([*enc.parameters(), *dec.parameters()], lr=1e-3)
steps = int(epochs * 60000 / 128)
t = time.time()
for step in range(steps):
    idx = torch.randint(60000, (128,))
    x, y = x_all[idx], y_all[idx]
    oh = F.one_hot(y, 10).float()  # (B, 10)
    mu, logvar = enc(torch.cat([x, oh[:, :, None, None].expand(-1, -1, 28, 28)], 1))
    z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
    loss = reconstruction_loss(dec.pre_tanh(torch.cat([z, oh], 1)), x) + beta * gaussian_kl(mu, logvar)
    opt.zero_grad()
    loss.backward()
    opt.step()
    if step % 500 == 0:
        print(step, steps, round(loss.item(), 2), f"{time.time() - t:.0f}s", flush=True)
dec.eval()
labels = torch.arange(60000) % 10
g = torch.Generator().manual_seed(0)
with torch.inference_mode():
    xs = torch.cat(
        [dec(torch.cat([torch.randn(2000, Z, generator=g), F.one_hot(labels[i : i + 2000], 10).float()], 1)) for i in range(0, 60000, 2000)]
    )
fakes = ((xs + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)
ev = fit_classifier(fakes, labels, 10, 2.0, 0, 256)
pred = predict(ev, test.x)[0].argmax(1)
acc = (pred == test.labels).double().mean().item()
per = [round((pred[test.labels == c] == c).double().mean().item(), 2) for c in range(10)]
print(f"cvae epochs {epochs} beta {beta}: CAS {acc:.4f} per-class {per} train {time.time() - t:.0f}s", flush=True)
