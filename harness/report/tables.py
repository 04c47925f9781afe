"""Markdown tables of summaries: ``mean ± half-width (n)`` cells, the best mean in bold."""
from __future__ import annotations

import math
from typing import Any

import pandas as pd

LOWER_IS_BETTER = ("loss",)


def lower_is_better(metric: str) -> bool:
    return any(word in metric for word in LOWER_IS_BETTER)


def cell(row: pd.Series | dict[str, Any], digits: int = 4) -> str:
    """``0.9712 ± 0.0031 (n=3)``; a group of one seed has no interval, a group of none has no mean."""
    n = int(row["n"])
    if n == 0:
        text = "—"
    elif n == 1 or math.isnan(row["ci_high"]):
        text = f"{row['mean']:.{digits}f}"
    else:
        text = f"{row['mean']:.{digits}f} ± {(row['ci_high'] - row['ci_low']) / 2:.{digits}f}"
    text += f" (n={n})"
    bad = [f"{row[k]} {k}" for k in ("diverged", "failed") if row.get(k)]
    return text + (f" [{', '.join(bad)}]" if bad else "")


def markdown(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def comparison_table(summary: pd.DataFrame, compare: str, columns: list[str], metric: str) -> str:
    """Rows: the values of ``compare``; columns: each combination of ``columns`` (or one column)."""
    if columns:
        labels = summary[columns].astype(str).apply(lambda r: ", ".join(f"{c}={r[c]}" for c in columns), axis=1)
    else:
        labels = pd.Series([metric] * len(summary), index=summary.index)
    keys = list(dict.fromkeys(labels))
    table = summary.assign(_col=labels.values)
    best = {}
    for key in keys:
        means = table.loc[(table["_col"] == key) & (table["n"] > 0), "mean"]
        if len(means):
            best[key] = means.min() if lower_is_better(metric) else means.max()
    rows = []
    for value in dict.fromkeys(table[compare].astype(str)):
        row = [value]
        for key in keys:
            match = table[(table[compare].astype(str) == value) & (table["_col"] == key)]
            if match.empty:
                row.append("")
                continue
            r = match.iloc[0]
            text = cell(r)
            if r["n"] > 0 and r["mean"] == best.get(key):
                text = f"**{text}**"
            row.append(text)
        rows.append(row)
    return markdown([compare, *keys], rows)
