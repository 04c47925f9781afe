"""Each technique checked against its definition, and every registered component exercised."""
import math

import pytest
import torch
from torch import nn

from harness.components import ACTIVATIONS, INITS, LOSSES, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
from harness.models import MODELS, ModelContext


def _ctx(norm="none", hidden=()):
    return ModelContext((1, 8, 8), 10, lambda f, d: NORMS.build(NORMS.resolve(norm, "n"), f, d), tuple(hidden))


# --- optimizers: one parametrized test over the registry, then the update rules -------------

@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_reduces_a_quadratic(name):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(10))
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": name, "lr": 0.05}, "o"), [w])
    start = (w ** 2).sum().item()
    for _ in range(50):
        opt.zero_grad()
        (w ** 2).sum().backward()
        opt.step()
    assert (w ** 2).sum().item() < 0.5 * start


def _steps(name, grads, **params):
    w = nn.Parameter(torch.zeros(1))
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": name, **params}, "o"), [w])
    out = []
    for g in grads:
        opt.zero_grad()
        w.grad = torch.tensor([g])
        opt.step()
        out.append(w.item())
    return out


def test_sgd_step_is_minus_lr_times_gradient():
    assert _steps("sgd", [2.0], lr=0.1) == pytest.approx([-0.2])


def test_polyak_momentum_accumulates_velocity():
    # v1 = g, v2 = mu*v1 + g;  w2 = -lr*(v1 + v2)
    lr, mu, g = 0.1, 0.9, 1.0
    assert _steps("momentum", [g, g], lr=lr, momentum=mu) == pytest.approx([-lr * g, -lr * (g + (mu * g + g))])


def test_nesterov_uses_the_look_ahead_form():
    # PyTorch's Nesterov (Sutskever et al. 2013): v = mu*v + g; step = g + mu*v
    lr, mu, g = 0.1, 0.9, 1.0
    v1 = g
    v2 = mu * v1 + g
    expected = [-lr * (g + mu * v1), -lr * (g + mu * v1) - lr * (g + mu * v2)]
    assert _steps("nesterov", [g, g], lr=lr, momentum=mu) == pytest.approx(expected)


def test_adam_first_step_is_lr_in_the_gradient_sign_thanks_to_bias_correction():
    for g in (1e-2, 3.0, -50.0):  # |g| >> eps
        assert _steps("adam", [g], lr=0.01) == pytest.approx([-0.01 * math.copysign(1, g)], rel=1e-4)


# --- schedules ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_starts_at_the_base_lr(name):
    factor = SCHEDULES.build(SCHEDULES.resolve(name, "s"), 100)
    assert factor(0) == pytest.approx(1.0)
    assert all(0 <= factor(t) <= 1 for t in range(101))


def test_cosine_follows_sgdr_annealing():
    factor = SCHEDULES.build({"name": "cosine", "min_ratio": 0.1}, 100)
    assert factor(100) == pytest.approx(0.1)
    assert factor(50) == pytest.approx(0.55)
    assert factor(25) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))


# --- inits ----------------------------------------------------------------------------------

def _deep_relu_variance_ratio(init: str, depth: int = 20, width: int = 512) -> float:
    torch.manual_seed(0)
    layers = [nn.Linear(width, width) for _ in range(depth)]
    model = nn.Sequential(*layers)
    INITS.build(INITS.resolve(init, "i"), model, "relu")
    x = torch.randn(2048, width)
    variances = []
    with torch.no_grad():
        for layer in layers:
            pre = layer(x)
            variances.append(pre.var().item())
            x = torch.relu(pre)
    return variances[-1] / variances[0]


def test_kaiming_keeps_relu_activation_variance_across_depth():
    # Constant in expectation; finite width makes the 20-layer product wander by a factor ~1.5.
    # Xavier (next test) loses a factor 2 per layer, 2^-19 overall, so the bounds separate them.
    assert 1 / 3 < _deep_relu_variance_ratio("kaiming_normal") < 3


def test_xavier_lets_relu_activations_shrink_with_depth():
    # The failure Kaiming init fixes: each ReLU layer halves the variance under Xavier.
    assert _deep_relu_variance_ratio("xavier_normal") < 0.01


def test_xavier_normal_variance_matches_glorot():
    torch.manual_seed(0)
    layer = nn.Linear(400, 200)
    INITS.build(INITS.resolve("xavier_normal", "i"), layer, "tanh")
    assert layer.weight.var().item() == pytest.approx(2 / (400 + 200), rel=0.05)
    assert torch.all(layer.bias == 0)


@pytest.mark.parametrize("name", INITS.names())
def test_every_init_zeroes_biases_and_changes_weights(name):
    torch.manual_seed(0)
    model = MODELS.build(MODELS.resolve("mlp", "m"), _ctx())
    before = [p.clone() for p in model.parameters()]
    INITS.build(INITS.resolve(name, "i"), model, "relu")
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(torch.all(m.bias == 0) for m in linears)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))


# --- norms ----------------------------------------------------------------------------------

def test_batchnorm_uses_batch_statistics_in_training_and_running_statistics_in_eval():
    torch.manual_seed(0)
    bn = NORMS.build(NORMS.resolve("batchnorm", "n"), 16, 1)
    x = torch.randn(512, 16) * 3 + 5
    bn.train()
    y = bn(x)
    assert y.mean(0).abs().max() < 1e-4 and (y.var(0, unbiased=False) - 1).abs().max() < 1e-3
    bn.eval()
    # After one batch the running mean moved 10% of the way to 5: evaluation does not re-normalize.
    assert bn(x).mean().item() > 3


@pytest.mark.parametrize("name", NORMS.names())
@pytest.mark.parametrize("dims,shape", [(1, (4, 6)), (2, (4, 6, 5, 5))])
def test_every_norm_keeps_the_shape(name, dims, shape):
    layer = NORMS.build(NORMS.resolve(name, "n"), 6, dims)
    assert layer(torch.randn(*shape)).shape == shape


# --- activations, losses, models ------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_is_elementwise_and_has_an_init_gain(name):
    act = ACTIVATIONS.build(ACTIVATIONS.resolve(name, "a"))
    x = torch.linspace(-3, 3, 7)
    assert act(x).shape == x.shape
    assert nn.init.calculate_gain(ACTIVATIONS.get(name).meta["gain"]) > 0


def test_label_smoothing_matches_its_definition():
    logits, y = torch.randn(5, 10), torch.tensor([0, 1, 2, 3, 4])
    loss = LOSSES.build({"name": "cross_entropy", "label_smoothing": 0.1})(logits, y)
    target = torch.full((5, 10), 0.1 / 10)
    target[torch.arange(5), y] += 0.9
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mlp_has_depth_hidden_layers_with_norm_and_regularizer_layers():
    parts = REGULARIZERS.build(REGULARIZERS.resolve({"name": "dropout", "p": 0.3}, "r"))
    model = MODELS.build(MODELS.resolve({"name": "mlp", "depth": 3, "width": 20, "activation": "tanh"}, "m"),
                         _ctx("batchnorm", [parts.hidden]))
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("Linear") == 4 and kinds.count("BatchNorm1d") == 3
    assert kinds.count("Tanh") == 3 and kinds.count("Dropout") == 3
    assert model(torch.randn(7, 1, 8, 8)).shape == (7, 10)


# --- regularizers ---------------------------------------------------------------------------

def test_inverted_dropout_keeps_the_expectation_and_is_identity_at_eval():
    torch.manual_seed(0)
    layer = REGULARIZERS.build({"name": "dropout", "p": 0.4}).hidden()
    x = torch.full((200_000,), 2.0)
    layer.train()
    y = layer(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)  # drop rate p
    assert y[y != 0].unique().tolist() == pytest.approx([2.0 / 0.6])  # kept units scaled by 1/(1-p)
    assert y.mean().item() == pytest.approx(2.0, rel=0.01)  # expectation kept
    layer.eval()
    assert torch.equal(layer(x), x)
