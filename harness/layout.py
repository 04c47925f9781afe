"""The layout of a results folder, ``RESULTS/<suite>/``: every name in it, and where each file goes.

```
RESULTS/<suite>/
  trials/<trial_id>.json          one record per trial (harness.store)
  plan.json                       the current plan: what reports and `harness status` cover
  plans/plan-<sha>.json           immutable plans that SLURM array tasks index into
  checkpoints/<run_id>.pt         resumable state of a run; <run_id>.stop beside it asks it to stop
  weights/<trial_id>.pt           final weights of a trial with save_weights: true
  locks/<trial_id>.lock           flock held by whichever process runs the trial
  tracking/                       live trackers (TensorBoard, wandb, MLflow)
  slurm/                          submitted scripts, jobs.txt, logs/
  report/                         report.md, report.html, report.tex, CSV tables, figures
  provenance.json                 a baseline's provenance (harness baseline)
  regress.md  refined.yaml  collected.parquet|csv  lr-find/  landscape/  diagnose/
RESULTS/compare/<suite>/<KEY=LABEL>/   the candidate folders of harness compare
```

Only names and paths live here, with nothing imported from the harness, so that any module can
import this one without ever joining an import cycle.
"""
from __future__ import annotations

import re
from pathlib import Path

# A suite's name is a folder's name: letters, digits, _ . -, starting with a letter or digit (so never
# "..", never a path); a name read from a record or plan is checked again before it names a folder.
SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")

TRIALS_DIR = "trials"
PLAN_FILE = "plan.json"
PLANS_DIR = "plans"
CHECKPOINT_DIR = "checkpoints"
WEIGHTS_DIR = "weights"
LOCK_DIR = "locks"
TRACKING_DIR = "tracking"
SLURM_DIR = "slurm"
SLURM_LOGS_DIR = "logs"  # under SLURM_DIR
JOBS_FILE = "jobs.txt"  # under SLURM_DIR: the ids of the submitted jobs, one a line
ARRAY_SCRIPT = "array.sbatch"  # under SLURM_DIR: the last array job submitted
NEXT_RUNG_SCRIPT = "next-rung.sbatch"  # under SLURM_DIR: the job that submits a search's next rung
REPORT_DIR = "report"
REPORT_FILES = {"md": "report.md", "html": "report.html", "latex": "report.tex"}  # under REPORT_DIR
PROVENANCE_FILE = "provenance.json"
REGRESS_FILE = "regress.md"
REFINED_FILE = "refined.yaml"
COLLECTED_FILES = {"parquet": "collected.parquet", "csv": "collected.csv"}
LR_FIND_DIR = "lr-find"
LANDSCAPE_DIR = "landscape"
DIAGNOSE_DIR = "diagnose"
COMPARE_DIR = "compare"  # under the results root, not under a suite's folder
# What a run leaves behind besides its results; a baseline keeps none of it.
WORKING_DIRS = (LOCK_DIR, CHECKPOINT_DIR, TRACKING_DIR)


def suite_dir(root: Path | str, suite: str) -> Path:
    """``root/suite``; a name that is not a suite's (``../x``, ``a/b``, empty) is a ``ValueError``, so that a
    value read from a record can never name a folder outside ``root``."""
    if not isinstance(suite, str) or not SUITE_NAME.fullmatch(suite):
        raise ValueError(f"suite name {str(suite)[:120]!r} is not a folder name (letters, digits, _ . -, at most 100)")
    return Path(root) / suite


def trials_dir(results: Path) -> Path:
    return Path(results) / TRIALS_DIR


def record_path(results: Path, trial_id: str) -> Path:
    return trials_dir(results) / f"{trial_id}.json"


def plan_path(results: Path) -> Path:
    return Path(results) / PLAN_FILE


def plan_file_path(results: Path, digest: str) -> Path:
    return Path(results) / PLANS_DIR / f"plan-{digest}.json"


def results_of_plan_file(plan_file: Path) -> Path:
    """The results folder a ``plans/plan-*.json`` lies in."""
    return Path(plan_file).parent.parent


def checkpoint_path(results: Path, trial_id: str) -> Path:
    return Path(results) / CHECKPOINT_DIR / f"{trial_id}.pt"


def stop_path(results: Path, trial_id: str) -> Path:
    """A file whose presence asks the processes of a multi-process trial to stop: they look for it
    every few steps and agree, which no signal through ``accelerate launch`` would guarantee."""
    return checkpoint_path(results, trial_id).with_suffix(".stop")


def weights_path(results: Path, trial_id: str) -> Path:
    return Path(results) / WEIGHTS_DIR / f"{trial_id}.pt"


def lock_path(results: Path, trial_id: str) -> Path:
    return Path(results) / LOCK_DIR / f"{trial_id}.lock"


def started_path(results: Path, trial_id: str) -> Path:
    """Present while a trial runs: left behind when its process dies in it, so the next run counts a crash."""
    return Path(results) / LOCK_DIR / f"{trial_id}.started"


def tracking_dir(results: Path) -> Path:
    return Path(results) / TRACKING_DIR


def slurm_dir(results: Path) -> Path:
    return Path(results) / SLURM_DIR


def slurm_logs_dir(results: Path) -> Path:
    return slurm_dir(results) / SLURM_LOGS_DIR


def jobs_file(results: Path) -> Path:
    return slurm_dir(results) / JOBS_FILE


def report_dir(results: Path) -> Path:
    return Path(results) / REPORT_DIR


def provenance_path(results: Path) -> Path:
    return Path(results) / PROVENANCE_FILE


def regress_path(results: Path) -> Path:
    return Path(results) / REGRESS_FILE


def refined_path(results: Path) -> Path:
    return Path(results) / REFINED_FILE


def collected_path(results: Path, csv: bool) -> Path:
    return Path(results) / COLLECTED_FILES["csv" if csv else "parquet"]


def compare_dir(root: Path | str, suite: str, technique: str) -> Path:
    """Where ``harness compare`` runs a suite with ``technique`` (``KEY=LABEL``) swapped in."""
    return Path(root) / COMPARE_DIR / suite / technique


def suite_dirs(root: Path, depth: int = 3) -> list[Path]:
    """The suite results folders (holding ``trials/`` or a ``plan.json``) up to ``depth`` levels below a results root:
    ``RESULTS/<suite>``, ``results/baselines/<suite>``, ``RESULTS/compare/<suite>/<technique>``."""
    found: list[Path] = []
    level = [Path(root)]
    for _ in range(depth):
        level = sorted(p for folder in level for p in _folders(folder))
        found += [p for p in level if trials_dir(p).is_dir() or plan_path(p).is_file()]
        level = [p for p in level if p not in found]  # a suite's own folders are not searched
    return found


def _folders(folder: Path) -> list[Path]:
    try:
        return [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")]
    except OSError:  # unreadable: nothing of ours below it
        return []
