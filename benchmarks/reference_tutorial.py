"""The classic tutorial loop, as a reference to race against: TensorFlow's DCGAN tutorial, translated to PyTorch.

https://www.tensorflow.org/tutorials/generative/dcgan, layer for layer and with Keras' defaults
(Glorot-uniform weights, LeakyReLU slope 0.3, batch-norm momentum 0.99 and epsilon 1e-3, 'same'
padding), trained the way tutorials train: a per-item Dataset (PIL image -> ToTensor -> Normalize)
(torchvision's ToTensor and Normalize, written out so that torchvision need not be installed) behind a shuffling DataLoader, batch 256, binary cross-entropy on logits, Adam 1e-4 for both
networks, G's and D's losses from the same fakes in one step (the tutorial's two GradientTapes),
and `.item()` on both losses every step for the log. Nothing here is used by counterfeit itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

NOISE_DIM = 100
BATCH_SIZE = 256


class PerItemImages(TorchDataset):
    """torchvision-style dataset: one uint8 image at a time through PIL and the transform."""

    def __init__(self, images_uint8: np.ndarray):
        self.images = images_uint8  # (N, 28, 28)

    @staticmethod
    def transform(img: Image.Image) -> torch.Tensor:
        """ToTensor() then Normalize((0.5,), (0.5,)), as torchvision does them."""
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).unsqueeze(0).float().div(255)  # (1, 28, 28) in [0, 1]
        return (x - 0.5) / 0.5

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform(Image.fromarray(self.images[i], mode="L"))  # (1, 28, 28) in [-1, 1]


def _bn(c: int, dims: int) -> nn.Module:
    bn = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
    return bn(c, eps=1e-3, momentum=0.01)  # Keras: momentum 0.99 of the old value, epsilon 1e-3


def _up(c_in: int, c_out: int, stride: int, bias: bool = False) -> nn.Module:
    """Keras Conv2DTranspose(kernel 5, padding='same'): output side = stride x input side."""
    return nn.ConvTranspose2d(c_in, c_out, 5, stride, padding=2, output_padding=stride - 1, bias=bias)


class TutorialGenerator(nn.Module):
    """Dense 7*7*256, BN, LeakyReLU; ConvT 128 (s1), 64 (s2), 1 (s2, tanh), each 5x5 with BN + LeakyReLU between."""

    def __init__(self):
        super().__init__()
        self.dense = nn.Sequential(nn.Linear(NOISE_DIM, 7 * 7 * 256, bias=False), _bn(7 * 7 * 256, 1), nn.LeakyReLU(0.3))
        self.convs = nn.Sequential(
            _up(256, 128, 1), _bn(128, 2), nn.LeakyReLU(0.3),  # (N, 128, 7, 7)
            _up(128, 64, 2), _bn(64, 2), nn.LeakyReLU(0.3),  # (N, 64, 14, 14)
            _up(64, 1, 2), nn.Tanh(),  # (N, 1, 28, 28)
        )  # fmt: skip

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.convs(self.dense(z).view(-1, 256, 7, 7))


class TutorialDiscriminator(nn.Module):
    """Conv 64 and 128 (5x5, stride 2, 'same') with LeakyReLU + Dropout 0.3, Flatten, Dense 1 (a logit)."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, 64, 5, 2, padding=2), nn.LeakyReLU(0.3), nn.Dropout(0.3),  # (N, 64, 14, 14)
            nn.Conv2d(64, 128, 5, 2, padding=2), nn.LeakyReLU(0.3), nn.Dropout(0.3),  # (N, 128, 7, 7)
            nn.Flatten(), nn.Linear(128 * 7 * 7, 1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)  # (N, 1)


def glorot_(module: nn.Module) -> None:
    """Keras' defaults: Glorot-uniform kernels, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def train_tutorial(images_uint8: np.ndarray, seconds: float, on_eval: Callable[[nn.Module, float, int], None], eval_every_s: float,
                   seed: int = 0, lr: float = 1e-4, betas: tuple[float, float] = (0.9, 0.999)) -> dict:  # fmt: skip
    """Train for `seconds` of training time; every `eval_every_s` call on_eval(G, train_seconds, images_seen) with the clock paused."""
    torch.manual_seed(seed)
    G, D = TutorialGenerator(), TutorialDiscriminator()
    glorot_(G), glorot_(D)
    opt_G, opt_D = torch.optim.Adam(G.parameters(), lr, betas, eps=1e-7), torch.optim.Adam(D.parameters(), lr, betas, eps=1e-7)
    bce = nn.BCEWithLogitsLoss()
    loader = DataLoader(PerItemImages(images_uint8), batch_size=BATCH_SIZE, shuffle=True)
    train_s, seen, next_eval, log = 0.0, 0, eval_every_s, []
    t = time.perf_counter()  # the clock runs through data loading too, and stops only while on_eval runs
    while train_s < seconds:
        for real in loader:
            z = torch.randn(real.shape[0], NOISE_DIM)
            fake = G(z)
            real_out, fake_out = D(real), D(fake)
            gen_loss = bce(fake_out, torch.ones_like(fake_out))
            disc_loss = bce(real_out, torch.ones_like(real_out)) + bce(fake_out, torch.zeros_like(fake_out))
            g_grads = torch.autograd.grad(gen_loss, list(G.parameters()), retain_graph=True)
            d_grads = torch.autograd.grad(disc_loss, list(D.parameters()))
            for p, g in zip([*G.parameters(), *D.parameters()], [*g_grads, *d_grads]):
                p.grad = g
            opt_G.step()
            opt_D.step()
            log.append((gen_loss.item(), disc_loss.item()))  # the tutorial's per-step logging: a host sync every step
            seen += real.shape[0]
            train_s += time.perf_counter() - t
            if train_s >= next_eval or train_s >= seconds:
                G.eval()
                with torch.no_grad():
                    on_eval(G, train_s, seen)
                G.train()
                next_eval += eval_every_s
            t = time.perf_counter()
            if train_s >= seconds:
                break
    return {"train_s": train_s, "images": seen, "last_losses": log[-1]}
