"""The learning-rate range test (Smith 2017, "Cyclical Learning Rates for Training Neural Networks",
section 3.3): train one trial's model for a few hundred steps while the learning rate grows
exponentially from ``start`` to ``end``, and read off where the loss falls fastest and where it
stops falling.

The loss is smoothed with a bias-corrected exponential moving average (β = 0.98, as in fast.ai's
finder), and the run stops once the smoothed loss exceeds 4x its minimum (the learning rate is
past use). Suggested range: from the learning rate of steepest descent of the smoothed loss (per
decade) up to a tenth of the one at its minimum (at the minimum the loss is already about to blow
up), or the decade below that tenth when the two cross.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.data import Rng, make_loader
from harness.engine.build import build, seed_everything
from harness.engine.step import Step, set_lr
from harness.errors import UsageError
from harness.registries import OPTIMIZERS
from harness.store.records import save_figure

BETA = 0.98
BLOW_UP = 4.0


@dataclass
class RangeTest:
    lrs: list[float]
    losses: list[float]  # raw batch losses
    smoothed: list[float]
    steepest: float  # lr where the smoothed loss falls fastest per decade
    minimum: float  # lr at the smoothed loss's minimum
    suggested: tuple[float, float]
    stopped_early: bool

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def range_test(config: dict[str, Any], seed: int, start: float = 1e-6, end: float = 10.0,
               steps: int = 200) -> RangeTest:
    """Run the test on a trial's resolved config (its optimizer, model, data and regularizers)."""
    if OPTIMIZERS.get(config["optimizer"]["name"]).caps.needs_closure:
        raise UsageError(f"lr-find: {config['optimizer']['name']} searches its own step length; no range to find")
    if not 0 < start < end:
        raise UsageError(f"lr-find: need 0 < start < end, got {start:g} and {end:g}")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = build(config, seed, device)
    seed_everything(seed)
    order, rng = torch.Generator().manual_seed(seed), Rng.seeded(seed, device)
    loader = make_loader(t.data, "train", t.batch_size, generator=order, mode=t.pipeline, device=device)
    factor = (end / start) ** (1 / max(steps - 1, 1))
    lrs, losses, smoothed, avg, best = [], [], [], 0.0, math.inf
    t.model.train()
    step = Step(t.model, t.optimizer, t.caps, t.loss)
    ratios = [g["lr"] / t.optimizer.param_groups[0]["lr"] for g in t.optimizer.param_groups]
    stopped = False
    while len(lrs) < steps and not stopped:
        for x, y in loader:
            lr = start * factor ** len(lrs)
            set_lr(t.optimizer, ratios, lr)  # groups keep their lr ratios (lr_scale, Muon's and AdamW's lrs)
            if t.transform is not None:
                x, y = t.transform(x, y, rng)
            value = step(x, y).item()
            lrs.append(lr)
            losses.append(value)
            avg = BETA * avg + (1 - BETA) * value
            smooth = avg / (1 - BETA ** len(lrs))
            smoothed.append(smooth)
            best = min(best, smooth)
            if not math.isfinite(smooth) or smooth > BLOW_UP * best:
                stopped = True
                break
            if len(lrs) == steps:
                break
    return _suggest(lrs, losses, smoothed, stopped)


def _suggest(lrs: list[float], losses: list[float], smoothed: list[float], stopped: bool) -> RangeTest:
    finite = [(lr, s) for lr, s in zip(lrs, smoothed) if math.isfinite(s)]
    x = np.log10([lr for lr, _ in finite])
    y = np.array([s for _, s in finite])
    low = int(np.argmin(y))
    minimum = float(10 ** x[low])
    # steepest descent per decade, before the minimum; skip the first tenth (the average is warming up)
    skip = max(1, len(x) // 10)
    slope = np.gradient(y, x) if len(x) > 2 else np.zeros_like(y)
    window = slice(skip, max(low, skip + 1))
    steepest = float(10 ** x[window][int(np.argmin(slope[window]))]) if low > skip else float(10 ** x[0])
    top = minimum / 10
    suggested = (steepest, top) if steepest < top else (top / 10, top)
    return RangeTest(lrs, losses, smoothed, steepest, minimum, suggested, stopped)


def plot(result: RangeTest, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.plot(result.lrs, result.losses, color="0.75", lw=0.8, label="batch loss")
    ax.plot(result.lrs, result.smoothed, color="C0", lw=1.8, label=f"smoothed (EMA β={BETA})")
    ax.axvspan(*result.suggested, color="C2", alpha=0.15, label="suggested range")
    ax.axvline(result.steepest, color="C2", ls="--", lw=1, label=f"steepest descent {result.steepest:.2g}")
    ax.axvline(result.minimum, color="C3", ls=":", lw=1, label=f"minimum {result.minimum:.2g}")
    finite = [s for s in result.smoothed if math.isfinite(s)]
    ax.set(xscale="log", xlabel="learning rate", ylabel="training loss", title=title,
           ylim=(min(finite) * 0.9, min(max(finite), BLOW_UP * min(finite)) * 1.1))
    ax.legend(fontsize=8)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
