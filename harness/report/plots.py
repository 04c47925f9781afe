"""Learning-curve plots (seaborn): the mean over seeds with a 95% band, one colour per value of
the compared axis, one panel per combination of the other axes."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node

import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402

MAX_PANELS = 12


def learning_curves(curves: pd.DataFrame, compare: str, others: list[str], path: Path,
                    metrics: tuple[str, ...] = ("train_loss", "val_acc")) -> Path | None:
    """One row of panels per metric; returns None when there is nothing to draw."""
    if curves.empty:
        return None
    data = curves.copy()
    data[compare] = data[compare].astype(str)
    if others:
        data["panel"] = data[others].astype(str).apply(lambda r: ", ".join(f"{c}={r[c]}" for c in others), axis=1)
    else:
        data["panel"] = ""
    panels = list(dict.fromkeys(data["panel"]))[:MAX_PANELS]
    data = data[data["panel"].isin(panels)]
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(4.2 * len(panels), 3.2 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        for j, panel in enumerate(panels):
            ax = axes[i][j]
            sns.lineplot(data=data[data["panel"] == panel], x="epoch", y=metric, hue=compare,
                         errorbar=("ci", 95), n_boot=200, seed=0, marker="o", ax=ax,
                         legend=(i == 0 and j == len(panels) - 1))
            if metric.endswith("loss"):
                ax.set_yscale("log")
            if i == 0 and panel:
                ax.set_title(panel, fontsize=9)
    handles = axes[0][-1].get_legend()
    if handles is not None:
        sns.move_legend(axes[0][-1], "upper left", bbox_to_anchor=(1.02, 1), title=compare)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path
