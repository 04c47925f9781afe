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
    # AdaDelta's steps start near sqrt(eps) and grow: it needs a large multiplier to move in 300 steps.
    lr = {"adadelta": 10.0, "lbfgs": 1.0}.get(name, 0.05)
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": name, "lr": lr}, "o"), [w])

    def closure():
        opt.zero_grad()
        loss = (w ** 2).sum()
        loss.backward()
        return loss

    start = closure().item()
    for _ in range(300):
        opt.step(closure)
    assert closure().item() < 0.5 * start


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


def test_adagrad_divides_by_the_root_of_summed_squared_gradients():
    assert _steps("adagrad", [2.0, 2.0], lr=0.1, eps=1e-12) == pytest.approx([-0.1, -0.1 - 0.1 / math.sqrt(2)])


def test_rmsprop_divides_by_the_root_of_the_squared_gradient_average():
    # v1 = (1 - alpha) g^2  ->  step = lr g / sqrt(v1) = lr / sqrt(1 - alpha)
    assert _steps("rmsprop", [3.0], lr=0.01, alpha=0.9, eps=1e-12) == pytest.approx([-0.01 / math.sqrt(0.1)], rel=1e-5)


def test_adadelta_scales_by_the_ratio_of_update_and_gradient_rms():
    rho, eps, g = 0.9, 1e-6, 2.0
    step = math.sqrt(eps) / math.sqrt((1 - rho) * g * g + eps) * g
    assert _steps("adadelta", [g], lr=1.0, rho=rho, eps=eps) == pytest.approx([-step], rel=1e-5)


def test_amsgrad_keeps_the_largest_second_moment():
    adam, ams = _steps("adam", [1.0, 0.01, 0.01], lr=0.1), _steps("amsgrad", [1.0, 0.01, 0.01], lr=0.1)
    assert ams[0] == pytest.approx(adam[0])
    assert abs(ams[2] - ams[1]) < abs(adam[2] - adam[1])  # a smaller step once the gradient shrinks


def test_adamw_decay_is_decoupled_from_the_gradient():
    w = nn.Parameter(torch.ones(1))
    opt = OPTIMIZERS.build({"name": "adamw", "lr": 0.1, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
                            "weight_decay": 0.5}, [w])
    w.grad = torch.zeros(1)
    opt.step()
    assert w.item() == pytest.approx(1 - 0.1 * 0.5)  # θ ← θ − ηλθ, untouched by the adaptive scaling


def test_lbfgs_solves_an_ill_conditioned_quadratic_in_a_few_steps():
    torch.manual_seed(0)
    a = torch.diag(torch.tensor([1.0, 10.0, 100.0, 1000.0]))
    w = nn.Parameter(torch.ones(4))
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve("lbfgs", "o"), [w])

    def closure():
        opt.zero_grad()
        loss = 0.5 * w @ a @ w
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)
    assert closure().item() < 1e-8
    assert OPTIMIZERS.get("lbfgs").meta["needs_closure"] and OPTIMIZERS.get("lbfgs").meta["full_batch"]


# --- schedules ------------------------------------------------------------------------------

def _factor(config, total=100, per_epoch=10):
    from harness.components.schedules import ScheduleContext

    return SCHEDULES.build(SCHEDULES.resolve(config, "s"), ScheduleContext(total, per_epoch))


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_is_a_bounded_factor(name):
    schedule = _factor(name)
    assert 0 < schedule.factor(0) <= 1
    assert all(0 <= schedule.factor(t) <= 1 for t in range(101))


def test_cosine_follows_sgdr_annealing():
    f = _factor({"name": "cosine", "min_ratio": 0.1}).factor
    assert f(0) == pytest.approx(1.0) and f(100) == pytest.approx(0.1)
    assert f(50) == pytest.approx(0.55)
    assert f(25) == pytest.approx(0.1 + 0.45 * (1 + math.cos(math.pi / 4)))


def test_step_and_multistep_decay_at_epoch_boundaries():
    step = _factor({"name": "step", "every": 3, "gamma": 0.5}).factor  # 10 steps per epoch
    assert [step(s) for s in (0, 29, 30, 59, 60)] == pytest.approx([1, 1, 0.5, 0.5, 0.25])
    multi = _factor({"name": "multistep", "milestones": [2, 5], "gamma": 0.1}).factor
    assert [multi(s) for s in (19, 20, 49, 50, 99)] == pytest.approx([1, 0.1, 0.1, 0.01, 0.01])


def test_exponential_and_inverse_time_follow_their_closed_forms_in_epochs():
    exp = _factor({"name": "exponential", "k": 0.2}).factor
    inv = _factor({"name": "inverse_time", "k": 0.5}).factor
    for s in (0, 15, 70):
        t = s / 10
        assert exp(s) == pytest.approx(math.exp(-0.2 * t)) and inv(s) == pytest.approx(1 / (1 + 0.5 * t))


def test_one_cycle_matches_torch_onecyclelr():
    total, base = 200, 0.4
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=base)
    ref = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=base, total_steps=total, pct_start=0.25, div_factor=20,
                                              final_div_factor=100, anneal_strategy="cos", cycle_momentum=False)
    f = _factor({"name": "one_cycle", "pct_start": 0.25, "div": 20, "final_div": 100}, total=total).factor
    for s in range(total):
        assert base * f(s) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-6), s
        opt.step()
        ref.step()


def test_plateau_reduces_after_patience_epochs_without_improvement():
    sched = _factor({"name": "plateau", "metric": "val_loss", "factor": 0.5, "patience": 2})
    for loss in (1.0, 0.9, 0.9, 0.9):
        sched.observe({"val_loss": loss, "val_acc": 0.0})
    assert sched.factor(0) == 1.0  # two epochs without improvement: still patient
    sched.observe({"val_loss": 0.95, "val_acc": 0.0})
    assert sched.factor(0) == 0.5
    sched.observe({"val_loss": 0.5, "val_acc": 0.0})
    assert sched.factor(0) == 0.5


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
