"""The README's plugin examples of a batch transform (Gaussian input noise) and a per-step technique
(max-norm): each against its definition, and both through the command line in one suite."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import REPO, harness_cli, write_suite
from torch import nn

from harness.components import REGULARIZERS
from harness.components.regularizers import RegContext
from harness.data import Rng
from harness.plugins import load_plugin
from harness.spec import COMPLETED
from harness.store import scan

NOISE, MAX_NORM = REPO / "examples" / "plugins" / "input_noise.py", REPO / "examples" / "plugins" / "max_norm.py"


@pytest.fixture(scope="module", autouse=True)
def plugins():
    return [load_plugin(str(p)) for p in (NOISE, MAX_NORM)]


def _built(name: str, **params):
    return REGULARIZERS.build(REGULARIZERS.resolve({"name": name, **params}, "r"), RegContext(10))


def test_input_noise_adds_gaussian_noise_of_its_std_from_the_trials_own_stream():
    technique = _built("input_noise", std=0.5)
    x, y = torch.zeros(4000, 1, 8, 8), torch.arange(4000) % 10
    noisy, same = technique.transform_batch(x, y, Rng.seeded(3))
    assert torch.equal(same, y)
    assert abs(float(noisy.mean())) < 0.01 and abs(float(noisy.std()) - 0.5) < 0.01
    again, _ = technique.transform_batch(x, y, Rng.seeded(3))
    other, _ = technique.transform_batch(x, y, Rng.seeded(4))
    assert torch.equal(again, noisy) and not torch.equal(other, noisy)  # seeded by the trial, nothing else


def test_max_norm_projects_each_units_incoming_weights_onto_the_ball_after_every_step():
    technique = _built("max_norm", c=1.0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Conv1d(1, 2, 3))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[3.0, 4.0, 0, 0], [0.1, 0.2, 0.3, 0.1], [0, 0, 0, 2.0]]))
        model[1].weight.fill_(1.0)
    inside = model[0].weight[1].clone()
    technique.after_step(type("R", (), {"model": model})())
    norms = model[0].weight.norm(dim=1)
    assert torch.allclose(norms[[0, 2]], torch.ones(2)) and torch.equal(model[0].weight[1], inside)
    assert torch.allclose(model[0].weight[0], torch.tensor([0.6, 0.8, 0, 0]))  # the direction kept
    assert torch.allclose(model[1].weight.view(2, -1).norm(dim=1), torch.ones(2))


@pytest.mark.slow
def test_both_examples_run_through_the_command_line_and_are_named_in_the_records(tmp_path):
    suite = write_suite(tmp_path, """
        name: examples
        seeds: 1
        budget: {epochs: 2}
        base:
          dataset: {name: digits, val_size: 200, train_subset: 400}
          model: {name: mlp, depth: 1, width: 32}
          optimizer: {name: momentum, lr: 0.05}
          batch_size: 64
        grid:
          regularizers: [[{name: input_noise, std: 0.3}], [{name: max_norm, c: 2.0}]]
        """)
    r = harness_cli("run", suite, "--plugin", NOISE, "--plugin", MAX_NORM, "--results", tmp_path / "r", "--no-report")
    assert r.returncode == 0, r.stdout + r.stderr
    records = list(scan(tmp_path / "r" / "examples").records.values())
    assert len(records) == 2 and all(x.status == COMPLETED and x.final["test_acc"] > 0.5 for x in records)
    sources = {Path(p["source"]).name for p in records[0].environment["plugins"]}
    assert {"input_noise.py", "max_norm.py"} <= sources, sources


def test_a_plugin_file_named_by_two_paths_loads_once(monkeypatch):
    """The shipped-suite pass loads a suite's plugin by its absolute path, a user by a relative one: the second
    must not import (and register) it again."""
    monkeypatch.chdir(REPO)
    assert load_plugin("examples/plugins/input_noise.py") is load_plugin(str(NOISE))
