"""The commands that train nothing answer at once: ``plan``, ``plan --count``, ``status``, ``list`` and
``verify`` import neither torch nor the engine (torch alone is 1-2 s here, far more on a cluster's login
node or a cold network filesystem; ``benchmarks/cli_latency.py`` prints the times). Each runs in a fresh
interpreter, so a top-level ``import torch`` anywhere on these paths fails here, whichever test ran first."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# heavy imports none of these commands needs; verify's statistics do take scipy.stats and pandas
NOT_IMPORTED = ("torch", "torchvision", "accelerate", "matplotlib", "harness.engine")

PROBE = """
import contextlib, io, sys
from harness.cli import main
with contextlib.redirect_stdout(io.StringIO()):
    code = main(sys.argv[1:])
loaded = [m for m in {names!r} if m in sys.modules]
assert not loaded, f"harness {{' '.join(sys.argv[1:])}} imported {{loaded}}"
sys.exit(code)
"""

COMMANDS = {
    "plan": ["plan", "suites/smoke.yaml"],
    "plan --count": ["plan", "suites/smoke.yaml", "--count"],
    "plan (a tuned suite)": ["plan", "suites/tune.yaml"],
    "plan (a language model)": ["plan", "suites/lm.yaml"],
    "status": ["status", "results/repro/repro-ema"],
    "list": ["list"],
    "list optimizer": ["list", "optimizer"],
    "verify": ["verify", "suites/repro/ema.yaml", "--results", "results/repro"],
}


@pytest.mark.parametrize("name", COMMANDS)
def test_a_command_that_trains_nothing_imports_no_torch(name):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", PROBE.format(names=NOT_IMPORTED), *COMMANDS[name]], cwd=ROOT,
                          env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]


def test_the_probe_sees_an_import_of_torch():
    """The guard is not vacuous: a command that imports torch (here, by importing it first) fails it."""
    probe = "import torch\n" + PROBE.format(names=NOT_IMPORTED)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", probe, "list"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode != 0 and "imported ['torch'" in done.stderr
