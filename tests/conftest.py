from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNIST = Path(os.environ.get("HARNESS_TEST_MNIST", REPO.parent / "shared" / "datasets" / "MNIST" / "raw"))
MNIST_FILES = ["train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]


@pytest.fixture(scope="session")
def mnist_root(tmp_path_factory) -> Path:
    """A data root holding MNIST/raw: links to the real (gzipped) files in ../shared/datasets."""
    if not all((SHARED_MNIST / f"{f}.gz").exists() or (SHARED_MNIST / f).exists() for f in MNIST_FILES):
        if os.environ.get("CI"):
            pytest.fail(f"real MNIST files missing at {SHARED_MNIST}; CI must have them")
        pytest.skip(f"real MNIST files not found at {SHARED_MNIST} (set HARNESS_TEST_MNIST)")
    root = tmp_path_factory.mktemp("data")
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for src in SHARED_MNIST.iterdir():
        (raw / src.name).symlink_to(src)
    return root


def write_suite(folder: Path, text: str, name: str = "suite.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def harness_cli(*args: str, cwd: Path | None = None, env: dict | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """The real command line, in a fresh process."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run([sys.executable, "-m", "harness", *map(str, args)], cwd=cwd or REPO,
                          capture_output=True, text=True, env=full_env, timeout=timeout)


TINY = """
name: tiny
seeds: 2
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 400}
  model: {name: mlp, depth: 1, width: 32}
  batch_size: 64
grid:
  optimizer: [{name: sgd, lr: 0.1}, {name: adam, lr: 0.003}]
"""
