"""Regularizers against their definitions, and each one through a real (tiny) trial."""
import pytest
import torch
from scipy import stats
from torch import nn

from harness.components import REGULARIZERS
from harness.components.regularizers import RegContext
from harness.data import Rng
from harness.engine import run_trial
from harness.errors import ConfigError
from harness.models import ModelContext
from harness.spec import COMPLETED, TrialSpec
from harness.suite import resolve_trial

CTX = RegContext(num_classes=10)


def _parts(config):
    return REGULARIZERS.build(REGULARIZERS.resolve(config, "r"), CTX)


def _hidden_layer(config):
    """The layer a technique has the model insert after each hidden activation."""
    ctx = ModelContext(in_shape=(4,), num_classes=10, norm=lambda features, dims: nn.Identity())
    return _parts(config).configure_model(ctx).hidden[-1]()


@pytest.mark.parametrize("name", REGULARIZERS.names())
def test_every_regularizer_trains_a_tiny_trial(name):
    raw = {
        "dataset": {"name": "digits", "val_size": 100, "train_subset": 200},
        "model": {"name": "resnet", "depth": 8} if name == "stochastic_depth" else {"name": "mlp", "depth": 2, "width": 32},
        "optimizer": {"name": "sgd", "lr": 0.1}, "budget": {"epochs": 2}, "batch_size": 50,
        "regularizers": [name],
    }
    record = run_trial(TrialSpec.make("r", resolve_trial(raw, "base"), 0))
    assert record.status == COMPLETED, record.reason
    assert all(h["train_loss"] == h["train_loss"] for h in record.history)  # finite, not NaN


def test_vanilla_dropout_scales_at_test_and_matches_inverted_in_expectation():
    torch.manual_seed(0)
    vanilla = _hidden_layer({"name": "dropout", "p": 0.25, "variant": "vanilla"})
    x = torch.full((200_000,), 2.0)
    train = vanilla(x)
    assert set(train.unique().tolist()) == {0.0, 2.0}  # kept units are not scaled
    vanilla.eval()
    assert torch.allclose(vanilla(x), torch.full_like(x, 1.5))  # x (1 - p) at evaluation
    assert train.mean().item() == pytest.approx(1.5, rel=0.01)  # = the evaluation output in expectation


def test_dropconnect_masks_weights_in_training_and_is_the_dense_layer_at_eval():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(20, 30), nn.ReLU(), nn.Linear(30, 5))
    _parts({"name": "dropconnect", "p": 0.5}).modify_model(model)
    hidden, head = model[0], model[2]
    assert type(head) is nn.Linear  # the classifier stays dense
    x = torch.randn(4, 20)
    dense = nn.functional.linear(x, hidden.weight, hidden.bias)
    hidden.eval()
    assert torch.equal(hidden(x), dense)
    hidden.train()
    outs = torch.stack([hidden(x) for _ in range(4000)])
    assert not torch.allclose(outs[0], dense)  # training draws masks
    assert torch.allclose(outs.mean(0), dense, atol=0.1)  # inverted scaling: the mean is the dense layer


def test_l2_penalty_gradient_is_2_lambda_w_and_l1_is_lambda_sign_w():
    layer = nn.Linear(3, 2)
    for config, expected in (({"name": "l2", "strength": 0.3}, lambda w: 2 * 0.3 * w),
                             ({"name": "l1", "strength": 0.3}, lambda w: 0.3 * torch.sign(w))):
        layer.zero_grad()
        _parts(config).penalty(layer).backward()
        assert torch.allclose(layer.weight.grad, expected(layer.weight.detach()))
        assert layer.bias.grad is None  # biases are left out by default


def test_elastic_net_is_the_sum_of_both():
    layer = nn.Linear(4, 4)
    both = _parts({"name": "elastic_net", "l1": 0.1, "l2": 0.2, "biases": True}).penalty(layer)
    w = torch.cat([p.detach().flatten() for p in layer.parameters()])
    assert both.item() == pytest.approx((0.1 * w.abs().sum() + 0.2 * w.square().sum()).item(), rel=1e-5)


def test_cutout_zeroes_exactly_one_square_clipped_at_the_border():
    torch.manual_seed(0)
    apply = _parts({"name": "cutout", "size": 4}).batch
    x = torch.ones(500, 2, 10, 10)
    out, _ = apply(x, torch.zeros(500, dtype=torch.long), Rng.seeded(0))
    holes = out[:, 0] == 0
    assert torch.equal(holes, out[:, 1] == 0)  # the same square in every channel
    rows, cols = holes.any(2), holes.any(1)
    # one rectangle per image: its cells are exactly the product of its rows and columns
    assert torch.equal(holes.sum((1, 2)), rows.sum(1) * cols.sum(1))
    assert rows.sum(1).max() == 4 and cols.sum(1).max() == 4
    assert (rows.sum(1) < 4).any()  # some squares were clipped at a border
    assert holes.sum((1, 2)).min() >= 4  # a centre inside the image keeps at least 2x2


def test_mixup_targets_sum_to_one_and_lambda_follows_beta():
    torch.manual_seed(0)
    apply = _parts({"name": "mixup", "alpha": 0.4}).batch
    lams, rng = [], Rng.seeded(0)
    for _ in range(400):
        x, y = torch.arange(10.0).view(10, 1), torch.arange(10)
        mx, my = apply(x, y, rng)
        assert torch.allclose(my.sum(1), torch.ones(10))
        for i in range(10):  # row i holds its own class i with weight lambda and a partner j with 1 - lambda
            nonzero = torch.nonzero(my[i]).flatten().tolist()
            if len(nonzero) == 2:
                j = nonzero[0] if nonzero[1] == i else nonzero[1]
                lam = my[i, i].item()
                assert mx[i, 0].item() == pytest.approx(lam * i + (1 - lam) * j, abs=1e-4)  # inputs mixed alike
                lams.append(lam)
                break
    assert len(lams) > 300
    assert stats.kstest(lams, stats.beta(0.4, 0.4).cdf).pvalue > 0.01


def test_cutmix_mixes_targets_by_the_pasted_area():
    torch.manual_seed(0)
    apply = _parts({"name": "cutmix", "alpha": 1.0}).batch
    rng = Rng.seeded(0)
    for _ in range(50):
        x = torch.arange(8.0).view(8, 1, 1, 1).expand(8, 1, 12, 12).clone()
        mx, my = apply(x, torch.arange(8), rng)
        assert torch.allclose(my.sum(1), torch.ones(8))
        own = (mx[:, 0] == torch.arange(8.0).view(8, 1, 1)).float().mean((1, 2))
        assert torch.allclose(my[torch.arange(8), torch.arange(8)], own)


def test_mixup_needs_a_soft_target_loss_and_no_line_search():
    raw = {"regularizers": ["mixup"], "optimizer": "lbfgs"}
    with pytest.raises(ConfigError, match="line search"):
        resolve_trial(raw, "base")


def test_early_stopping_stops_after_patience_and_restores_the_best_weights():
    stop = _parts({"name": "early_stopping", "metric": "val_loss", "patience": 1}).epoch_end
    model = nn.Linear(2, 2)
    assert stop(model, {"epoch": 1, "val_loss": 1.0}) is None
    best = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    assert stop(model, {"epoch": 2, "val_loss": 1.5}) is None  # patience 1: one bad epoch allowed
    assert stop(model, {"epoch": 3, "val_loss": 1.2}) == {"restored_epoch": 1}
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())


def test_early_stopping_in_a_trial_reports_the_restored_epoch():
    raw = {
        "dataset": {"name": "digits", "val_size": 100, "train_subset": 200},
        "model": {"name": "mlp", "depth": 1, "width": 32}, "optimizer": {"name": "sgd", "lr": 0.1},
        "budget": {"epochs": 6}, "batch_size": 50,
        # an improvement of 1.0 in accuracy is impossible: epoch 1 stays best, stop after epoch 2
        "regularizers": [{"name": "early_stopping", "metric": "val_acc", "patience": 0, "min_delta": 1.0}],
    }
    r = run_trial(TrialSpec.make("r", resolve_trial(raw, "base"), 0))
    assert r.status == COMPLETED and len(r.history) == 2
    assert r.diagnostics["early_stopping"] == {"stopped_after_epoch": 2, "restored_epoch": 1}
    assert r.final["val_acc"] == r.history[0]["val_acc"] and r.final["epoch"] == 1


def _augment(**params):
    return REGULARIZERS.build(REGULARIZERS.resolve({"name": "augment", **params}, "r"),
                              RegContext(10, torch.randn(50, 3, 6, 6) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1)))


def test_random_crop_with_padding_translates_each_image_on_its_own():
    torch.manual_seed(0)
    x = torch.arange(2 * 36, dtype=torch.float32).view(1, 2, 6, 6).expand(64, 2, 6, 6) + 1
    out, _ = _augment(crop_padding=2).batch(x, torch.zeros(64, dtype=torch.long), Rng.seeded(0))
    padded = nn.functional.pad(x[:1], (2, 2, 2, 2))[0]
    shifts = set()
    for img in out:
        match = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(img, padded[:, dy:dy + 6, dx:dx + 6])]
        assert len(match) == 1  # a window of the zero-padded image
        shifts.add(match[0])
    assert len(shifts) > 10  # per-sample offsets, not one draw per batch


def test_flip_brightness_and_contrast_act_per_sample():
    torch.manual_seed(0)
    x = torch.randn(200, 3, 6, 6)
    y = torch.zeros(200, dtype=torch.long)
    flipped, _ = _augment(flip=True).batch(x, y, Rng.seeded(0))
    same = torch.all((flipped == x).flatten(1), 1)
    mirrored = torch.all((flipped == x.flip(3)).flatten(1), 1)
    assert torch.all(same | mirrored) and 60 < mirrored.sum() < 140
    bright, _ = _augment(brightness=0.5).batch(x, y, Rng.seeded(0))
    offset = (bright - x).flatten(1)
    assert torch.allclose(offset, offset[:, :1].expand_as(offset), atol=1e-6) and offset.abs().max() <= 0.5
    assert offset[:, 0].std() > 0.1
    contrasted, _ = _augment(contrast=0.4).batch(x, y, Rng.seeded(0))
    mean = x.mean((1, 2, 3), keepdim=True)
    ratio = ((contrasted - mean) / (x - mean)).flatten(1)
    assert torch.allclose(ratio, ratio[:, :1].expand_as(ratio), atol=1e-3)
    assert ratio.min() >= 0.6 - 1e-4 and ratio.max() <= 1.4 + 1e-4


def test_affine_identity_and_pca_lighting_adds_a_colour_shift_along_the_eigenvectors():
    from harness.data.augment import affine as _affine, pca_basis as _pca_basis

    torch.manual_seed(0)
    x = torch.randn(8, 3, 6, 6)
    assert torch.allclose(_affine(x, 0.0, 0.0, 0.0, 0.0, Rng.seeded(0)), x, atol=1e-5)
    warped = _affine(x, 30.0, 0.1, 0.1, 5.0, Rng.seeded(0))
    assert not torch.allclose(warped, x) and warped.shape == x.shape
    lit, _ = _augment(pca_lighting=0.1).batch(x, torch.zeros(8, dtype=torch.long), Rng.seeded(0))
    shift = (lit - x).flatten(2)  # (n, channel, pixel): one colour per image
    assert torch.allclose(shift, shift[:, :, :1].expand_as(shift), atol=1e-5)
    values, vectors = _pca_basis(torch.randn(50, 3, 6, 6) * torch.tensor([1.0, 2.0, 3.0]).view(1, 3, 1, 1))
    assert values.tolist() == pytest.approx([1.0, 4.0, 9.0], rel=0.15)  # per-channel variances
    coords = shift[:, :, 0] @ vectors  # in the eigenbasis: alpha_i * lambda_i
    assert coords.abs().max(0).values[2] > coords.abs().max(0).values[0]  # larger along larger variance
