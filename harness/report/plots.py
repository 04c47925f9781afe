"""Report figures (seaborn style and palettes, matplotlib drawing).

- ``learning_curves``: mean over seeds with a 95% t-band, each seed's curve faint, one colour per
  value of the compared axis, one panel per column of the table (workload × other axes).
- ``step_losses``: the training loss every 16 steps with a moving average (step losses are noisy).
- ``final_metric``: box + strip plot of the final metric per group: every seed is a dot.
- ``heatmap``: the mean metric over two axes (e.g. lr × weight decay, optimizer × norm).
- ``sensitivity``: the metric against a numeric hyperparameter on a log axis, mean and 95% band.
- ``profiles``: Dolan-Moré performance profiles.
- ``parallel_coordinates``: one vertical axis per hyperparameter of a search (log, linear or
  categorical) and one for the metric, a line per configuration coloured by the metric.
- ``hyperparameter_scatter``: the metric against each hyperparameter of a search, a point per
  configuration (log x for log-scale draws, a strip plot for choices).
- ``halving_curves``: the validation curve of every run of successive halving, a panel per bracket,
  with the rungs marked: which configurations went on and how far.

Bands are computed with pandas (t-intervals), not seaborn's bootstrap: a report of 10,000 trials
must take seconds.
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on a cluster node

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from scipy import stats  # noqa: E402

from harness.store.records import save_figure  # noqa: E402

MAX_PANELS = 6  # columns of the table drawn as panels; more make figures too large to read
MAX_SEED_LINES = 40  # per panel; beyond that only the means and bands are drawn
MAX_DOTS = 300  # per panel of the final-metric plot; beyond that the boxes alone
sns.set_theme(style="whitegrid", context="paper")


# Paul Tol's qualitative schemes (personal.sron.nl/~pault, "Colour schemes and templates", 2021), distinct
# for colour-blind readers: "bright" and black for up to 8 values (no two closer than ΔE*76 = 33), "muted"
# for 9 (23). seaborn's "colorblind" has near pairs (orange, tan and brown; pink and purple; 21 from 7 values).
BRIGHT = ["#4477AA", "#EE6677", "#228833", "#CCBB44", "#66CCEE", "#AA3377", "#BBBBBB", "#000000"]
MUTED = ["#332288", "#88CCEE", "#44AA99", "#117733", "#999933", "#DDCC77", "#CC6677", "#882255", "#AA4499"]


def palette(values: list[str]) -> dict[str, tuple]:
    """A colour per value, in the given order: Tol's "bright" (and black) for up to 8 values, "muted" for 9,
    evenly spaced hues beyond. A report makes one per axis from the suite's order of its values and hands it to
    every figure, so that a value has one colour throughout."""
    scheme = BRIGHT if len(values) <= len(BRIGHT) else MUTED if len(values) <= len(MUTED) else None
    colours = sns.color_palette(scheme, len(values)) if scheme else sns.color_palette("husl", len(values))
    return dict(zip(values, colours))


def _in_order(colours: dict[str, tuple], present: pd.Series) -> list[str]:
    """The values of ``present`` in the palette's order (the suite's): legends and boxes follow the tables."""
    seen = set(present)
    return [v for v in colours if v in seen]


def _colours(given: dict[str, tuple] | None, values: list[str]) -> dict[str, tuple]:
    """The report's colours where they cover ``values`` (its order kept), else a palette of these values."""
    if given is not None and all(v in given for v in values):
        return given
    return palette(values)


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
    save_figure(fig, path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return path


def _panels(frame: pd.DataFrame) -> tuple[list[str], pd.DataFrame]:
    """The first MAX_PANELS table columns, and only their rows (filtered before any work on them)."""
    panels = list(dict.fromkeys(frame["column"].tolist()))[:MAX_PANELS]
    return panels, frame[frame["column"].isin(panels)]


def learning_curves(curves: pd.DataFrame, compare: str, path: Path,
                    metrics: tuple[str, ...] = ("train_loss", "val_acc"),
                    colours: dict[str, tuple] | None = None) -> Path | None:
    """``curves`` has one row per trial-epoch with ``column`` (the table column) and ``compare``."""
    metrics = tuple(m for m in metrics if m in curves and curves[m].notna().any())
    if curves.empty or not metrics:
        return None
    panels, data = _panels(curves)
    data = data.assign(**{compare: data[compare].astype(str)})
    colours = _colours(colours, list(dict.fromkeys(data[compare])))
    fig, axes = plt.subplots(len(metrics), len(panels), figsize=(3.6 * len(panels), 2.7 * len(metrics)),
                             squeeze=False, sharex=True)
    for i, metric in enumerate(metrics):
        for j, panel in enumerate(panels):
            ax, part = axes[i][j], data[data["column"] == panel]
            if part["trial_id"].nunique() <= MAX_SEED_LINES:
                for (value, _), seed_curve in part.groupby([compare, "trial_id"], sort=False):
                    ax.plot(seed_curve["epoch"], seed_curve[metric], color=colours[value], alpha=0.2, lw=0.8)
            band = _band(part, [compare], "epoch", metric)
            for value in _in_order(colours, band[compare]):
                b = band[band[compare] == value]
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


def smooth(data: pd.DataFrame, window: int) -> pd.Series:
    """Each trial's ``loss`` (rows in step order) as an exponential moving average of span ``window``
    (weight 2/(window+1)), bias-corrected (the average of the weights so far, pandas' ``adjust=True``): no
    artefact where a window fills. A moving average that is cumulative until its window is full, then
    trailing, drops a cliff into every curve at the step where the first, high, losses leave it."""
    return data.groupby("trial_id", sort=False)["loss"].ewm(span=window, adjust=True).mean().droplevel(0)


def step_losses(steps: pd.DataFrame, compare: str, path: Path, window: int = 10,
                colours: dict[str, tuple] | None = None) -> Path | None:
    """``steps``: rows of (trial_id, column, compare, step, loss); smoothed by ``smooth`` (span ``window`` points)."""
    if steps.empty:
        return None
    panels, data = _panels(steps)
    data = data.assign(**{compare: data[compare].astype(str)}).sort_values(["trial_id", "step"], kind="stable")
    data["smooth"] = smooth(data, window)
    colours = _colours(colours, list(dict.fromkeys(data[compare])))
    fig, axes = plt.subplots(1, len(panels), figsize=(3.6 * len(panels), 2.7), squeeze=False)
    for j, panel in enumerate(panels):
        ax, part = axes[0][j], data[data["column"] == panel]
        band = _band(part, [compare], "step", "smooth")
        for value in _in_order(colours, band[compare]):
            b = band[band[compare] == value]
            ax.plot(b["step"], b["mean"], color=colours[value], lw=1.5, label=value)
            ax.fill_between(b["step"], b["low"], b["high"], color=colours[value], alpha=0.2, lw=0)
        if (part["loss"] > 0).all():
            ax.set_yscale("log")
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("step")
        ax.set_ylabel(f"train loss (EMA, span {window})" if j == 0 else "")
    axes[0][-1].legend(title=compare, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)


def final_metric(runs: pd.DataFrame, compare: str, metric: str, path: Path,
                 colours: dict[str, tuple] | None = None) -> Path | None:
    """Box plot per group with every completed seed as a dot."""
    panels, data = _panels(runs.dropna(subset=[metric]))
    data = data.assign(**{compare: data[compare].astype(str)})
    if data.empty:
        return None
    colours = _colours(colours, list(dict.fromkeys(data[compare])))
    order = _in_order(colours, data[compare])  # the suite's
    # room for the labels, slanted and right-aligned under their boxes (upright, long ones ran into each other)
    slot = min(max(0.6, 0.09 * max(len(v) for v in order)), 1.6)
    fig, axes = plt.subplots(1, len(panels), figsize=(max(3.5, slot * len(order) + 1.5) * len(panels), 3.2),
                             squeeze=False, sharey=True)
    for j, panel in enumerate(panels):
        ax, part = axes[0][j], data[data["column"] == panel]
        sns.boxplot(data=part, x=compare, y=metric, order=order, ax=ax, color="0.9", fliersize=0, width=0.5)
        if len(part) <= MAX_DOTS:
            sns.stripplot(data=part, x=compare, y=metric, order=order, ax=ax, hue=compare, palette=colours,
                          legend=False, size=4, jitter=0.15)
        ax.set_title(panel, fontsize=9)
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right", rotation_mode="anchor")
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


def sensitivity(runs: pd.DataFrame, axis: str, hue: str | None, metric: str, path: Path,
                colours: dict[str, tuple] | None = None) -> Path | None:
    """The metric against a numeric axis on a log scale, per value of ``hue``, mean and 95% band."""
    data = runs.assign(_x=pd.to_numeric(runs[axis], errors="coerce")).dropna(subset=["_x", metric])
    if data["_x"].nunique() < 2:
        return None
    key = hue or "_all"
    data = data.assign(**{key: data[hue].astype(str) if hue else ""})
    band = _band(data, [key], "_x", metric)
    colours = _colours(colours if hue else None, list(dict.fromkeys(band[key])))
    fig, ax = plt.subplots(figsize=(5, 3.2))
    for value in _in_order(colours, band[key]):
        b = band[band[key] == value]
        ax.plot(b["_x"], b["mean"], marker="o", color=colours[value], label=value or None)
        ax.fill_between(b["_x"], b["low"], b["high"], color=colours[value], alpha=0.2, lw=0)
    if (data["_x"] > 0).all():
        ax.set_xscale("log")
    ax.set_xlabel(axis)
    ax.set_ylabel(metric)
    if hue:
        ax.legend(title=hue, fontsize=8)
    return _save(fig, path)


def profiles(profile: pd.DataFrame, title: str, path: Path, colours: dict[str, tuple] | None = None) -> Path | None:
    """``profile``: rows = methods, columns = τ (from ``stats.performance_profile``)."""
    if profile.empty:
        return None
    colours = _colours(colours, [str(i) for i in profile.index])
    fig, ax = plt.subplots(figsize=(5, 3.2))
    taus = np.asarray(profile.columns, dtype=float)
    for method, row in profile.iterrows():
        ax.step(taus, row.to_numpy(), where="post", label=str(method), color=colours[str(method)])
    ax.set_xscale("log")
    ax.set_xlim(1.0, taus[-1])  # as far as the data go (a fixed axis to 2 squeezed ratios of 1-1.15 to its edge)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("τ (cost ratio to the best on each workload)")
    ax.set_ylabel("fraction of workloads")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="lower right")
    return _save(fig, path)


def tuning_curves(frame: pd.DataFrame, metric: str, path: Path, colours: dict[str, tuple] | None = None) -> Path | None:
    """``frame``: a row per technique, workload and k (``mean``, its band ``low``-``high``), from ``report.tuned.curves``;
    a panel per workload."""
    if frame.empty:
        return None
    workloads = list(dict.fromkeys(frame["workload"]))[:MAX_PANELS]
    colours = _colours(colours, list(dict.fromkeys(frame["technique"].astype(str))))
    fig, axes = plt.subplots(1, len(workloads), figsize=(4.2 * len(workloads), 3.2), squeeze=False)
    for ax, where in zip(axes[0], workloads):
        part = frame[frame["workload"] == where]
        for technique in _in_order(colours, part["technique"].astype(str)):
            line = part[part["technique"].astype(str) == technique]
            colour = colours[technique]
            ax.plot(line["k"], line["mean"], color=colour, label=technique, lw=1.4)
            ax.fill_between(line["k"], line["low"], line["high"], color=colour, alpha=0.15, lw=0)
        ax.set_xscale("log", base=2)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:g}"))
        ax.set_xlabel("tuning trials k")
        ax.set_title(where, fontsize=9)
    axes[0][0].set_ylabel(f"expected best {metric}")
    axes[0][-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)


def _position(values: pd.Series, dim: dict) -> tuple[np.ndarray, list[tuple[float, str]]]:
    """Each value's place on a parallel axis from 0 to 1, and the axis's tick labels. ``dim``:
    ``{"scale": "log" | "linear" | "category", "low", "high"}`` (bounds default to the data's) or
    ``{"scale": "category", "order": [...]}``."""
    if dim["scale"] == "category":
        labels = values.astype(str)
        order = [str(v) for v in dim.get("order") or []]
        order = [v for v in order if v in set(labels)] + sorted(set(labels) - set(order))
        span = max(len(order) - 1, 1)
        place = {v: (i / span if len(order) > 1 else 0.5) for i, v in enumerate(order)}
        return labels.map(place).to_numpy(float), [(place[v], v) for v in order]
    x = pd.to_numeric(values, errors="coerce").to_numpy(float)
    log = dim["scale"] == "log"
    low = dim.get("low", np.nanmin(x) if np.isfinite(x).any() else 0.0)
    high = dim.get("high", np.nanmax(x) if np.isfinite(x).any() else 1.0)
    f = np.log10 if log else (lambda v: np.asarray(v, dtype=float))
    a, b = float(f(low)), float(f(high))
    b = b if b > a else a + 1.0
    ticks = np.geomspace(low, high, 4) if log and low > 0 and high > low else np.linspace(low, high, 4)
    return (f(x) - a) / (b - a), [((float(f(t)) - a) / (b - a), f"{t:.3g}") for t in ticks]


def parallel_coordinates(configs: pd.DataFrame, dims: dict[str, dict], metric: str, higher: bool,
                         path: Path) -> Path | None:
    """``configs``: a row per configuration with a column per key of ``dims`` (see ``_position``),
    ``metric``, ``full`` (trained its whole budget: drawn strong) and ``best`` (drawn on top)."""
    if configs.empty or not dims:
        return None
    names = [*dims, metric]
    columns = [_position(configs[d], dims[d]) for d in dims]
    columns.append(_position(configs[metric], {"scale": "linear"}))
    y = np.column_stack([pos for pos, _ in columns])
    value = pd.to_numeric(configs[metric], errors="coerce").to_numpy(float)
    cmap = plt.get_cmap("viridis" if higher else "viridis_r")  # better is brighter either way
    shown = value[np.isfinite(value)]
    norm = matplotlib.colors.Normalize(*(shown.min(), shown.max()) if shown.size else (0, 1))
    fig, ax = plt.subplots(figsize=(1.6 * len(names) + 1.5, 4.2))
    xs = np.arange(len(names), dtype=float)
    full = configs["full"].to_numpy(bool)
    order = np.argsort(np.where(np.isfinite(value), value if higher else -value, -np.inf), kind="stable")
    for strong in (False, True):  # the configurations that trained the whole budget on top
        idx = [i for i in order if full[i] == strong and np.isfinite(y[i]).sum() >= 2]
        if not idx:
            continue
        colours = [cmap(norm(value[i])) if np.isfinite(value[i]) else (0.7, 0.7, 0.7, 1.0) for i in idx]
        ax.add_collection(LineCollection([np.column_stack([xs, y[i]]) for i in idx], colors=colours,
                                         linewidths=1.6 if strong else 0.8, alpha=0.9 if strong else 0.35))
    best = np.flatnonzero(configs["best"].to_numpy(bool))
    for i in best:
        ax.plot(xs, y[i], color="crimson", lw=2.6, zorder=5, label="best configuration")
    for x, (_, ticks) in zip(xs, columns):
        ax.axvline(x, color="0.35", lw=0.8, zorder=1)
        for pos, label in ticks:
            ax.text(x + 0.04, pos, label, fontsize=7, va="center", ha="left", color="0.2")
    ax.set_xlim(-0.2, len(names) - 0.5)
    ax.set_ylim(-0.05, 1.05)
    ax.set_yticks([])
    ax.set_xticks(xs)
    ax.set_xticklabels(names, rotation=20, fontsize=8)
    ax.grid(False)
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, label=metric, pad=0.02)
    if len(best):
        ax.legend(loc="upper left", bbox_to_anchor=(0, 1.12), fontsize=8, frameon=False)
    return _save(fig, path)


def hyperparameter_scatter(configs: pd.DataFrame, dims: dict[str, dict], metric: str, hue: str | None,
                           path: Path, per_row: int = 4) -> Path | None:
    """A panel per key of ``dims``: ``metric`` against it, a point per configuration, coloured by
    ``hue``; the ``best`` configuration starred. Log x for log scales, a strip plot for categories."""
    data = configs.assign(_y=pd.to_numeric(configs[metric], errors="coerce")).dropna(subset=["_y"])
    if data.empty or not dims:
        return None
    data = data.assign(_hue=data[hue].astype(str) if hue else "")
    colours = palette(list(dict.fromkeys(data["_hue"])))
    rows = -(-len(dims) // per_row)
    cols = min(len(dims), per_row)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.8 * rows), squeeze=False, sharey=True)
    for k, (name, dim) in enumerate(dims.items()):
        ax = axes[k // per_row][k % per_row]
        best = data[data["best"].astype(bool)]
        if dim["scale"] == "category":
            _, ticks = _position(data[name], dim)
            order = [label for _, label in ticks]
            sns.stripplot(data=data.assign(_x=data[name].astype(str)), x="_x", y="_y", hue="_hue", order=order,
                          palette=colours, ax=ax, legend=False, size=4, jitter=0.2)
            xs_best = [order.index(str(v)) for v in best[name]]
            ax.tick_params(axis="x", rotation=30)
        else:
            x = pd.to_numeric(data[name], errors="coerce")
            for value, part in data.groupby("_hue", sort=False):
                ax.scatter(x[part.index], part["_y"], s=14, color=colours[value], alpha=0.8, lw=0)
            if dim["scale"] == "log" and (x.dropna() > 0).all():
                ax.set_xscale("log")
                if "low" in dim:  # the whole searched range: where the draws fell in it shows
                    ax.set_xlim(dim["low"] / 1.2, dim["high"] * 1.2)
            elif "low" in dim:
                pad = 0.04 * (dim["high"] - dim["low"])
                ax.set_xlim(dim["low"] - pad, dim["high"] + pad)
            xs_best = pd.to_numeric(best[name], errors="coerce").tolist()
        ax.scatter(xs_best, best["_y"], marker="*", s=140, color="crimson", edgecolor="black", lw=0.5, zorder=5)
        ax.set_xlabel(name)
        ax.set_ylabel(metric if k % per_row == 0 else "")
    for k in range(len(dims), rows * cols):
        axes[k // per_row][k % per_row].axis("off")
    handles = [Line2D([], [], marker="*", ls="", color="crimson", markeredgecolor="black", ms=10,
                      label="best configuration")]
    if hue:
        handles += [Line2D([], [], marker="o", ls="", color=c, label=v) for v, c in colours.items()]
    axes[0][cols - 1].legend(handles=handles, title=hue, loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)


def halving_curves(curves: pd.DataFrame, ends: pd.DataFrame, brackets: list[dict], metric: str,
                   path: Path) -> Path | None:
    """``curves``: a row per epoch of each run's furthest record (``run_id``, ``bracket``, ``epoch``,
    ``metric``, ``reached``: how far the run went, as a label); ``ends``: a row per rung record
    (``bracket``, ``epochs``, ``metric``, ``reached``); ``brackets``: the plan's, for the rungs."""
    if curves.empty or metric not in curves or not brackets:
        return None
    colours = palette(list(dict.fromkeys(ends.sort_values("_order")["reached"])))
    top = max(b["rungs"][-1] for b in brackets)
    ticks = sorted({1, *(r for b in brackets for r in b["rungs"])})
    fig, axes = plt.subplots(1, len(brackets), figsize=(4.2 * len(brackets), 3.2), squeeze=False, sharey=True)
    for ax, b in zip(axes[0], brackets):
        part = curves[curves["bracket"] == b["s"]].dropna(subset=[metric])
        for value, runs in part.groupby("reached", sort=False):
            lines = [np.column_stack([r["epoch"], r[metric]]) for _, r in runs.groupby("run_id", sort=False)]
            ax.add_collection(LineCollection(lines, colors=[colours[value]], linewidths=1.0, alpha=0.7))
        end = ends[ends["bracket"] == b["s"]]
        for value, points in end.groupby("reached", sort=False):
            ax.scatter(points["epochs"], points[metric], s=14, color=colours[value], zorder=3, lw=0)
        for r in b["rungs"]:
            ax.axvline(r, color="0.5", ls=":", lw=0.8)
        if top >= 3:  # rungs grow geometrically: evenly spaced on a log axis
            ax.set_xscale("log")
        ax.set_xticks(ticks)
        ax.set_xticklabels([str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_xlim(0.8, top * 1.15)
        ax.autoscale_view(scalex=False)
        ax.set_xlabel("epoch")
        ax.set_title(f"bracket s={b['s']}: " + " → ".join(str(k) for k in b["keep"]) + " configurations", fontsize=9)
    axes[0][0].set_ylabel(metric)
    handles = [Line2D([], [], color=c, marker="o", ms=4, label=v) for v, c in colours.items()]
    axes[0][-1].legend(handles=handles, title="trained", loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8)
    return _save(fig, path)
