"""Comparison tables: built once as plain data, rendered to Markdown, HTML and LaTeX (booktabs).

Rows are the values of the compared axis, columns the workloads (dataset/model) × the other
varying axes; a cell is ``mean ± half-width (n)``, the best mean of a column in bold. Against a
baseline row, each other cell is tested (``stats.difference``), the p-values of the table are
Holm-corrected together, and a cell whose difference is significant after correction gets ▲
(better) or ▼ (worse).
"""
from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from harness.report.aggregate import summarize
from harness.report.stats import difference, holm
from harness.spec import COMPLETED

LOWER_IS_BETTER = ("loss", "error", "time", "_s")
ALPHA = 0.05


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


@dataclass
class Cell:
    text: str
    bold: bool = False  # the best of its column beyond its interval
    mark: str = ""  # "▲" significantly better than the baseline, "▼" worse
    tie: bool = False  # tied for the best of its column (intervals that overlap the best's): in italics


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[Cell]]
    notes: list[str] = field(default_factory=list)


def to_markdown(t: Table) -> str:
    def fmt(c: Cell) -> str:
        text = c.text.replace("|", "\\|")
        text = f"**{text}**" if c.bold else f"_{text}_" if c.tie else text
        return text + (f" {c.mark}" if c.mark else "")

    lines = ["| " + " | ".join(t.header) + " |", "|" + "|".join("---" for _ in t.header) + "|"]
    lines += ["| " + " | ".join(fmt(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines + ([""] + [f"_{n}_" for n in t.notes] if t.notes else []))


def to_html(t: Table) -> str:
    def fmt(c: Cell) -> str:
        text = html.escape(c.text)
        text = f"<strong>{text}</strong>" if c.bold else f"<em>{text}</em>" if c.tie else text
        mark = f' <span class="mark">{c.mark}</span>' if c.mark else ""
        return f"<td>{text}{mark}</td>"

    head = "".join(f"<th>{html.escape(h)}</th>" for h in t.header)
    body = "\n".join("<tr>" + "".join(fmt(c) for c in row) + "</tr>" for row in t.rows)
    notes = "".join(f'<p class="note">{html.escape(n)}</p>' for n in t.notes)
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}\n</tbody>\n</table>{notes}"


_LATEX_SPECIAL = {"&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{", "}": r"\}",
                  "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "\\": r"\textbackslash{}"}


# every non-ASCII character a report writes, as pdflatex takes it (it refused a raw ± or ▲)
_LATEX_UNICODE = {"±": r"$\pm$", "−": "$-$", "×": r"$\times$", "≥": r"$\geq$", "≤": r"$\leq$", "≈": r"$\approx$",
                  "≠": r"$\neq$", "→": r"$\rightarrow$", "←": r"$\leftarrow$", "↑": r"$\uparrow$", "↓": r"$\downarrow$",
                  "▲": r"$^{\uparrow}$", "▼": r"$^{\downarrow}$", "✗": r"$\times$", "✓": r"$\surd$", "·": r"$\cdot$",
                  "—": "---", "–": "--", "…": r"\ldots{}", "’": "'", "‘": "`", "“": "``", "”": "''", "²": r"$^2$",
                  "³": r"$^3$", "√": r"$\surd$", "∞": r"$\infty$", "°": r"$^\circ$", "δ": r"$\delta$", "τ": r"$\tau$",
                  "α": r"$\alpha$", "β": r"$\beta$", "γ": r"$\gamma$", "σ": r"$\sigma$", "μ": r"$\mu$", "η": r"$\eta$",
                  "λ": r"$\lambda$", "ε": r"$\epsilon$", "θ": r"$\theta$", "ρ": r"$\rho$", "Δ": r"$\Delta$", "\u00a0": "~"}


def latex_escape(text: str) -> str:
    """Text as LaTeX source pdflatex compiles: its special characters escaped, every non-ASCII character a
    macro (or its ASCII letter, an accented one; ``?`` for one the table does not know)."""
    return "".join(_LATEX_SPECIAL.get(ch) or _LATEX_UNICODE.get(ch) or (ch if ch.isascii() else _ascii(ch))
                   for ch in text)


def _ascii(ch: str) -> str:
    import unicodedata

    base = unicodedata.normalize("NFKD", ch).encode("ascii", "ignore").decode()
    return latex_escape(base) if base else "?"


def to_latex(t: Table) -> str:
    """A booktabs table (\\usepackage{booktabs}); ± and the marks as math."""
    def fmt(c: Cell) -> str:
        text = latex_escape(c.text)
        text = rf"\textbf{{{text}}}" if c.bold else rf"\textit{{{text}}}" if c.tie else text
        return text + latex_escape(c.mark or "")

    cols = "l" + "r" * (len(t.header) - 1)
    lines = [r"\begin{table}[t]", r"\centering", rf"\caption{{{latex_escape(t.title)}}}",
             rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.header) + r" \\", r"\midrule"]
    lines += [" & ".join(fmt(c) for c in row) + r" \\" for row in t.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [rf"\par\smallskip\footnotesize {latex_escape(n)}" for n in t.notes]
    lines += [r"\end{table}"]
    return "\n".join(lines)


def markdown(header: list[str], rows: list[list[str]]) -> str:
    return to_markdown(Table("", header, [[Cell(c) for c in r] for r in rows]))


@dataclass
class Comparison:
    """A comparison table and the numbers behind it."""

    table: Table
    summary: pd.DataFrame  # one row per (compare value, column)
    differences: pd.DataFrame  # one row per tested cell (empty without a baseline)


def _by_seed(runs: pd.DataFrame, metric: str) -> dict[tuple[str, str], dict[int, float]]:
    """{(row, column): {seed: value}} over the completed trials, in one pass."""
    done = runs[runs["status"] == COMPLETED]
    values = pd.to_numeric(done[metric], errors="coerce")
    out: dict[tuple[str, str], dict[int, float]] = {}
    for row, col, seed, v in zip(done["_row"].tolist(), done["column"].tolist(), done["seed"].tolist(), values.tolist()):
        if not math.isnan(v):
            out.setdefault((row, col), {})[int(seed)] = float(v)
    return out


def compare(runs: pd.DataFrame, compare_axis: str, metric: str, *, baseline: str | None = None,
            bootstrap: bool = False, confidence: float = 0.95, title: str = "") -> Comparison:
    """``runs`` has a ``column`` label per trial (workload × other axes); see ``write.py``."""
    lower = lower_is_better(metric)
    runs = runs.assign(_row=runs[compare_axis].astype(str))
    rows, columns = list(dict.fromkeys(runs["_row"])), list(dict.fromkeys(runs["column"]))
    summary_df = summarize(runs, ["_row", "column"], metric, bootstrap, confidence)
    summary_df = summary_df.drop(columns=[compare_axis], errors="ignore").rename(columns={"_row": compare_axis})
    summary = summary_df.to_dict("records")
    diffs = []
    if baseline is not None:
        seeds = _by_seed(runs, metric)
        groups = dict.fromkeys(zip(runs["_row"].tolist(), runs["column"].tolist()))
        for row, col in groups:
            if row == baseline or (baseline, col) not in groups:
                continue
            d = difference(seeds.get((row, col), {}), seeds.get((baseline, col), {}), confidence, not lower)
            diffs.append({compare_axis: row, "column": col, "baseline": baseline, **d.as_dict()})
    diff_df = pd.DataFrame(diffs)
    if not diff_df.empty:
        diff_df["p_holm"] = holm(diff_df["p"].tolist())
    marks: dict[tuple[str, str], str] = {}
    for d in diffs if diff_df.empty else diff_df.to_dict("records"):
        if not math.isnan(d["p_holm"]) and d["p_holm"] < 1 - confidence:
            better = d["diff"] < 0 if lower else d["diff"] > 0
            marks[(d[compare_axis], d["column"])] = "▲" if better else "▼"
    by_key = {(r[compare_axis], r["column"]): r for r in summary}
    leaders = {col: _leaders([(row, r) for (row, c), r in by_key.items() if c == col and r["n"] > 0], lower)
               for col in columns}
    ranks = _mean_ranks(by_key, rows, columns, lower)
    table_rows = []
    for row in rows:
        cells = [Cell(row + (" (baseline)" if row == baseline else ""))]
        for col in columns:
            r = by_key.get((row, col))
            if r is None:
                cells.append(Cell(""))
                continue
            best, tied = leaders[col]
            cells.append(Cell(cell(r), bold=row == best, tie=row in tied, mark=marks.get((row, col), "")))
        if len(columns) > 1:
            cells.append(Cell("—" if math.isnan(ranks[row]) else f"{ranks[row]:.2g}"))
        table_rows.append(cells)
    interval = "percentile bootstrap" if bootstrap else "t"
    notes = [f"mean ± half-width of the {confidence:.0%} {interval} interval over seeds (n = completed seeds); "
             f"{'lower' if lower else 'higher'} is better. Bold: the best of its column, its interval clear of "
             "every other's; italics: tied for the best (intervals that overlap the best one's; with fewer than 2 "
             "seeds nothing is marked)." + (" Mean rank: the row's rank by mean in each column (1 = best, ties "
                                             "share the mean of their ranks), averaged over the columns." if len(columns) > 1 else "")]
    if baseline is not None:
        tested = 0 if diff_df.empty else int(diff_df["p"].notna().sum())
        notes.append(f"▲/▼: significantly better/worse than {compare_axis}={baseline} at level "
                     f"{1 - confidence:.2g} after Holm correction over the {tested} tested comparisons "
                     f"(paired t where the seeds match, Welch t otherwise).")
    header = [compare_axis, *columns, *(["mean rank"] if len(columns) > 1 else [])]
    table = Table(title or f"{metric} by {compare_axis}", header, table_rows, notes)
    groups = dict(zip(runs["column"], runs["_group"])) if "_group" in runs else {}
    if len(columns) > COMPACT_COLUMNS and 1 < len(set(groups.values())) < len(columns):
        table = _compact(table, compare_axis, columns, groups, dict(zip(runs["column"], runs["_sub"])))
    return Comparison(table, summary_df, diff_df)


COMPACT_COLUMNS = 6  # more columns than this, over several workloads: the workloads become row groups


def _compact(t: Table, axis: str, columns: list[str], group: dict[str, str], sub: dict[str, str]) -> Table:
    """``t`` with its workloads as row groups: a row per workload and value of ``axis``, a column per value
    of the other axes (each column's header no longer repeats its workload); the mean rank stays one per
    value of ``axis``, in the first group's rows."""
    groups, subs = list(dict.fromkeys(group[c] for c in columns)), list(dict.fromkeys(sub[c] for c in columns))
    where = {(group[c], sub[c]): i + 1 for i, c in enumerate(columns)}  # the cell's index in a row of t
    ranked = len(t.header) == len(columns) + 2
    rows = []
    for g in groups:
        for j, row in enumerate(t.rows):
            cells = [Cell(g if j == 0 else ""), row[0]]
            cells += [row[where[(g, s)]] if (g, s) in where else Cell("") for s in subs]
            if ranked:
                cells.append(row[-1] if g == groups[0] else Cell(""))
            rows.append(cells)
    header = ["workload", axis, *subs, *(["mean rank (all)"] if ranked else [])]
    return Table(t.title, header, rows, t.notes + ["Workloads as row groups (more columns than "
                                                   f"{COMPACT_COLUMNS}); bold and italics within each column."])


def _leaders(cells: list[tuple[str, dict[str, Any]]], lower: bool) -> tuple[str | None, set[str]]:
    """(the row that is best beyond its interval, or None; the rows tied for the best). The best mean's row is
    best beyond its interval when its interval overlaps no other row's; else it and every row whose interval
    overlaps its own are tied. Without an interval (one seed) nothing is marked."""
    if not cells:
        return None, set()
    row, best = (min if lower else max)(cells, key=lambda rc: rc[1]["mean"])
    if not (math.isfinite(best["ci_low"]) and math.isfinite(best["ci_high"])):
        return None, set()
    overlap = {other for other, r in cells if other != row and not (r["ci_high"] < best["ci_low"] or
                                                                    r["ci_low"] > best["ci_high"])}
    overlap |= {other for other, r in cells if other != row and not math.isfinite(r["ci_low"])}  # unknown: not beaten
    return (None, {row, *overlap}) if overlap else (row, set())


def _mean_ranks(by_key: dict[tuple[str, str], dict[str, Any]], rows: list[str], columns: list[str],
                lower: bool) -> dict[str, float]:
    """Each row's rank by mean in each column it has (1 = best; ties share the mean of their ranks), averaged."""
    frame = pd.DataFrame({col: {row: by_key[(row, col)]["mean"] for row in rows if (row, col) in by_key
                                and by_key[(row, col)]["n"] > 0} for col in columns}, index=rows)
    ranked = frame.rank(axis=0, ascending=lower, method="average")
    return ranked.mean(axis=1, skipna=True).reindex(rows).to_dict()


def differences_table(d: pd.DataFrame, compare_axis: str, metric: str) -> Table:
    rows = []
    for r in d.to_dict("records"):
        ci = "—" if math.isnan(r["ci_low"]) else f"[{r['ci_low']:+.4f}, {r['ci_high']:+.4f}]"
        p = lambda v: "—" if math.isnan(v) else f"{v:.3g}"  # noqa: E731
        rows.append([Cell(str(r[compare_axis])), Cell(str(r["column"])), Cell(f"{r['diff']:+.4f}"), Cell(ci),
                     Cell(r["test"] if isinstance(r["test"], str) else "too few seeds"), Cell(p(r["p"])), Cell(p(r["p_holm"])),
                     Cell(p(r["p_improve"])), Cell(f"{r['n']} vs {r['n_baseline']}")])
    return Table(f"{metric}: difference to the baseline",
                 [compare_axis, "column", "difference", "95% CI", "test", "p", "p (Holm)", "P(improvement)", "seeds"],
                 rows)
