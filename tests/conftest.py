from __future__ import annotations

import os
import re
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


def plugin_args(path: Path) -> list:
    """The ``--plugin FILE`` a shipped suite's header tells a user to give (it names a plugin's components)."""
    header = "".join(line for line in path.read_text().splitlines(keepends=True) if line.startswith("#"))
    return [arg for p in dict.fromkeys(re.findall(r"--plugin (\S+)", header)) for arg in ("--plugin", REPO / p)]


def load_shipped(path: Path):
    """A shipped suite, loaded as its header's command line loads it (its plugins first)."""
    from harness.plugins import load_plugin
    from harness.suite import load_suite

    for plugin in plugin_args(path)[1::2]:
        load_plugin(str(plugin))
    return load_suite(str(path))


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


# A trial long enough (about 2 s an epoch here) to be caught between its checkpoints.
SLOW = """
name: slow
seeds: [0]
budget: {epochs: 4}
base:
  dataset: {name: digits, val_size: 200}
  model: {name: mlp, depth: 3, width: 512}
  optimizer: {name: adam, lr: 0.001}
  regularizers: [{name: dropout, p: 0.1}]
  batch_size: 8
"""


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """Run headless Chromium (Debian's package) on a page: returns a function(url, *flags) -> stdout."""
    import shutil

    exe = shutil.which("chromium") or shutil.which("chromium-browser")
    if exe is None:
        if os.environ.get("CI"):
            pytest.fail("chromium is missing; CI installs Debian's chromium package (.ci/run)")
        pytest.skip("chromium not installed (apt-get install chromium)")
    profiles = tmp_path_factory.mktemp("chromium")

    def run(url: str, *flags: str) -> str:
        profile = profiles / f"profile{len(list(profiles.iterdir()))}"  # a fresh profile per run
        out = subprocess.run([exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *flags, url],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        return out.stdout

    return run
