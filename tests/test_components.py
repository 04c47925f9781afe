"""Each technique checked against its definition, and every registered component exercised."""
import math

import pytest
import torch
from torch import nn

from harness.components import ACTIVATIONS, INITS, LOSSES, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
from harness.components.activations import init_gain
from harness.components.inits import InitContext
from harness.components.regularizers import RegContext
from harness.models import MODELS, ModelContext


def _ctx(norm="none", hidden=()):
    return ModelContext((1, 8, 8), 10, lambda f, d: NORMS.build(NORMS.resolve(norm, "n"), f, d), tuple(hidden))


# --- optimizers: one parametrized test over the registry, then the update rules -------------

@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_reduces_a_quadratic(name):
    torch.manual_seed(0)
    w = nn.Parameter(torch.randn(5, 2) if name == "muon" else torch.randn(10))  # Muon's builder takes matrices only
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


def test_adamax_divides_by_the_running_max_of_the_gradient():
    # step 1: m = (1-b1) g, bias-corrected to g, u = |g|: -lr sign(g); step 2 (g = 0.1): u = max(b2 * 1, 0.1)
    lr, b1, b2 = 0.01, 0.9, 0.999
    m2, u2 = b1 * (1 - b1) * 1.0 + (1 - b1) * 0.1, max(b2 * 1.0, 0.1)
    expected = [-lr, -lr - lr / (1 - b1 ** 2) * m2 / u2]
    assert _steps("adamax", [1.0, 0.1], lr=lr, beta1=b1, beta2=b2, eps=1e-12) == pytest.approx(expected, rel=1e-5)


def test_adafactor_steps_relative_to_the_weights_on_a_factored_second_moment():
    """Shazeer & Stern 2018: V = (row means of g²) ⊗ (column means of g²) / their mean, U = g/√V clipped to
    RMS d = 1, step ρ·max(ε₂, RMS(W)) with ρ = min(lr, 1/√t); a vector keeps the unfactored g²."""
    w = nn.Parameter(torch.full((3, 4), 2.0))
    g = torch.arange(1.0, 13.0).view(3, 4)
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": "adafactor", "lr": 0.01}, "o"), [w])
    w.grad = g.clone()
    opt.step()
    rows, cols = (g ** 2).mean(1), (g ** 2).mean(0)
    u = g / torch.sqrt(torch.outer(rows, cols) / rows.mean())
    u = u / max(1.0, u.pow(2).mean().sqrt().item())
    assert w.detach() == pytest.approx(2.0 - 0.01 * 2.0 * u, rel=1e-5)
    assert _steps("adafactor", [3.0], lr=0.01) == pytest.approx([0.0 - 0.01 * 1e-3])  # RMS(0) = 0: ε₂ = 1e-3


def test_asgd_decays_the_weights_and_averages_the_iterates():
    w = nn.Parameter(torch.ones(1))
    opt = OPTIMIZERS.build(OPTIMIZERS.resolve({"name": "asgd", "lr": 0.1, "lambd": 0.5, "t0": 0}, "o"), [w])
    seen = []
    for g in (1.0, 2.0, 0.5):
        w.grad = torch.tensor([g])
        eta = 0.1 / (1 + 0.5 * 0.1 * len(seen)) ** 0.75
        expected = w.item() * (1 - 0.5 * eta) - eta * g
        opt.step()
        assert w.item() == pytest.approx(expected, rel=1e-6)
        seen.append(w.item())
    # torch's running average, whose weight 1/(t - t0) lags one step: the mean of the iterates after the first
    assert opt.state[w]["ax"].item() == pytest.approx((seen[1] + seen[2]) / 2, rel=1e-6)


def test_rprop_grows_its_step_on_a_kept_sign_and_halves_it_without_moving_on_a_flip():
    lr = 0.1
    assert _steps("rprop", [1.0, 1.0, -1.0, -1.0], lr=lr) == pytest.approx(
        [-lr, -lr - 1.2 * lr, -lr - 1.2 * lr, -lr - 1.2 * lr + 0.6 * lr])


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
    INITS.build(INITS.resolve(init, "i"), model, InitContext({"name": "relu"}))
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
    INITS.build(INITS.resolve("xavier_normal", "i"), layer, InitContext({"name": "tanh"}))
    assert layer.weight.var().item() == pytest.approx(2 / (400 + 200), rel=0.05)
    assert torch.all(layer.bias == 0)


def _tanh_net_std_ratio(init: dict) -> float:
    """std of the last of 7 tanh layers (4096 wide) over the first, at init."""
    torch.manual_seed(0)
    layers = [nn.Linear(4096, 4096) for _ in range(7)]
    INITS.build(INITS.resolve(init, "i"), nn.Sequential(*layers), InitContext({"name": "tanh"}))
    x, stds = torch.randn(128, 4096), []
    with torch.no_grad():
        for layer in layers:
            x = torch.tanh(layer(x))
            stds.append(x.std().item())
    return stds[-1] / stds[0]


def test_small_normal_init_kills_deep_tanh_activations_and_xavier_does_not():
    # Glorot & Bengio 2010, section 4.2, and the CS231n activation-statistics picture.
    # std 0.01 x sqrt(4096) = 0.64 per layer: the std shrinks geometrically with depth.
    small, xavier = _tanh_net_std_ratio({"name": "normal", "std": 0.01}), _tanh_net_std_ratio("xavier_normal")
    assert small < 0.1 and small < xavier / 5
    assert 0.2 < xavier < 5


def test_uniform_orthogonal_and_kaiming_uniform_have_their_defining_statistics():
    torch.manual_seed(0)
    layer = nn.Linear(500, 300)
    INITS.build({"name": "uniform", "a": 0.3, "bias": 0.5}, layer, InitContext(None))
    assert layer.weight.var().item() == pytest.approx(0.3 ** 2 / 3, rel=0.03)
    assert layer.weight.abs().max().item() <= 0.3 and torch.all(layer.bias == 0.5)  # bias as configured
    INITS.build({"name": "kaiming_uniform", "mode": "fan_in", "bias": 0.0}, layer, InitContext({"name": "relu"}))
    assert layer.weight.var().item() == pytest.approx(2 / 500, rel=0.03)
    INITS.build({"name": "orthogonal", "gain": 2.0, "bias": 0.0}, layer, InitContext(None))
    w = layer.weight
    assert torch.allclose(w @ w.T, 4 * torch.eye(300), atol=1e-4)


def test_zero_init_never_breaks_symmetry():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
    INITS.build(INITS.resolve({"name": "constant", "value": 0.1}, "i"), model, InitContext({"name": "tanh"}))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    x, y = torch.randn(64, 8), torch.randint(0, 3, (64,))
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    w = model[0].weight
    assert torch.allclose(w, w[:1].expand_as(w))  # every hidden unit still computes the same function


def test_lsuv_gives_unit_output_variance_per_layer_on_the_sample():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 10))
    sample = torch.randn(256, 1, 8, 8) * 4
    INITS.build(INITS.resolve("lsuv", "i"), model, InitContext({"name": "relu"}, sample))
    x = sample.flatten(1)
    with torch.no_grad():
        for m in model[1:]:
            x = m(x)
            if isinstance(m, nn.Linear):
                assert abs(x.var().item() - 1) < 0.1


@pytest.mark.parametrize("name", INITS.names())
def test_every_init_zeroes_biases_and_changes_weights(name):
    torch.manual_seed(0)
    model = MODELS.build(MODELS.resolve("mlp", "m"), _ctx())
    before = [p.clone() for p in model.parameters()]
    INITS.build(INITS.resolve(name, "i"), model, InitContext({"name": "relu"}, torch.randn(32, 1, 8, 8)))
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
@pytest.mark.parametrize("dims,shape", [(1, (4, 64)), (2, (4, 64, 5, 5))])
def test_every_norm_keeps_the_shape_and_trains(name, dims, shape):
    layer = NORMS.build(NORMS.resolve(name, "n"), 64, dims)
    x = (torch.randn(*shape) * 3 + 1).requires_grad_()
    out = layer(x)
    assert out.shape == shape and torch.isfinite(out).all()
    out.square().mean().backward()
    assert torch.isfinite(x.grad).all()


def test_layernorm_and_groupnorm_normalize_each_sample_on_its_own():
    x = torch.randn(3, 64) * torch.tensor([[1.0], [10.0], [100.0]]) + 5
    for config in ("layernorm", {"name": "groupnorm", "groups": 4}):
        layer = NORMS.build(NORMS.resolve(config, "n"), 64, 1)
        y = layer(x)
        groups = 1 if config == "layernorm" else 4
        per_group = y.view(3, groups, -1)
        assert per_group.mean(-1).abs().max() < 1e-5  # per sample (and group): no batch statistics
        assert (per_group.var(-1, unbiased=False) - 1).abs().max() < 1e-3
        assert torch.allclose(layer(x[:1]), y[:1], atol=1e-6)  # independent of the rest of the batch


def test_groupnorm_rejects_features_that_do_not_split():
    with pytest.raises(ValueError, match="do not split"):
        NORMS.build({"name": "groupnorm", "groups": 32, "eps": 1e-5}, 48, 1)


# --- activations, losses, models ------------------------------------------------------------

@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_every_activation_maps_features_and_has_an_init_gain(name):
    act = ACTIVATIONS.build(ACTIVATIONS.resolve(name, "a"))
    x = torch.linspace(-3, 3, 48).view(4, 12)
    pieces = getattr(act, "pieces", 1)
    assert act(x).shape == (4, 12 // pieces)
    nonlinearity, param = init_gain(ACTIVATIONS.resolve(name, "a"))
    assert nn.init.calculate_gain(nonlinearity, param) > 0


def test_activation_definitions():
    x = torch.tensor([[-2.0, -0.5, 0.0, 1.5]])
    leaky = ACTIVATIONS.build({"name": "leaky_relu", "slope": 0.2})
    assert leaky(x)[0].tolist() == pytest.approx([-0.4, -0.1, 0.0, 1.5])
    assert init_gain({"name": "leaky_relu", "slope": 0.2}) == ("leaky_relu", 0.2)
    elu = ACTIVATIONS.build({"name": "elu", "alpha": 1.0})
    assert elu(x)[0, 0].item() == pytest.approx(math.exp(-2) - 1)
    maxout = ACTIVATIONS.build({"name": "maxout", "pieces": 3})
    z = torch.tensor([[1.0, 5.0, 2.0, -1.0, -3.0, -2.0]])  # two units, three pieces each
    assert maxout(z).tolist() == [[5.0, -1.0]]
    torch.manual_seed(0)
    y = ACTIVATIONS.build({"name": "selu"})(torch.randn(200_000))
    assert abs(y.mean().item()) < 0.01 and abs(y.var().item() - 1) < 0.02  # self-normalizing fixed point


def test_mlp_with_maxout_feeds_k_pieces_into_each_unit():
    model = MODELS.build(MODELS.resolve({"name": "mlp", "depth": 2, "width": 10,
                                         "activation": {"name": "maxout", "pieces": 3}}, "m"), _ctx())
    linears = [m for m in model if isinstance(m, nn.Linear)]
    assert [(l.in_features, l.out_features) for l in linears] == [(64, 30), (10, 30), (10, 10)]


def test_label_smoothing_matches_its_definition():
    logits, y = torch.randn(5, 10), torch.tensor([0, 1, 2, 3, 4])
    loss = LOSSES.build({"name": "cross_entropy", "label_smoothing": 0.1})(logits, y)
    target = torch.full((5, 10), 0.1 / 10)
    target[torch.arange(5), y] += 0.9
    expected = -(target * torch.log_softmax(logits, 1)).sum(1).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_mlp_has_depth_hidden_layers_with_norm_and_regularizer_layers():
    parts = REGULARIZERS.build(REGULARIZERS.resolve({"name": "dropout", "p": 0.3}, "r"), RegContext(10))
    model = MODELS.build(MODELS.resolve({"name": "mlp", "depth": 3, "width": 20, "activation": "tanh"}, "m"),
                         parts.configure_model(_ctx("batchnorm")))
    kinds = [type(m).__name__ for m in model]
    assert kinds.count("Linear") == 4 and kinds.count("BatchNorm1d") == 3
    assert kinds.count("Tanh") == 3 and kinds.count("Dropout") == 3
    assert model(torch.randn(7, 1, 8, 8)).shape == (7, 10)


# --- regularizers ---------------------------------------------------------------------------

def test_inverted_dropout_keeps_the_expectation_and_is_identity_at_eval():
    torch.manual_seed(0)
    layer = REGULARIZERS.build({"name": "dropout", "p": 0.4, "variant": "inverted"},
                              RegContext(10)).configure_model(_ctx()).hidden[-1]()
    x = torch.full((200_000,), 2.0)
    layer.train()
    y = layer(x)
    assert (y == 0).float().mean().item() == pytest.approx(0.4, abs=0.01)  # drop rate p
    assert y[y != 0].unique().tolist() == pytest.approx([2.0 / 0.6])  # kept units scaled by 1/(1-p)
    assert y.mean().item() == pytest.approx(2.0, rel=0.01)  # expectation kept
    layer.eval()
    assert torch.equal(layer(x), x)
