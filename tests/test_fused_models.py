"""Stacked models against the unfused torch modules: K harness models, each built with its own seed and
init scheme, stacked; slice k fed its own batch must give model k's outputs, gradients, running
statistics and dropout masks."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.components import INITS, NORMS, REGULARIZERS
from harness.components.inits import InitContext
from harness.components.layers import VanillaDropout
from harness.components.regularizers import RegContext
from harness.fused.models import StackedDropout, slice_losses, stack_models, to_grouped, unstack
from harness.models import MODELS, ModelContext

INIT_SCHEMES = ["kaiming_normal", "xavier_uniform", {"name": "normal", "std": 0.05, "bias": 0.1}]
# fp32 on the CPU. The MLPs' outputs come out bit for bit equal (baddbmm, the per-channel norm kernels);
# weight gradients differ in the last bits (bmm's backward sums in another order than mm's, ~1e-7
# on gradients of order 1), well inside the brief's tolerance.
TOL = {"rtol": 1e-5, "atol": 1e-6}
# A grouped convolution runs another CPU kernel than K separate ones: the first conv's weight
# gradient differs by up to ~4e-6 on gradients of order 2, and a conv bias in front of BatchNorm has
# a true gradient of 0, so its computed ~1e-6 is rounding noise with no relative accuracy; outputs
# may differ by ~2e-6 on activations of order 1 (seen at other shapes). Hence atol 1e-5 for CNNs.
CONV_TOL = {"rtol": 1e-5, "atol": 1e-5}


def _dropout(p: float, variant: str = "inverted"):
    spec = REGULARIZERS.resolve({"name": "dropout", "p": p, "variant": variant}, "r")
    return REGULARIZERS.build(spec, RegContext(10))


def _model(name: str, shape: tuple, seed: int, init, norm="none", activation="relu", dropout=None, **model):
    """A harness model built and initialized as the engine does it, from the trial's seed."""
    torch.manual_seed(seed)
    ctx = ModelContext(shape, 10, lambda f, d: NORMS.build(NORMS.resolve(norm, "n"), f, d))
    if dropout is not None:
        ctx = dropout.configure_model(ctx)
    config = MODELS.resolve({"name": name, "activation": activation, **model}, "m")
    net = MODELS.build(config, ctx)
    INITS.build(INITS.resolve(init, "i"), net, InitContext(config["activation"], torch.randn(16, *shape)))
    with torch.no_grad():  # norm scales and shifts that differ per trial, as after some training
        for m in net.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.LayerNorm, nn.GroupNorm)):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    return net


def _models(name, shape, K, **kw):
    return [_model(name, shape, seed=10 + k, init=INIT_SCHEMES[k % 3], **kw) for k in range(K)]


def _check_against_unfused(models, shape, N=8, steps=3, tol=TOL):
    """Train-mode forwards on different batches per slice, gradients of the summed per-slice losses,
    running statistics after the steps, then eval-mode outputs: slice k against model k."""
    K = len(models)
    stacked = stack_models(models)
    gen = torch.Generator().manual_seed(0)
    for _ in range(steps):
        x = torch.randn(K, N, *shape, generator=gen) * 2 + 0.5
        y = torch.randint(0, 10, (K, N), generator=gen)
        stacked.zero_grad()
        out = stacked(x)
        assert out.shape == (K, N, 10)
        slice_losses(F.cross_entropy, out, y).sum().backward()
        for k, m in enumerate(models):
            m.zero_grad()
            ref = m(x[k])
            F.cross_entropy(ref, y[k]).backward()
            torch.testing.assert_close(out[k], ref, **tol)
            grads = dict(m.named_parameters())
            for pname, p in stacked.named_parameters():
                torch.testing.assert_close(p.grad[k], grads[pname].grad, **tol, msg=f"slice {k} grad {pname}")
    for k, m in enumerate(models):
        state, mine = m.state_dict(), unstack(stacked, k)
        assert mine.keys() == state.keys()
        for key in state:  # parameters equal exactly; running statistics as the batch statistics did
            torch.testing.assert_close(mine[key], state[key], **tol, msg=f"slice {k} {key}")
    stacked.eval()
    x = torch.randn(K, N, *shape, generator=gen)
    out = stacked(x)
    for k, m in enumerate(models):
        m.eval()
        torch.testing.assert_close(out[k], m(x[k]), **tol)
    return stacked


# --- mlp --------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm", {"name": "groupnorm", "groups": 4}])
@pytest.mark.parametrize("activation", ["relu", "tanh"])
def test_stacked_mlp_matches_each_unfused_mlp(norm, activation):
    models = _models("mlp", (1, 8, 8), 3, norm=norm, activation=activation, depth=2, width=32)
    stacked = _check_against_unfused(models, (1, 8, 8))
    if norm == "batchnorm":
        assert int(stacked[2].num_batches_tracked) == 3


def test_stacked_mlp_with_maxout_and_leaky_relu():
    _check_against_unfused(_models("mlp", (1, 8, 8), 3, activation={"name": "maxout", "pieces": 3},
                                   norm="batchnorm", depth=2, width=16), (1, 8, 8))
    _check_against_unfused(_models("mlp", (1, 8, 8), 2, activation={"name": "leaky_relu", "slope": 0.2},
                                   depth=1, width=16), (1, 8, 8))


def test_batchnorm_momentum_none_is_a_cumulative_average_per_slice():
    models = _models("mlp", (1, 8, 8), 2, norm="batchnorm", depth=1, width=16)
    for m in models:
        m[2].momentum = None
    _check_against_unfused(models, (1, 8, 8), steps=4)


# --- cnns -------------------------------------------------------------------------------------

@pytest.mark.slow
@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
def test_stacked_cnn_2c2d_matches_each_unfused_cnn(norm):
    _check_against_unfused(_models("cnn_2c2d", (1, 28, 28), 2, norm=norm), (1, 28, 28), N=4, steps=2,
                           tol=CONV_TOL)


@pytest.mark.slow
@pytest.mark.parametrize("norm", ["none", "batchnorm", {"name": "groupnorm", "groups": 8}])
def test_stacked_cnn_3c3d_matches_each_unfused_cnn(norm):
    _check_against_unfused(_models("cnn_3c3d", (3, 32, 32), 2, norm=norm, activation="tanh"), (3, 32, 32), N=4,
                           steps=2, tol=CONV_TOL)


def test_cnn_takes_the_grouped_layout_as_it_is():
    stacked = stack_models(_models("cnn_2c2d", (1, 28, 28), 2))
    x = torch.randn(2, 3, 1, 28, 28)
    assert torch.equal(stacked(x), stacked(to_grouped(x)))
    assert torch.equal(to_grouped(x)[:, 1:2], x[1])  # slice k's channels at k*C:(k+1)*C


def test_hand_built_sequential_with_maxout_and_pooling_on_feature_maps():
    from harness.components.layers import Maxout
    torch.manual_seed(0)
    models = [nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.GroupNorm(2, 8), Maxout(2), nn.AvgPool2d(2),
                            nn.Flatten(), nn.Linear(64, 10, bias=False)) for _ in range(3)]
    _check_against_unfused(models, (3, 8, 8), N=5, tol=CONV_TOL)


# --- dropout ----------------------------------------------------------------------------------

def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_per_slice_dropout_rates_scaling_and_eval():
    p = [0.0, 0.3, 0.6]
    layer = StackedDropout(torch.tensor(p), _gens(1, 2, 3))
    x = torch.ones(3, 1000, 100)
    y = layer(x)
    n = x[0].numel()
    for k, pk in enumerate(p):
        zeros = (y[k] == 0).float().mean().item()
        assert abs(zeros - pk) <= 5 * (pk * (1 - pk) / n) ** 0.5  # within 5 binomial standard deviations
        kept = y[k][y[k] != 0]
        torch.testing.assert_close(kept, torch.full_like(kept, 1 / (1 - pk)))
    layer.eval()
    assert torch.equal(layer(x), x)


def test_slice_masks_equal_what_torch_and_vanilla_dropout_draw_from_the_same_generator_state():
    x = torch.randn(3, 64, 50)
    for vanilla, make in [(False, nn.Dropout), (True, VanillaDropout)]:
        y = StackedDropout([0.2, 0.5, 0.7], _gens(7, 8, 9), vanilla=vanilla)(x)
        for k, (pk, seed) in enumerate(zip([0.2, 0.5, 0.7], [7, 8, 9])):
            torch.manual_seed(seed)  # the unfused layers draw from the global generator
            assert torch.equal(y[k], make(pk)(x[k])), (vanilla, k)
    layer = StackedDropout([0.2, 0.5, 0.0], _gens(7, 8, 9), vanilla=True).eval()
    for k, pk in enumerate([0.2, 0.5, 0.0]):
        assert torch.equal(layer(x)[k], VanillaDropout(pk).eval()(x[k]))


def test_a_slice_mask_depends_only_on_its_own_generator():
    x = torch.ones(3, 32, 40)
    a = StackedDropout([0.5, 0.5, 0.0], _gens(1, 2, 3))(x)
    gens = _gens(100, 2, 3)
    b = StackedDropout([0.5, 0.5, 0.0], gens)(x)
    assert not torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.equal(gens[2].get_state(), _gens(3)[0].get_state())  # p = 0 draws nothing, as torch's does


@pytest.mark.parametrize("variant", ["inverted", "vanilla"])
def test_stacked_mlp_with_dropout_is_each_trial_with_its_own_random_stream(variant):
    """Trial k's dropout layers draw from its global generator in layer order; slice k's from its own."""
    ps, seeds = [0.1, 0.5, 0.0], [5, 6, 7]
    models = [_model("mlp", (1, 8, 8), 10 + k, INIT_SCHEMES[k], norm="batchnorm", dropout=_dropout(p, variant),
                     depth=2, width=32) for k, p in enumerate(ps)]
    stacked = stack_models(models, generators=_gens(*seeds))
    assert [m.p for m in stacked if isinstance(m, StackedDropout)] == [tuple(ps)] * 2
    x = torch.randn(3, 16, 1, 8, 8)
    outs = [stacked(x), stacked(x)]  # the generators carry on from one forward to the next
    for k, m in enumerate(models):
        torch.manual_seed(seeds[k])
        for out in outs:
            torch.testing.assert_close(out[k], m(x[k]), **TOL)
    stacked.eval()
    out = stacked(x)
    for k, m in enumerate(models):
        torch.testing.assert_close(out[k], m.eval()(x[k]), **TOL)


# --- unstack and refusals ---------------------------------------------------------------------

@pytest.mark.parametrize("name,shape,kw", [
    ("mlp", (1, 8, 8), {"norm": "batchnorm", "dropout": _dropout(0.3), "depth": 2, "width": 16}),
    ("mlp", (1, 8, 8), {"norm": "layernorm", "activation": {"name": "maxout", "pieces": 2}, "width": 8}),
    ("cnn_2c2d", (1, 28, 28), {"norm": "batchnorm"}),
    ("cnn_3c3d", (3, 32, 32), {"norm": "layernorm"}),
])
def test_unstack_gives_each_trial_its_own_state_dict_exactly(name, shape, kw):
    models = _models(name, shape, 2, **kw)
    for k, m in enumerate(models):  # running statistics that differ per trial
        for b in m.buffers():
            if b.is_floating_point():
                b.add_(k + 0.5)
    stacked = stack_models(models)
    for k, m in enumerate(models):
        before = {key: v.clone() for key, v in m.state_dict().items()}
        mine = unstack(stacked, k)
        assert {key: v.shape for key, v in mine.items()} == {key: v.shape for key, v in before.items()}
        m.load_state_dict(mine, strict=True)
        assert all(torch.equal(m.state_dict()[key], before[key]) for key in before)


def test_unsupported_models_and_mismatched_trials_are_refused_by_layer():
    def resnet(width=1, drop_path=0.0):
        return MODELS.build(MODELS.resolve({"name": "resnet", "depth": 8, "width": width}, "m"),
                            ModelContext((3, 32, 32), 10, lambda f, d: nn.Identity(), drop_path=drop_path))

    with pytest.raises(ValueError, match=r"stochastic depth is not supported"):
        stack_models([resnet(drop_path=0.2), resnet(drop_path=0.2)])
    with pytest.raises(ValueError, match="differ in their layers or widths"):
        stack_models([resnet(), resnet(width=2)])
    with pytest.raises(ValueError, match="not Linear"):
        stack_models([nn.Linear(2, 2), nn.Linear(2, 2)])
    dropconnect = REGULARIZERS.build(REGULARIZERS.resolve({"name": "dropconnect"}, "r"), RegContext(10))
    a, b = _models("mlp", (1, 8, 8), 2, width=8)
    for m in (a, b):
        dropconnect.modify_model(m)
    with pytest.raises(ValueError, match=r"layer 1 \(DropConnectLinear\)"):
        stack_models([a, b])
    a, b = _models("mlp", (1, 8, 8), 2, norm="batchnorm", width=8)
    b[2].momentum = 0.2
    with pytest.raises(ValueError, match=r"layer 2 \(BatchNorm1d\).*momentum"):
        stack_models([a, b])
    a, b = _models("mlp", (1, 8, 8), 1, width=8)[0], _models("mlp", (1, 8, 8), 1, width=16)[0]
    with pytest.raises(ValueError, match="weight shape"):
        stack_models([a, b])
