"""Loss landscapes (Li et al. 2018) of a digits MLP: the path starts at the init and ends at the final
model, the 2-D slice is centred on the final model, directions are filter-normalized, BatchNorm
statistics are recomputed per point, and stored weights give the numbers a retrained trial gives."""
from __future__ import annotations

import json

import pytest
import torch
from conftest import write_suite
from torch import nn

from harness.data import make_loader
from harness.engine.checkpoint import load_weights, weights_path
from harness.engine.loop import build, evaluate
from harness.errors import UsageError
from harness.landscape import landscape, random_direction, recompute_batchnorm
from harness.launch.trial import execute
from harness.suite import load_suite

SUITE = """
name: land
seeds: [0]
budget: {epochs: 4}
base:
  dataset: {name: digits, val_size: 300}
  model: {name: mlp, depth: 1, width: 32}
  optimizer: {name: sgd, lr: 0.1}
  batch_size: 64
  save_weights: true
"""
SMALL = dict(points=21, grid=9)  # the defaults (41 points, 21x21) cost time, not coverage
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """One trial run with save_weights, its landscape from the stored weights and from a retrain."""
    tmp = tmp_path_factory.mktemp("landscape")
    spec = load_suite(write_suite(tmp, SUITE)).trials[0]
    results = tmp / "results" / "land"
    assert execute(spec, results).status == "completed"
    stored = landscape(spec, results, tmp / "stored", **SMALL)
    retrained = landscape(spec, None, tmp / "retrained", **SMALL)
    data = {k: json.loads((tmp / k / f"{spec.trial_id}.json").read_text()) for k in ("stored", "retrained")}
    return spec, results, stored, retrained, data


def _independent(spec, state=None) -> tuple[float, float, float, float]:
    """Train and test loss and accuracy of the init model (or ``state``), with other batches than landscape's."""
    t = build(spec.config, spec.seed, CPU)
    if state is not None:
        t.model.load_state_dict(state)
    return tuple(v for split in ("train", "test")
                 for v in evaluate(t.model, make_loader(t.data, split, 300, limit=2048, mode=t.pipeline, device=CPU)))


def test_the_path_starts_at_the_init_model_and_ends_at_the_final_one(run):
    spec, results, _, _, data = run
    line = data["stored"]["line"]
    at = {a: i for i, a in enumerate(line["alpha"])}
    assert line["alpha"][0] == -0.5 and line["alpha"][-1] == 1.5 and len(line["alpha"]) == 21
    final = load_weights(weights_path(results, spec.trial_id), spec.trial_id)
    for alpha, state in ((0.0, None), (1.0, final)):
        got = [line[k][at[alpha]] for k in ("train_loss", "train_acc", "test_loss", "test_acc")]
        assert got == pytest.approx(_independent(spec, state), rel=1e-5)


def test_the_slice_is_centred_on_the_final_model_and_rises_around_it(run):
    _, _, stored, _, data = run
    grid = data["stored"]["plane"]["train_loss"]
    coords = data["stored"]["plane"]["coords"]
    assert len(grid) == len(coords) == 9 and coords[4] == 0.0 and coords[0] == -1.0
    assert grid[4][4] == stored["final_loss"]  # the very same weights and batches
    assert stored["edge_over_centre"] > 2  # the border of the slice lies well above the minimum


def test_a_trained_trial_ends_lower_and_its_files_are_written(run):
    spec, _, stored, _, data = run
    assert stored["final_loss"] < 0.5 * stored["init_loss"]
    assert stored["barrier"] >= 0 and stored["segment_max_loss"] >= stored["init_loss"]
    for kind in ("1d", "2d"):
        assert open(stored["files"][kind], "rb").read(4) == b"\x89PNG"
    saved = data["stored"]
    assert saved["config"] == spec.config and saved["seed"] == spec.seed and saved["trial_id"] == spec.trial_id
    assert saved["weights"]["source"] == "stored" and saved["method"]["samples"]["train"] > 1000


def test_stored_weights_give_the_numbers_of_a_retrained_trial(run):
    _, _, stored, retrained, data = run
    assert (stored["weights"], retrained["weights"]) == ("stored", "retrained")
    assert data["retrained"]["weights"]["status"] == "completed"
    for key in ("init_loss", "final_loss", "barrier", "edge_over_centre"):
        assert retrained[key] == pytest.approx(stored[key], rel=1e-5)
    flat = [v for row in data["stored"]["plane"]["train_loss"] for v in row]
    again = [v for row in data["retrained"]["plane"]["train_loss"] for v in row]
    assert again == pytest.approx(flat, rel=1e-5)
    assert data["retrained"]["line"]["test_acc"] == pytest.approx(data["stored"]["line"]["test_acc"])


def test_directions_are_filter_normalized_and_leave_biases_and_norms_alone():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.Flatten(), nn.Linear(8 * 4 * 4, 10))
    final = {n: p.detach() * torch.rand(p.shape[0]).view(-1, *[1] * (p.dim() - 1)) * 5  # filters of unequal norms
             for n, p in net.named_parameters()}
    d = random_direction(final, torch.Generator().manual_seed(3))
    assert set(d) == set(final)
    for name, w in final.items():
        if w.dim() == 1:  # conv and linear biases, BatchNorm's scale and shift
            assert torch.count_nonzero(d[name]) == 0
            continue
        norms = d[name].flatten(1).norm(dim=1)
        assert torch.allclose(norms, w.flatten(1).norm(dim=1), rtol=1e-5)
        assert not torch.allclose(d[name] / norms.view(-1, *[1] * (w.dim() - 1)),
                                  w / norms.view(-1, *[1] * (w.dim() - 1)))  # rescaled, not a copy of the weights
    same = random_direction(final, torch.Generator().manual_seed(3))
    other = random_direction(final, torch.Generator().manual_seed(4))
    assert torch.equal(same["0.weight"], d["0.weight"]) and not torch.equal(other["0.weight"], d["0.weight"])


def test_batchnorm_statistics_are_recomputed_over_every_sample_with_dropout_off():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 4), nn.Dropout(0.5), nn.BatchNorm1d(4, momentum=0.1))
    x = torch.randn(1300, 5) * 3 + 1
    batches = [(x[:1024], None), (x[1024:], None)]  # a short last batch weighs by its samples
    recompute_batchnorm(net, batches)
    bn = net[2]
    with torch.no_grad():
        h = net[0](x)
    assert torch.allclose(bn.running_mean, h.mean(0), atol=1e-5)
    expected = (1024 * h[:1024].var(0) + 276 * h[1024:].var(0)) / 1300
    assert torch.allclose(bn.running_var, expected, rtol=1e-5)
    assert bn.momentum == 0.1 and not net.training and not bn.training


def test_what_cannot_be_plotted_is_refused(tmp_path):
    suite = load_suite(write_suite(tmp_path, SUITE), ["base.optimizer.lr=1.0e5", "budget.epochs=1"])
    with pytest.raises(UsageError, match="diverged"):
        landscape(suite.trials[0], None, tmp_path / "out", **SMALL)
    ensemble = load_suite(write_suite(tmp_path, SUITE), ["base.ensemble.members=2"]).trials[0]
    with pytest.raises(UsageError, match="ensemble"):
        landscape(ensemble, None, tmp_path / "out")
    with pytest.raises(UsageError, match="grid >= 2"):
        landscape(ensemble, None, tmp_path / "out", grid=1)
    assert not (tmp_path / "out").exists()
