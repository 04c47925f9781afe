"""The example plugins in examples/plugins: Lion (the plugin and the built-in) against its update rule
computed by hand and against each other, soft
orthogonality against its definition and gradient, and both through the real command line, where
the record must name each plugin with its source hash and version.

Registries are global to a process and a name registers once, so each plugin is loaded once, by a
module fixture (``load_plugin`` caches by path); not at import, so collection (and the registry-wide
parametrized tests of other modules) sees only the built-in components."""
from __future__ import annotations

import hashlib

import pytest
import torch
from conftest import REPO, harness_cli, write_suite
from torch import nn

from harness.components import OPTIMIZERS, REGULARIZERS
from harness.components.regularizers import RegContext
from harness.errors import ConfigError
from harness.plugins import load_plugin
from harness.spec import COMPLETED
from harness.store import scan

PLUGINS = REPO / "examples" / "plugins"
LION, ORTHOGONAL = PLUGINS / "lion.py", PLUGINS / "orthogonal.py"


@pytest.fixture(scope="module", autouse=True)
def plugins():
    return {path.stem: load_plugin(str(path)) for path in (LION, ORTHOGONAL)}


# --- Lion ----------------------------------------------------------------------------------

LIONS = pytest.mark.parametrize("name", ["lion", "lion_example"])  # the built-in and the plugin


def _lion(params, name="lion", **config):
    return OPTIMIZERS.build(OPTIMIZERS.resolve({"name": name, **config}, "x"), params)


# Chosen so that β1 vs β2 in the momentum update matters: at step 2 the second coordinate's
# c = 0.9·m + 0.1·g has m = 0.01·g1 with β2 = 0.99 (c = 0.009 − 0.05 < 0) but m = 0.1·g1 with β1
# (c = 0.09 − 0.05 > 0), so the sign flips.
GRADS = [[1.0, 1.0, -2.0, 0.5], [0.3, -0.5, 1.0, -0.2], [-0.7, 0.2, 0.4, 0.1]]


def _by_hand(theta, grads, lr, beta1, beta2, wd):
    """Chen et al. 2023, Algorithm 2, one coordinate at a time in plain floats."""
    theta, m = list(theta), [0.0] * len(theta)
    for g in grads:
        for i, gi in enumerate(g):
            c = beta1 * m[i] + (1 - beta1) * gi
            sign = (c > 0) - (c < 0)
            theta[i] = theta[i] * (1 - lr * wd) - lr * sign
            m[i] = beta2 * m[i] + (1 - beta2) * gi
    return theta


def _run(opt, w, grads):
    for g in grads:
        w.grad = torch.tensor(g, dtype=w.dtype)
        opt.step()


@LIONS
def test_lion_schema_comes_from_its_signature(name):
    entry = OPTIMIZERS.get(name)
    assert entry.meta["has_momentum"] is True
    assert entry.meta["space"] == {"lr": {"loguniform": [1e-5, 1e-2]}, "beta1": {"log1m": [0.5, 0.99]}}
    assert OPTIMIZERS.resolve(name, "o") == {"name": name, "lr": 1e-4, "beta1": 0.9, "beta2": 0.99,
                                              "weight_decay": 0.0}
    with pytest.raises(ConfigError, match="beta2"):
        OPTIMIZERS.resolve({"name": name, "beta2": 1.0}, "o")  # Range(ge=0, lt=1)
    with pytest.raises(ConfigError, match="lr"):
        OPTIMIZERS.resolve({"name": name, "lr": 0.0}, "o")


@LIONS
def test_lion_steps_match_the_update_rule_with_decoupled_decay_and_beta2_momentum(name):
    theta0 = [0.5, -0.25, 1.5, 2.0]
    lr, wd = 0.1, 0.5
    w = torch.tensor(theta0, dtype=torch.float64, requires_grad=True)
    opt = _lion([w], name, lr=lr, weight_decay=wd)  # betas at their defaults, 0.9 and 0.99
    for n in (1, 2, 3):
        _run(opt, w, GRADS[n - 1:n])
        expect = _by_hand(theta0, GRADS[:n], lr, 0.9, 0.99, wd)
        torch.testing.assert_close(w.detach(), torch.tensor(expect, dtype=torch.float64), rtol=0, atol=1e-12)
    # The check can fail: the common bug (β1 in the momentum update) ends elsewhere.
    wrong = _by_hand(theta0, GRADS, lr, 0.9, 0.9, wd)
    assert not torch.allclose(w.detach(), torch.tensor(wrong, dtype=torch.float64))


@LIONS
def test_lion_moves_every_coordinate_by_exactly_lr_without_decay(name):
    lr = 2.0 ** -4  # dyadic, like θ, so θ − lr and its difference are exact in float64
    w = torch.tensor([0.5, -0.25, 1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = _lion([w], name, lr=lr)
    for g in GRADS:
        before = w.detach().clone()
        _run(opt, w, [g])
        assert torch.equal((w.detach() - before).abs(), torch.full_like(before, lr))


@LIONS
def test_lion_resumes_from_its_state_dict(name):
    # The harness checkpoints the optimizer every epoch; the momentum must come back with it.
    w = torch.tensor([0.5, -0.25, 1.5, 2.0], dtype=torch.float64, requires_grad=True)
    opt = _lion([w], name, lr=0.1, weight_decay=0.5)
    _run(opt, w, GRADS[:1])
    saved, w2 = opt.state_dict(), w.detach().clone().requires_grad_()
    _run(opt, w, GRADS[1:])
    resumed = _lion([w2], name, lr=0.1, weight_decay=0.5)
    resumed.load_state_dict(saved)
    _run(resumed, w2, GRADS[1:])
    assert torch.equal(w.detach(), w2.detach())


# --- soft orthogonality ----------------------------------------------------------------------

STRENGTH = 0.3


def _penalty():
    return REGULARIZERS.build(REGULARIZERS.resolve({"name": "orthogonal", "strength": STRENGTH}, "r"),
                              RegContext(num_classes=10)).penalty


@pytest.mark.parametrize("shape", [(4, 9), (9, 4), (6, 6)], ids=["wide", "tall", "square"])
def test_orthogonal_penalty_is_zero_for_orthogonal_weights_and_positive_otherwise(shape):
    torch.manual_seed(0)
    layer = nn.Linear(shape[1], shape[0])
    nn.init.orthogonal_(layer.weight)  # orthonormal rows (wide) or columns (tall)
    assert _penalty()(layer).abs().item() < 1e-6
    with torch.no_grad():
        layer.weight.mul_(1.1)
    # The smaller Gram is now 1.21·I of size min(shape): each diagonal entry is off by 0.21. (The
    # larger Gram of a non-square W would add max(shape) − min(shape) more, and could never be 0.)
    expect = STRENGTH * min(shape) * 0.21 ** 2
    assert _penalty()(layer).item() == pytest.approx(expect, rel=1e-5)


def test_orthogonal_conv_weights_are_flattened_to_out_by_fan_in():
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 4, 3)  # (4, 2, 3, 3) → a wide 4 × 18 matrix
    nn.init.orthogonal_(conv.weight)
    assert _penalty()(conv).abs().item() < 1e-6
    nn.init.normal_(conv.weight)
    assert _penalty()(conv).item() > 0.1


def test_orthogonal_gradient_is_4_strength_gram_minus_identity_times_w():
    torch.manual_seed(0)
    layer = nn.Linear(9, 4)  # W is 4 × 9, wide
    nn.init.normal_(layer.weight)
    _penalty()(layer).backward()
    w = layer.weight.detach()
    expect = 4 * STRENGTH * (w @ w.T - torch.eye(4)) @ w
    torch.testing.assert_close(layer.weight.grad, expect, rtol=1e-5, atol=1e-5)
    assert layer.bias.grad is None  # never entered the penalty


def test_orthogonal_leaves_out_biases_and_normalization_parameters():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 4), nn.LayerNorm(4), nn.BatchNorm1d(4))
    nn.init.orthogonal_(model[0].weight)
    with torch.no_grad():
        model[0].bias.fill_(5.0)
        model[1].weight.fill_(3.0)
        model[2].weight.fill_(3.0)
    assert _penalty()(model).abs().item() < 1e-6


def test_orthogonal_with_zero_strength_adds_no_penalty():
    parts = REGULARIZERS.build(REGULARIZERS.resolve({"name": "orthogonal", "strength": 0.0}, "r"),
                               RegContext(num_classes=10))
    assert parts.penalty is None


def test_the_built_in_lion_follows_the_plugins_trajectory_on_a_real_model():
    # Multi-tensor kernels, several parameter groups and skipped (gradless) tensors: the built-in must
    # take the steps the one-tensor-at-a-time plugin takes, to rounding.
    def train(name):
        torch.manual_seed(0)
        net = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3), nn.Linear(3, 3))
        net[3].requires_grad_(False)
        start = net[0].weight.detach().clone()
        groups = [{"params": net[0].parameters()}, {"params": net[2].parameters(), "lr": 3e-3}]
        opt = _lion(groups, name, lr=1e-2, weight_decay=0.3)
        gen = torch.Generator().manual_seed(1)
        for _ in range(40):
            x, y = torch.randn(16, 6, generator=gen), torch.randint(0, 3, (16,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        assert not torch.allclose(net[0].weight, start)  # it trained
        return [p.detach().clone() for p in net.parameters()]

    for a, b in zip(train("lion"), train("lion_example")):  # one sign flip would move a weight by 2·lr
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


# --- both through the command line -----------------------------------------------------------

SUITE = """
name: plugins
seeds: [0]
budget: {epochs: 2}
base:
  dataset: {name: digits, val_size: 200, train_subset: 300}
  model: {name: mlp, depth: 1, width: 16}
  optimizer: {name: lion_example, lr: 0.001}
  regularizers: [{name: orthogonal, strength: 0.001}]
  batch_size: 50
"""


@pytest.mark.slow
def test_plugins_run_through_the_cli_and_are_named_in_the_record(tmp_path):
    r = harness_cli("run", write_suite(tmp_path, SUITE), "--results", tmp_path, "--no-report",
                    "--plugin", LION, "--plugin", ORTHOGONAL)
    assert r.returncode == 0, r.stderr[-3000:]
    found = scan(tmp_path / "plugins")
    assert not found.corrupt
    (record,) = found.records.values()
    assert record.status == COMPLETED, record.reason
    assert record.config["optimizer"] == {"name": "lion_example", "lr": 0.001, "beta1": 0.9, "beta2": 0.99,
                                          "weight_decay": 0.0}
    assert record.config["regularizers"] == [{"name": "orthogonal", "strength": 0.001}]
    loaded = {p["source"]: p for p in record.environment["plugins"]}
    for path in (LION, ORTHOGONAL):
        entry = loaded[str(path)]
        assert entry["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
        assert entry["version"] == "1.0"
