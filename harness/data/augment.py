"""Batched, on-device augmentation with per-sample randomness from a seeded stream.

Every function takes a batch of normalized images ``(N, C, H, W)`` and draws one set of random
parameters per image (not one per batch) from ``Rng.device``, so a batch of 512 images costs a
handful of tensor operations instead of 512 Python-level transform calls. Scalars drawn once per
batch (mixup's λ) come from ``Rng.host``. The same seed gives the same draws on re-run.

Padding and erased regions are 0, which after normalization is the training mean: the network
sees "no information" rather than a black border (DeVries & Taylor 2017 erase after normalizing).
The regularizers that expose these in a suite are in ``harness/components/regularizers.py``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import torch


@dataclass
class Rng:
    """The random streams of one data pipeline: per-sample draws on the device, scalars on the host."""

    device: torch.Generator
    host: np.random.Generator

    @classmethod
    def seeded(cls, seed: int, device: torch.device | str = "cpu", stream: int = 0) -> "Rng":
        """Independent of the global RNG, so dropout or init drawing more numbers changes nothing here.
        ``stream`` separates processes of a distributed trial (their rank)."""
        import torch
        words = np.random.SeedSequence([seed % 2**63, stream, 0x5EED]).generate_state(2, np.uint64)
        g = torch.Generator(device=torch.device(device)).manual_seed(int(words[0]) % 2**63)
        return cls(g, np.random.default_rng(int(words[1])))

    def state(self) -> dict[str, Any]:
        return {"device": self.device.get_state(), "host": self.host.bit_generator.state}

    def set_state(self, state: dict[str, Any]) -> None:
        self.device.set_state(state["device"])
        self.host.bit_generator.state = state["host"]


def _images(x: torch.Tensor, name: str) -> None:
    if x.dim() != 4:
        raise ValueError(f"{name} needs image batches (N, C, H, W), got shape {tuple(x.shape)}")


def _randint(high: int, n: int, rng: Rng, device: torch.device) -> torch.Tensor:
    import torch
    return torch.randint(0, high, (n,), generator=rng.device, device=device)


def random_crop(x: torch.Tensor, pad: int, rng: Rng) -> torch.Tensor:
    """Per-sample translation: zero-pad by ``pad`` and cut the original size at a random offset.

    The (2·pad+1)² candidate windows are a strided view of the padded batch (``unfold``, no
    copy); one advanced index picks each image's window.
    """
    import torch
    import torch.nn.functional as F
    _images(x, "random crop")
    n, _, h, w = x.shape
    windows = F.pad(x, (pad, pad, pad, pad)).unfold(2, h, 1).unfold(3, w, 1)  # (n, c, 2p+1, 2p+1, h, w)
    oy, ox = _randint(2 * pad + 1, n, rng, x.device), _randint(2 * pad + 1, n, rng, x.device)
    return windows[torch.arange(n, device=x.device), :, oy, ox]


def random_flip(x: torch.Tensor, rng: Rng) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    import torch
    _images(x, "flip")
    chosen = (torch.rand(len(x), generator=rng.device, device=x.device) < 0.5).nonzero().squeeze(1)
    out = x.clone()
    out[chosen] = x[chosen].flip(3)
    return out


def cutout(x: torch.Tensor, size: int, rng: Rng) -> torch.Tensor:
    """One ``size``×``size`` square per image set to 0, its centre uniform over the image, so the
    square is clipped at the borders (DeVries & Taylor 2017)."""
    import torch
    _images(x, "cutout")
    n, _, h, w = x.shape
    top = _randint(h, n, rng, x.device).unsqueeze(1) - size // 2
    left = _randint(w, n, rng, x.device).unsqueeze(1) - size // 2
    rows = torch.arange(h, device=x.device).unsqueeze(0)
    cols = torch.arange(w, device=x.device).unsqueeze(0)
    in_rows = (rows >= top) & (rows < top + size)  # (n, h)
    in_cols = (cols >= left) & (cols < left + size)  # (n, w)
    keep = ~(in_rows.unsqueeze(2) & in_cols.unsqueeze(1))  # (n, h, w)
    return x * keep.unsqueeze(1)


def _uniform(n: int, low: float, high: float, rng: Rng, device: torch.device) -> torch.Tensor:
    import torch
    return torch.empty(n, device=device).uniform_(low, high, generator=rng.device)


def brightness(x: torch.Tensor, amount: float, rng: Rng) -> torch.Tensor:
    """Add one offset per image, uniform in ±amount (in units of the data's std after normalizing)."""
    return x + _uniform(len(x), -amount, amount, rng, x.device).view(-1, *[1] * (x.dim() - 1))


def contrast(x: torch.Tensor, amount: float, rng: Rng) -> torch.Tensor:
    """Scale each image around its own mean by a factor uniform in [1 − amount, 1 + amount]."""
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dims, keepdim=True)
    return (x - mean) * _uniform(len(x), 1 - amount, 1 + amount, rng, x.device).view_as(mean) + mean


def affine(x: torch.Tensor, rotate: float, translate: float, scale: float, shear: float, rng: Rng) -> torch.Tensor:
    """A random affine warp per image: rotation and shear in degrees, translation as a fraction of
    the size, scale in [1 − scale, 1 + scale]; bilinear, zero outside."""
    import torch
    import torch.nn.functional as F
    _images(x, "affine")
    n = len(x)
    u = lambda lo, hi: _uniform(n, lo, hi, rng, x.device)  # noqa: E731
    angle, sh = torch.deg2rad(u(-rotate, rotate)), torch.deg2rad(u(-shear, shear))
    s = u(1 - scale, 1 + scale)
    tx, ty = u(-translate, translate) * 2, u(-translate, translate) * 2  # grid units span [-1, 1]
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([
        torch.stack([cos / s, (-sin + torch.tan(sh) * cos) / s, tx], 1),
        torch.stack([sin / s, (cos + torch.tan(sh) * sin) / s, ty], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, padding_mode="zeros", align_corners=False)


def pca_basis(train_x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eigenvalues and eigenvectors of the covariance of pixel colours over (a slice of) the training set."""
    import torch
    pixels = train_x[:2000].float().permute(0, 2, 3, 1).reshape(-1, train_x.shape[1]).double()
    values, vectors = torch.linalg.eigh(torch.cov(pixels.T))
    return values.clamp_min(0).float(), vectors.float()


def pca_lighting(x: torch.Tensor, basis: tuple[torch.Tensor, torch.Tensor], sigma: float, rng: Rng) -> torch.Tensor:
    """Add Σᵢ αᵢλᵢpᵢ to every pixel of an image, αᵢ ~ N(0, σ²) per image (Krizhevsky et al. 2012, 4.1)."""
    import torch
    values, vectors = basis[0].to(x.device), basis[1].to(x.device)
    alpha = torch.randn(len(x), len(values), generator=rng.device, device=x.device) * sigma
    return x + ((alpha * values) @ vectors.T).view(len(x), -1, 1, 1)


def soft_targets(y: torch.Tensor, num_classes: int) -> torch.Tensor:
    import torch.nn.functional as F
    return y if y.dim() > 1 else F.one_hot(y, num_classes).float()


def mixup(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int, rng: Rng) -> tuple[torch.Tensor, torch.Tensor]:
    """λ ~ Beta(α, α) per batch; x̃ = λx_i + (1 − λ)x_j and the same for one-hot targets (Zhang et al. 2018)."""
    import torch
    lam = float(rng.host.beta(alpha, alpha))
    perm = torch.randperm(len(x), generator=rng.device, device=x.device)
    soft = soft_targets(y, num_classes)
    return lam * x + (1 - lam) * x[perm], lam * soft + (1 - lam) * soft[perm]


def cutmix(x: torch.Tensor, y: torch.Tensor, alpha: float, num_classes: int, rng: Rng) -> tuple[torch.Tensor, torch.Tensor]:
    """A box of area ≈ (1 − λ), λ ~ Beta(α, α), pasted from a shuffled batch; targets mixed by the box's
    actual area after clipping at the border (Yun et al. 2019)."""
    import torch
    _images(x, "cutmix")
    _, _, h, w = x.shape
    lam = float(rng.host.beta(alpha, alpha))
    cut_h, cut_w = int(h * (1 - lam) ** 0.5), int(w * (1 - lam) ** 0.5)
    cy, cx = int(rng.host.integers(h)), int(rng.host.integers(w))
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2 + cut_h % 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2 + cut_w % 2, w)
    perm = torch.randperm(len(x), generator=rng.device, device=x.device)
    mixed = x.clone()
    mixed[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
    kept = 1 - (y1 - y0) * (x1 - x0) / (h * w)
    soft = soft_targets(y, num_classes)
    return mixed, kept * soft + (1 - kept) * soft[perm]
