"""Report figures (seaborn style and palettes, matplotlib drawing).

- ``learning_curves``: mean over seeds with a 95% t-band, each seed's curve faint, one colour per
  value of the compared axis, one panel per column of the table (workload × other axes).
- ``step_losses``: the training loss every 16 steps with a moving average (step losses are noisy).
- ``final_metric``: box + strip plot of the final metric per group: every seed is a dot.
- ``heatmap``: the mean metric over two axes (e.g. lr × weight decay, optimizer × norm).
- ``sensitivity``: the metric against a numeric hyperparameter on a log axis, mean and 95% band.
- ``profiles``: Dolan-Moré performance profiles.

Bands are computed with pandas (t-intervals), not seaborn's bootstrap: a report of 10,000 trials
must take seconds.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

MAX_PANELS = 6  # columns of the table drawn as panels; more make figures too large to read
MAX_SEED_LINES = 40  # per panel; beyond that only the means and bands are drawn
MAX_DOTS = 300  # per panel of the final-metric plot; beyond that the boxes alone
sns.set_theme(style="whitegrid", context="paper")


def _palette(values: list[str]) -> dict[str, tuple]:
    return dict(zip(values, sns.color_palette("tab10" if len(values) <= 10 else "husl", len(values))))


def _band(frame: pd.DataFrame, keys: list[str], x: str, y: str) -> pd.DataFrame:
    """Mean and 95% t-interval of ``y`` at each ``x`` within each group of ``keys``."""
    g = frame.groupby([*keys, x], sort=True)[y]
    out = g.agg(["mean", "std", "count"]).reset_index()
    q = stats.t.ppf(0.975, np.maximum(out["count"] - 1, 1))
    half = np.where(out["count"] > 1, q * out["std"] / np.sqrt(out["count"]), np.nan)
    out["low"], out["high"] = out["mean"] - half, out["mean"] + half
    return out


def _save(fig: plt.Figure, path: Path) -> Path:
    # Spacing set by hand and the canvas cropped once by bbox_inches: tight_layout would lay
    # every text out a second time (a third of the report's time at 10,000 trials).
    fig.subplots_adjust(wspace=0.3, hspace=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _panels(frame: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The first MAX_PANELS table columns, and only their rows (filtered before any work on them)."""
    panels = list(dict.fromkeys(frame["column"].tolist()))[:MAX_PANELS]
    return panels, frame[frame["column"].isin(panels)]


def learning_curves(curves: pd.DataFrame, compare: str, path: Path,
                    metrics: tuple[str, ...] = ("train_loss", "val_acc")) -> Path | None:
    """``curves`` has one row per trial-epoch with ``column`` (the table column) and ``compare``."""
    metrics = tuple(m for m in metrics if m in curves and curves[m].notna().any())
    if curves.empty or not metrics:
        return None
    panels, data = _panels(curves)
    data = data.assign(**{compare: data[compare].astype(str)})
    colours = _palette(list(dict.fromkeys(data[compare])))
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(3.6 * len(panels), 2.7 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        for j, panel in enumerate(panels):
            ax, part = axes[i][j], data[data["column"] == panel]
            if part["trial_id"].nunique() <= MAX_SEED_LINES:
                for (value, _), seed_curve in part.groupby([compare, "trial_id"], sort=False):
                    ax.plot(seed_curve["epoch"], seed_curve[metric], color=colours[value], alpha=0.2, lw=0.8)
            band = _band(part, [compare], "epoch", metric)
            for value, b in band.groupby(compare, sort=False):
                ax.plot(b["epoch"], b["mean"], color=colours[value], lw=1.8, label=value, marker="o", ms=2.5)
                ax.fill_between(b["epoch"], b["low"], b["high"], color=colours[value], alpha=0.2, lw=0)
            if metric.endswith("loss") and (part[metric] > 0).all():
                ax.set_yscale("log")
            ax.set_ylabel(metric if j == 0 else "")
            if i == 0:
                ax.set_title(panel, fontsize=9)
            if i == len(metrics) - 1:
                ax.set_xlabel("epoch")
    axes[0][-1].legend(title=compare, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)


def step_losses(steps: pd.DataFrame, compare: str, path: Path, window: int = 10) -> Path | None:
    """``steps``: rows of (trial_id, column, compare, step, loss); a moving average over ``window`` points."""
    if steps.empty:
        return None
    panels, data = _panels(steps)
    data = data.assign(**{compare: data[compare].astype(str)}).sort_values(["trial_id", "step"], kind="stable")
    # moving average within each trial from cumulative sums: vectorized over all trials at once
    by_trial = data.groupby("trial_id", sort=False)
    total = by_trial["loss"].cumsum()
    lagged = total.groupby(data["trial_id"], sort=False).shift(window).fillna(0.0)
    data["smooth"] = (total - lagged) / np.minimum(by_trial.cumcount() + 1, window)
    colours = _palette(list(dict.fromkeys(data[compare])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.7), squeeze=False)
    for j, panel in enumerate(panels):
        ax, part = axes[0][j], data[data["column"] == panel]
        band = _band(part, [compare], "step", "smooth")
        for value, b in band.groupby(compare, sort=False):
            ax.plot(b["step"], b["mean"], color=colours[value], lw=1.5, label=value)
            ax.fill_between(b["step"], b["low"], b["high"], color=colours[value], alpha=0.2, lw=0)
        if (part["loss"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"train loss (moving avg of {window})" if j == 0 else "")
    axes[0][-1].legend(title=compare, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)


def final_metric(runs: pd.DataFrame, compare: str, metric: str, path: Path) -> Path | None:
    """Box plot per group with every completed seed as a dot."""
    panels, data = _panels(runs.dropna(subset=[metric]))
    data = data.assign(**{compare: data[compare].astype(str)})
    if data.empty:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.5, 0.6 * data[compare].nunique() + 2) * len(panels), 3.2),
                             squeeze=False, sharey=True)
    order = list(dict.fromkeys(data[compare]))
    for j, panel in enumerate(panels):
        ax, part = axes[0][j], data[data["column"] == panel]
        sns.boxplot(data=part, x=compare, y=metric, order=order, ax=ax, color="0.9", fliersize=0, width=0.5)
        if len(part) <= MAX_DOTS:
            sns.stripplot(data=part, x=compare, y=metric, order=order, ax=ax, hue=compare, palette=_palette(order),
                          legend=False, size=4, jitter=0.15)
        ax.set_title(panel, fontsize=9)
        ax.tick_params(axis="x", rotation=30)
        ax.set_xlabel("")
    return _save(fig, path)


def heatmap(summary: pd.DataFrame, rows: str, cols: str, metric: str, path: Path) -> Path | None:
    """``summary``: one row per (rows, cols) value pair with its ``mean``."""
    grid = summary.pivot_table(index=rows, columns=cols, values="mean", aggfunc="mean", sort=False)
    if grid.empty or min(grid.shape) < 2:
        return None
    fig, ax = plt.subplots(figsize=(1.1 * grid.shape[1] + 2.5, 0.5 * grid.shape[0] + 1.5))
    sns.heatmap(grid, annot=True, fmt=".3f", cmap="viridis", ax=ax, cbar_kws={"label": metric})
    return _save(fig, path)


def sensitivity(runs: pd.DataFrame, axis: str, hue: str | None, metric: str, path: Path) -> Path | None:
    """The metric against a numeric axis on a log scale, per value of ``hue``, mean and 95% band."""
    data = runs.assign(_x=pd.to_numeric(runs[axis], errors="coerce")).dropna(subset=["_x", metric])
    if data["_x"].nunique() < 2:
        return None
    key = hue or "_all"
    data = data.assign(**{key: data[hue].astype(str) if hue else ""})
    band = _band(data, [key], "_x", metric)
    colours = _palette(list(dict.fromkeys(band[key])))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for value, b in band.groupby(key, sort=False):
        ax.plot(b["_x"], b["mean"], marker="o", color=colours[value], label=value or None)
        ax.fill_between(b["_x"], b["low"], b["high"], color=colours[value], alpha=0.2, lw=0)
    if (data["_x"] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    if hue:
        ax.legend(title=hue, fontsize=8)
    return _save(fig, path)


def profiles(profile: pd.DataFrame, title: str, path: Path) -> Path | None:
    """``profile``: rows = methods, columns = τ (from ``stats.performance_profile``)."""
    if profile.empty:
        return None
    colours = _palette([str(i) for i in profile.index])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    taus = np.asarray(profile.columns, dtype=float)
    for method, row in profile.iterrows():
        ax.step(taus, row.to_numpy(), where="post", label=str(method), color=colours[str(method)])
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ (cost ratio to the best on each workload)")
    ax.set_ylabel("fraction of workloads")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)
