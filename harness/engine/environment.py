"""What a record says about where it was made: versions, git sha, device, host."""
from __future__ import annotations

import functools
import os
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from harness.plugins import LOADED, packages_of
from harness.registries import OPTIMIZERS

# Which SLURM job (and array task, and how many times requeued) a record was made in.
_SLURM_VARS = (("job_id", "SLURM_JOB_ID"), ("array_job_id", "SLURM_ARRAY_JOB_ID"),
               ("array_task_id", "SLURM_ARRAY_TASK_ID"), ("restart_count", "SLURM_RESTART_COUNT"),
               ("nodelist", "SLURM_JOB_NODELIST"), ("partition", "SLURM_JOB_PARTITION"))
_PACKAGES = ("harness", "torch", "torchvision", "accelerate", "numpy", "pandas", "scikit-learn")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


@functools.lru_cache(maxsize=1)
def git_state() -> dict[str, Any]:
    """The commit of the harness source tree, and whether it had uncommitted changes."""
    src = Path(__file__).resolve().parents[2]
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=src, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=src,
                               capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return {"sha": None, "dirty": None}
    if sha.returncode != 0:
        return {"sha": None, "dirty": None}
    return {"sha": sha.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def environment(device: torch.device, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """Where a record is made; with the trial's ``config``, the versions name the package of an optimizer
    it names by import path too (``schedulefree: 1.4.1`` for ``{class: schedulefree.AdamWScheduleFree}``)."""
    code = {OPTIMIZERS.get(config["optimizer"]["name"]).builder.__module__} if config else set()
    info: dict[str, Any] = {
        "versions": {**{p: _version(p) for p in _PACKAGES}, **packages_of(code)},
        "python": sys.version.split()[0],
        "git": git_state(),
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "device": str(device),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.version.cuda,
        "plugins": list(LOADED.values()),
    }
    slurm = {key: os.environ[var] for key, var in _SLURM_VARS if var in os.environ}
    if slurm:
        info["slurm"] = slurm
    if device.type == "cuda":
        info["device_name"] = torch.cuda.get_device_name(device)
    else:
        info["device_name"] = platform.processor() or platform.machine()
    return info
