"""Models: shapes, parameter counts of the published architectures, stochastic depth, zero-init."""
import pytest
import torch
from torch import nn

from harness.components import NORMS
from harness.errors import ConfigError
from harness.models import MODELS, ModelContext
from harness.models.resnet import DropPath
from harness.suite import resolve_trial


def _ctx(shape=(3, 32, 32), norm="batchnorm", drop_path=0.0, classes=10):
    return ModelContext(shape, classes, lambda f, d: NORMS.build(NORMS.resolve(norm, "n"), f, d), (), drop_path)


def _build(config, **ctx):
    return MODELS.build(MODELS.resolve(config, "m"), _ctx(**ctx))


def _count(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", MODELS.names())
@pytest.mark.parametrize("shape", [(1, 8, 8), (3, 32, 32)])
def test_every_model_maps_images_to_logits_and_trains(name, shape):
    torch.manual_seed(0)
    config = {"name": name, **({"depth": 10, "widen": 1} if name == "wrn" else {})}
    if MODELS.get(name).caps.tokens:  # a language model: token ids in, per-position logits out
        model = _build(config, shape=(shape[-1],), norm="none")
        out = model(torch.randint(0, 10, (4, shape[-1])))
        assert out.shape == (4, 10, shape[-1])
        out.logsumexp(1).mean().backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
        return
    if name == "cnn_3c3d" and shape[1] < 9:
        with pytest.raises(ValueError, match="at least 9x9"):
            _build(config, shape=shape)
        return
    model = _build(config, shape=shape)
    x = torch.randn(4, *shape)
    out = model(x)
    assert out.shape == (4, 10)
    out.logsumexp(1).mean().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())


@pytest.mark.parametrize("config,shape,params", [
    ({"name": "resnet", "depth": 20}, (3, 32, 32), 272_474),  # He et al. 2016: "0.27M"
    ({"name": "resnet", "depth": 56}, (3, 32, 32), 855_770),  # "0.85M"
    ({"name": "wrn", "depth": 16, "widen": 4}, (3, 32, 32), 2_748_890),  # Zagoruyko & Komodakis: 2.7M
    ({"name": "resnet18"}, (3, 32, 32), 11_173_962),  # the CIFAR ResNet-18
])
def test_parameter_counts_match_the_published_architectures(config, shape, params):
    assert _count(_build(config, shape=shape)) == params


def test_deepobs_cnn_parameter_counts_without_normalization():
    assert _count(_build({"name": "cnn_2c2d"}, shape=(1, 28, 28), norm="none")) == 3_274_634  # DeepOBS mnist_2c2d
    assert _count(_build({"name": "cnn_3c3d"}, shape=(3, 32, 32), norm="none")) == 895_210  # DeepOBS cifar10_3c3d


def test_stochastic_depth_uses_the_linear_decay_rule_and_every_block_at_eval():
    torch.manual_seed(0)
    model = _build({"name": "resnet", "depth": 20}, drop_path=0.5)
    rates = [m.p for m in model.modules() if isinstance(m, DropPath)]
    assert rates == pytest.approx([0.5 * l / 9 for l in range(1, 10)])  # p_l = (l / L) p_L
    x = torch.randn(8, 3, 32, 32)
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a, b)  # deterministic at evaluation
    plain = _build({"name": "resnet", "depth": 20}, drop_path=0.0)
    plain.load_state_dict(model.state_dict())
    plain.eval()
    assert torch.allclose(plain(x), a)  # every block used, unscaled: the same network without drops
    model.train()
    outs = torch.stack([model(x) for _ in range(3)])
    assert not torch.allclose(outs[0], outs[1])  # training drops branches at random


def test_drop_path_keeps_the_expectation():
    torch.manual_seed(0)
    x = torch.ones(100_000, 3)
    y = DropPath(0.3)(x)
    assert y[:, 0].unique().tolist() == pytest.approx([0.0, 1 / 0.7])
    assert y.mean().item() == pytest.approx(1.0, rel=0.02)
    assert torch.all(y == y[:, :1])  # a whole sample's branch is dropped, not single units


def test_zero_init_residual_makes_preactivation_blocks_the_identity():
    from harness.components import INITS
    from harness.components.inits import InitContext

    torch.manual_seed(0)
    model = _build({"name": "resnet", "depth": 20, "preact": True, "zero_init_residual": True})
    INITS.build(INITS.resolve("kaiming_normal", "i"), model, InitContext({"name": "relu"}))
    model.after_init()
    model.eval()
    block = model.blocks[1]  # same width, no projection: output = x + branch(x) = x
    x = torch.randn(2, 16, 32, 32)
    assert torch.equal(block(x), x)
    assert all(torch.all(b.norm2.weight == 0) for b in model.blocks)


def test_stochastic_depth_on_an_mlp_is_rejected_at_load_time():
    with pytest.raises(ConfigError, match="has none"):
        resolve_trial({"model": "mlp", "regularizers": ["stochastic_depth"]}, "base")
    resolve_trial({"model": "resnet", "regularizers": ["stochastic_depth"]}, "base")


def test_image_models_reject_flat_inputs():
    with pytest.raises(ValueError, match="image inputs"):
        _build({"name": "resnet"}, shape=(40,))
