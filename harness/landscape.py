"""Loss-landscape plots of one trial, after Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the
Loss Landscape of Neural Nets" (NeurIPS).

- 1-D: the linear path θ(α) = (1−α)·θ_init + α·θ_final (Goodfellow, Vinyals & Saxe 2015, the plot
  Li et al. §3 starts from), train and test loss and accuracy for α from −0.5 to 1.5; α = 0 and 1
  are always on the grid and give the two models exactly.
- 2-D: f(a, b) = L(θ_final + a·δ + b·η) over [−span, span]² (Li et al. §3), δ and η Gaussian
  directions with filter normalization (§4): each filter of a direction is rescaled to the norm of
  the same filter of θ_final, d_ij ← d_ij / ‖d_ij‖ · ‖θ_ij‖, a filter being one output row of a
  Linear weight or one output channel of a conv kernel. Directions of biases and normalization
  parameters (1-D tensors) are zero, as in the paper's plots. The directions come from a
  generator seeded by ``seed``, on the CPU, so a seed gives the same plane on any device.

Loss is the plain mean cross-entropy (no label smoothing, no penalty) with accuracy, in eval mode
(``harness.engine.evaluate``), on the first ``samples`` training and the first ``samples`` test
samples, in fixed order and without augmentation.

BatchNorm: the running statistics are recomputed at every point from the same training samples,
each sample weighing the same (the BN update of Izmailov et al. 2018, SWA). Kept from the final
model they would belong to other weights at every other point, θ_init included, and along a
filter-normalized direction, which moves each filter by up to its own norm, stale statistics turn
the scale invariance that filter normalization relies on into a steep wall: on the digits MLP with
BatchNorm, kept statistics made the slice's border/centre loss ratio 34 where recomputed ones give
12. Only the BatchNorm layers run in train mode for this (dropout stays off). Other buffers are the
final model's. Evaluation is in fp32 whatever the trial's training precision.

θ_init is the trial's initialization (``build`` from its seed). θ_final comes from
RESULTS/<suite>/weights/<trial_id>.pt (a run with ``save_weights: true``) or, without that file,
from training the trial again here; the JSON says which.
"""
from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from harness.components.averaging import recompute_batchnorm
from harness.data import make_loader
from harness.engine import evaluate, run_trial
from harness.engine.build import build
from harness.engine.checkpoint import load_weights
from harness.engine.loop import Checkpointing
from harness.errors import UsageError, first_line
from harness.store.records import save_figure
from harness.layout import weights_path
from harness.spec import COMPLETED, STOPPED, TrialSpec, json_safe
from harness.store import atomic_write

Batches = list[tuple[torch.Tensor, torch.Tensor]]
Params = list[torch.Tensor]


def final_weights(spec: TrialSpec, results: Path | None) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """The trial's final state_dict and where it came from: its stored weights, else a new training run."""
    stored = weights_path(results, spec.trial_id) if results is not None else None
    if stored is not None and stored.exists():
        try:
            state = load_weights(stored, spec.trial_id)
        except Exception as e:  # noqa: BLE001 - a torn or foreign file: say which, rather than retrain silently
            raise UsageError(f"landscape: cannot read {stored} ({first_line(e)}); remove it to train "
                             "the trial again") from None
        return state, {"source": "stored", "path": str(stored)}
    with tempfile.TemporaryDirectory(prefix="harness-landscape-") as tmp:
        keep = Path(tmp) / "weights.pt"
        record = run_trial(spec, checkpointing=Checkpointing(path=Path(tmp) / "ckpt.pt", weights=keep))
        # a stopped rung (budget.stop_after) has final weights all the same; diverged or failed ones do not
        if record.status not in (COMPLETED, STOPPED) or not keep.exists():
            raise UsageError(f"landscape: training trial {spec.trial_id} again ended {record.status}"
                             + (f" ({record.reason})" if record.reason else "") + "; no final weights to plot")
        state = load_weights(keep, spec.trial_id)
    return state, {"source": "retrained", "status": record.status, "final": record.final}


def random_direction(final: dict[str, torch.Tensor], generator: torch.Generator) -> dict[str, torch.Tensor]:
    """A Gaussian direction with filter normalization (Li et al. §4); zero for 1-D tensors."""
    direction = {}
    for name, w in final.items():
        if w.dim() <= 1:
            direction[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=generator).to(w.device, w.dtype).reshape(w.shape[0], -1)
        scale = w.reshape(w.shape[0], -1).norm(dim=1) / (d.norm(dim=1) + 1e-10)  # 1e-10: a zero filter stays zero
        direction[name] = (d * scale[:, None]).reshape(w.shape)
    return direction


def _measure(model: nn.Module, train: Batches, test: Batches | None) -> tuple[float, ...]:
    recompute_batchnorm(model, train)
    return (*evaluate(model, train), *(evaluate(model, test) if test is not None else ()))


@torch.inference_mode()
def interpolate(model: nn.Module, params: Params, init: Params, final: Params, alphas: list[float],
                train: Batches, test: Batches) -> dict[str, list[float]]:
    """Train and test loss and accuracy of θ(α) = (1−α)·init + α·final, written into ``params``."""
    rows = []
    for alpha in alphas:
        for p, a, b in zip(params, init, final):
            p.copy_(a).mul_(1 - alpha).add_(b, alpha=alpha)  # exactly init at α = 0 and final at α = 1
        rows.append(_measure(model, train, test))
    columns = list(zip(*rows))
    return {"alpha": list(alphas), "train_loss": list(columns[0]), "train_acc": list(columns[1]),
            "test_loss": list(columns[2]), "test_acc": list(columns[3])}


@torch.inference_mode()
def plane(model: nn.Module, params: Params, final: Params, dx: Params, dy: Params, coords: list[float],
          train: Batches) -> list[list[float]]:
    """Train loss of final + a·dx + b·dy; row j is b = coords[j], column i is a = coords[i]."""
    grid = []
    for b in coords:
        row = []
        for a in coords:
            for p, f, u, v in zip(params, final, dx, dy):
                p.copy_(f).add_(u, alpha=a).add_(v, alpha=b)
            row.append(_measure(model, train, None)[0])
        grid.append(row)
    return grid


def _alphas(low: float, high: float, points: int) -> list[float]:
    # rounded so that 0 and 1 land exactly (-0.5 + 30·0.05 is 1.0000000000000002), and always present
    grid = np.round(np.linspace(low, high, points), 12)
    return [float(a) for a in np.union1d(grid, [0.0, 1.0])]


def _coords(span: float, grid: int) -> list[float]:
    half = (grid - 1) / 2
    return [float(span * (i - half) / half) for i in range(grid)]  # symmetric: the centre of an odd grid is 0.0


def summarize(line: dict[str, list[float]], grid: list[list[float]]) -> dict[str, float]:
    """Loss at init and final, the path's worst point, and how the loss rises around the final point.

    ``barrier``: the largest excess of the train loss on α ∈ [0, 1] over the straight line between
    its ends (Frankle et al. 2020); 0 when the path never rises above that line.
    ``edge_over_centre``: mean train loss on the border of the 2-D slice over the loss at its centre
    (θ_final); larger is a sharper minimum at this span.
    """
    alpha, loss = np.array(line["alpha"]), np.array(line["train_loss"])
    start, end = loss[alpha == 0.0][0], loss[alpha == 1.0][0]
    inside = (alpha >= 0) & (alpha <= 1)
    excess = loss[inside] - ((1 - alpha[inside]) * start + alpha[inside] * end)
    z = np.array(grid)
    border = np.concatenate([z[0], z[-1], z[1:-1, 0], z[1:-1, -1]])
    return {"init_loss": float(start), "final_loss": float(end), "segment_max_loss": float(loss[inside].max()),
            "barrier": float(max(excess.max(), 0.0)), "edge_over_centre": float(border.mean() / end)}


def landscape(spec: TrialSpec, results: Path | None, out: Path, *, points: int = 41, grid: int = 21,
              span: float = 1.0, samples: int = 2048, seed: int = 0, alpha_range: tuple[float, float] = (-0.5, 1.5),
              batch: int = 1024) -> dict[str, Any]:
    """The 1-D path and 2-D slice of one trial: plots and data written to ``out``; a summary returned.
    ``results`` is the suite's results folder (its weights/ are used when they hold this trial)."""
    if points < 2 or grid < 2 or samples < 1 or batch < 1 or not span > 0 or not alpha_range[0] < alpha_range[1]:
        raise UsageError(f"landscape: need points >= 2, grid >= 2, samples >= 1, span > 0 and a rising α range; "
                         f"got points={points}, grid={grid}, samples={samples}, span={span:g}, α={alpha_range}")
    if spec.config["ensemble"]["members"] > 1:
        raise UsageError("landscape: an ensemble trial has no single model to plot (ensemble.members > 1)")
    state, source = final_weights(spec, results)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = build(spec.config, spec.seed, device)
    model = t.model
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        # a compiled model's weights are saved under its wrapper's prefix
        model.load_state_dict({k.removeprefix("_orig_mod."): v for k, v in state.items()})
    except RuntimeError as e:
        raise UsageError(f"landscape: the final weights do not fit trial {spec.trial_id}'s model: {e}") from None
    names = [n for n, _ in model.named_parameters()]
    params = [p for _, p in model.named_parameters()]
    theta_init = [init[n] for n in names]
    theta_final = [p.detach().clone() for p in params]
    train, test = (list(make_loader(t.data, split, batch, limit=samples, mode=t.pipeline, device=device))
                   for split in ("train", "test"))  # materialized once: every point reads the same tensors

    start = time.perf_counter()
    line = interpolate(model, params, theta_init, theta_final, _alphas(*alpha_range, points), train, test)
    line_s = time.perf_counter() - start
    generator = torch.Generator().manual_seed(seed)
    final_by_name = dict(zip(names, theta_final))
    dx, dy = (list(random_direction(final_by_name, generator).values()) for _ in range(2))
    coords = _coords(span, grid)
    start = time.perf_counter()
    losses = plane(model, params, theta_final, dx, dy, coords, train)
    plane_s = time.perf_counter() - start
    summary = summarize(line, losses)

    out = Path(out)
    title = f"{spec.suite}: {spec.label()} [{spec.trial_id}]"
    files = {"1d": plot_line(line, out / f"{spec.trial_id}-1d.png", title),
             "2d": plot_plane(coords, losses, out / f"{spec.trial_id}-2d.png", title),
             "json": out / f"{spec.trial_id}.json"}
    data = {
        "trial_id": spec.trial_id, "suite": spec.suite, "label": spec.label(), "seed": spec.seed,
        "config": spec.config, "weights": source, "device": str(device),
        "method": {"paper": "Li et al. 2018, Visualizing the Loss Landscape of Neural Nets",
                   "directions": "gaussian, filter-normalized; zero for 1-D tensors", "direction_seed": seed,
                   "batchnorm": "running statistics recomputed at every point from the training samples",
                   "loss": "mean cross-entropy, eval mode", "samples": {"train": sum(len(y) for _, y in train),
                                                                        "test": sum(len(y) for _, y in test)}},
        "summary": json_safe(summary),
        "line": json_safe(line),
        "plane": {"coords": coords, "train_loss": json_safe(losses)},
        "timing": {"line_s": line_s, "plane_s": plane_s, "points": len(line["alpha"]), "plane_points": grid * grid},
    }
    atomic_write(files["json"], json.dumps(data, indent=1))
    return {"trial_id": spec.trial_id, **summary, "weights": source["source"],
            "files": {k: str(v) for k, v in files.items()}}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only; no display on a cluster node
    import matplotlib.pyplot as plt

    return plt


def plot_line(line: dict[str, list[float]], path: Path, title: str) -> Path:
    plt = _pyplot()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    for split, colour in (("train", "C0"), ("test", "C1")):
        top.plot(line["alpha"], line[f"{split}_loss"], color=colour, marker=".", lw=1.5, label=split)
        bottom.plot(line["alpha"], line[f"{split}_acc"], color=colour, marker=".", lw=1.5, label=split)
    for ax in (top, bottom):
        ax.axvline(0, color="0.4", ls="--", lw=1)
        ax.axvline(1, color="C3", ls="--", lw=1)
        ax.grid(alpha=0.3)
    top.text(0, 1.01, "init", transform=top.get_xaxis_transform(), ha="center", fontsize=8)
    top.text(1, 1.01, "final", transform=top.get_xaxis_transform(), ha="center", fontsize=8, color="C3")
    # losses off the segment grow by orders of magnitude: a log axis keeps the minimum readable
    top.set(yscale="log", ylabel="loss (cross-entropy)", title=title + "\n")
    bottom.set(xlabel="α   (θ = (1−α)·θ_init + α·θ_final)", ylabel="accuracy", ylim=(-0.02, 1.02))
    top.legend(fontsize=8)
    return _save(fig, path)


def plot_plane(coords: list[float], losses: list[list[float]], path: Path, title: str) -> Path:
    from matplotlib.colors import LogNorm

    plt = _pyplot()
    z = np.ma.masked_invalid(np.array(losses))
    low, high = (max(float(z.min()), 1e-8), float(z.max())) if z.count() else (1.0, 1.0)
    fig, ax = plt.subplots(figsize=(6, 5.2))
    if high > low * 1.001:  # else a flat (or all non-finite) slice: no contours to draw
        # log-spaced levels: the basin and the walls around it differ by orders of magnitude
        levels = np.geomspace(low, high, 24)
        filled = ax.contourf(coords, coords, np.clip(z, low, None), levels=levels, norm=LogNorm(low, high),
                             cmap="viridis")
        ax.contour(coords, coords, np.clip(z, low, None), levels=levels[::3], colors="k", linewidths=0.4, alpha=0.6)
        fig.colorbar(filled, ax=ax, label="train loss", format="%.3g")
    ax.plot(0, 0, marker="*", ls="none", color="C3", ms=14, mec="w", label="final weights")
    ax.set(xlabel="direction δ (filter-normalized)", ylabel="direction η (filter-normalized)", title=title,
           aspect="equal")
    ax.legend(fontsize=8, loc="upper right")
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    plt = _pyplot()
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
