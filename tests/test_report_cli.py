"""The report of a real sweep through the command line: every format, collect, bad input, and the
HTML opened in a real browser (headless Chromium)."""
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
from conftest import harness_cli, write_suite

SUITE = """
name: rep
description: Two optimizers and three widths on digits, three seeds.
seeds: 3
budget: {epochs: 3}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 32}
  batch_size: 50
grid:
  optimizer: [{name: sgd, lr: 0.01}, {name: adam, lr: 0.003}]
  model.width: [16, 32, 64]
report: {compare: optimizer, metric: test_acc}
"""


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    r = harness_cli("run", write_suite(tmp, SUITE), "--results", tmp / "res", "--workers", "2", "--no-report")
    assert r.returncode == 0, r.stderr
    return tmp / "res" / "rep"


@pytest.mark.slow
def test_every_format_with_baseline_tests_and_time_to_target(sweep):
    r = harness_cli("report", sweep, "--baseline", "optimizer=sgd", "--format", "md,html,latex,csv",
                    "--target", "0.5", "--bootstrap")
    assert r.returncode == 0, r.stderr
    out = sweep / "report"
    md = (out / "report.md").read_text()
    assert "| optimizer | digits/mlp, model.width=16 | digits/mlp, model.width=32 | digits/mlp, model.width=64 |" in md
    assert "sgd (baseline)" in md and "paired t" in md and "percentile bootstrap" in md
    assert "adam" in md and "▲" in md  # adam at lr 3e-3 beats sgd at 1e-2 after 3 epochs, on every seed
    assert "Time to val_acc ≥ 0.5" in md
    tex = (out / "report.tex").read_text()
    assert tex.count(r"\toprule") >= 3 and r"\includegraphics" in tex and r"$^{\uparrow}$" in tex
    summary = pd.read_csv(out / "summary_optimizer.csv")
    assert set(summary["n"]) == {3} and {"mean", "ci_low", "ci_high", "median", "std"} <= set(summary.columns)
    diffs = pd.read_csv(out / "differences_optimizer.csv")
    assert len(diffs) == 3 and set(diffs["test"]) == {"paired t"} and (diffs["p_holm"] >= diffs["p"]).all()
    for png in ("curves_optimizer.png", "steps_optimizer.png", "final_optimizer.png", "profile_optimizer.png",
                "sensitivity_model_width.png"):
        assert (out / png).stat().st_size > 5000, png


def test_collect_writes_one_tidy_row_per_trial(sweep):
    r = harness_cli("collect", sweep)
    assert r.returncode == 0, r.stderr
    table = pd.read_parquet(sweep / "collected.parquet")
    assert len(table) == 18 and table["trial_id"].is_unique
    assert {"optimizer", "model.width", "seed", "status", "workload", "test_acc", "best_val_acc", "train_s"} <= set(table.columns)
    assert (table["status"] == "completed").all()
    r = harness_cli("collect", sweep, "--csv", "-o", sweep / "all.csv")
    assert r.returncode == 0 and len(pd.read_csv(sweep / "all.csv")) == 18


def test_figures_drawn_in_worker_processes_match_those_drawn_in_place(sweep, tmp_path):
    import shutil

    from harness.report import write_report

    pages = {}
    for jobs in (1, 2):
        folder = shutil.copytree(sweep, tmp_path / f"jobs{jobs}", ignore=shutil.ignore_patterns("report"))
        files = write_report(folder, formats=("md",), jobs=jobs)
        pages[jobs] = ([f.name for f in files], (folder / "report" / "report.md").read_text().split("_Written")[0])
        assert len(files) >= 7 and all(f.stat().st_size > 5000 for f in files if f.suffix == ".png")
    assert pages[1] == pages[2]


@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--baseline", "optimizer=nadam"], "--baseline: optimizer=nadam selects no row; the rows of optimizer are sgd, adam"),
    (["--baseline", "optimizer"], "--baseline: expected AXIS=VALUE"),
    (["--compare", "norm"], "no axis 'norm'"),
    (["--format", "pdf"], "unknown report format 'pdf'"),
    (["--metric", "f1"], "no metric 'f1'"),
    (["--jobs", "0"], "--jobs: expected a whole number >= 1, got '0'"),
])
def test_bad_report_input_exits_2_with_one_line(sweep, args, message):
    r = harness_cli("report", sweep, *args)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr


@pytest.mark.slow
def test_html_report_renders_in_chromium_with_its_tables_and_images(sweep, chromium, tmp_path):
    from PIL import Image

    r = harness_cli("report", sweep, "--baseline", "optimizer=sgd")
    assert r.returncode == 0, r.stderr
    page = sweep / "report" / "report.html"
    text = page.read_text()
    assert "src=\"data:image/png;base64," in text and not re.search(r"(src|href)=\"https?:", text)  # self-contained
    dom = chromium(page.as_uri(), "--virtual-time-budget=5000", "--dump-dom")
    body = re.search(r"<body([^>]*)>", dom).group(1)
    attrs = dict(re.findall(r'data-([a-z-]+)="(\d+)"', body))
    assert int(attrs["images"]) >= 5 and attrs["images-ok"] == attrs["images"], attrs  # no broken image
    assert int(attrs["tables"]) >= 10
    shot = tmp_path / "shot.png"
    chromium(page.as_uri(), "--window-size=1280,2000", "--virtual-time-budget=5000", f"--screenshot={shot}")
    pixels = np.asarray(Image.open(shot).convert("RGB").resize((320, 500))).reshape(-1, 3).astype(int)
    assert (pixels.sum(1) < 600).mean() > 0.03, "the page is (nearly) blank"
    assert len({tuple(p) for p in pixels}) > 200  # plots in colour, not a single-colour page


@pytest.mark.slow
def test_the_latex_report_compiles_with_a_real_engine(sweep, tmp_path):
    """report.tex carried a raw ± and ▲/▼, which pdflatex refused. Skipped where no engine is installed
    (Debian: texlive-latex-base and texlive-latex-recommended)."""
    import shutil
    import subprocess

    if shutil.which("pdflatex") is None:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail("pdflatex is not installed (.ci/run installs texlive-latex-base)")
        pytest.skip("pdflatex is not installed")
    r = harness_cli("report", sweep, "--baseline", "optimizer=sgd", "--format", "latex", "--target", "0.5",
                    "-o", tmp_path / "tex")
    assert r.returncode == 0, r.stderr
    body = (tmp_path / "tex" / "report.tex").read_text(encoding="utf-8")
    assert body.isascii(), sorted({ch for ch in body if not ch.isascii()})
    (tmp_path / "tex" / "paper.tex").write_text(
        "\\documentclass{article}\n\\usepackage{booktabs,graphicx}\n\\begin{document}\n\\input{report}\n"
        "\\end{document}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "paper.tex"],
                          cwd=tmp_path / "tex", capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-3000:]
    assert (tmp_path / "tex" / "paper.pdf").stat().st_size > 10_000


def test_a_fused_suite_with_no_varying_axis_reports_its_fused_column(tmp_path):
    """Seeds of one configuration packed together (repro-overfit-tiny under --fuse auto): the all-groups table
    grouped the fused flags by no key at all and crashed the report."""
    suite = write_suite(tmp_path, """
        name: one-config
        seeds: 3
        budget: {epochs: 1}
        base:
          dataset: {name: digits, val_size: 200, train_subset: 300}
          model: {name: mlp, depth: 1, width: 16}
          batch_size: 64
        """)
    r = harness_cli("run", suite, "--results", tmp_path / "r", "--fuse", "auto")
    assert r.returncode == 0, r.stdout + r.stderr
    report = (tmp_path / "r" / "one-config" / "report" / "report.md").read_text()
    assert "| fused |" in report and "3 of 3 |" in report
