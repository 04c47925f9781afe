"""Regularizers. A builder gets a ``RegContext`` and returns a ``harness.technique.Technique``;
most are ``Parts``, plain functions at the generic insertion points:

``configure``: the model's context (dropout adds a layer after each hidden activation; stochastic
depth sets the residual drop rate); ``modify``: an in-place change of the built model, before init
(DropConnect layers); ``batch``: an on-device ``(x, y, rng) -> (x, y)`` transform of each training
batch, where ``y`` may become soft targets (cutout, mixup, CutMix); ``penalty``: a term added to
the training loss (L1/L2); ``epoch_end``: sees each epoch's validation metrics and may stop
training (early stopping). The loop has no per-technique branches.

- ``dropout``: Srivastava et al. 2014. ``inverted`` (``torch.nn.Dropout``): kept units scaled by
  1/(1 − p) in training, identity at evaluation. ``vanilla``: the paper's form, no scaling in
  training, activations × (1 − p) at evaluation. Both have the same expectation at evaluation.
- ``dropconnect``: Wan et al. 2013: a Bernoulli(1 − p) mask on the weights of each hidden Linear
  layer, one mask per mini-batch (the paper draws one per example), scaled by 1/(1 − p) so the
  evaluation layer is the dense layer with the mean weights.
- ``l2``: λ Σ w² over weights (∂/∂w = 2λw), added to the loss; unlike decoupled weight decay
  it passes through adaptive optimizers' scaling. ``l1``: λ Σ |w|; ``elastic_net``: both
  (Zou & Hastie 2005). Biases are left out unless ``biases: true``.
- ``cutout``: DeVries & Taylor 2017: one ``size``×``size`` square per image set to 0 (the mean,
  after normalization), its centre uniform over the image, so it is clipped at the borders.
- ``mixup``: Zhang et al. 2018: λ ~ Beta(α, α) per batch, x̃ = λx_i + (1 − λ)x_j,
  ỹ = λy_i + (1 − λ)y_j with one-hot targets.
- ``cutmix``: Yun et al. 2019: a box of area (1 − λ) of the image, λ ~ Beta(α, α), pasted from
  a shuffled batch; the targets are mixed by the box's actual area.
- ``augment``: per-sample, on-device data augmentation of normalized images: random crop with
  zero padding (translation), horizontal flip, brightness (an offset in units of the data's std)
  and contrast (scaling around each image's mean) jitter, a small random affine warp
  (rotation/translation/scale/shear), and PCA colour lighting (Krizhevsky et al. 2012, section
  4.1: add Σᵢ αᵢλᵢpᵢ with αᵢ ~ N(0, σ²), λᵢ, pᵢ the eigen-pairs of the training set's RGB
  covariance).
- ``stochastic_depth``: Huang et al. 2016: block l of L drops its residual branch with
  probability (l/L)·p (the linear decay rule) in training; every block is used at evaluation
  (see ``harness/models/convnets.py``).
- ``early_stopping``: stop after ``patience`` epochs without improvement of the validation
  metric, restoring the best epoch's weights (Prechelt 1998).
"""
from __future__ import annotations

import copy
from dataclasses import replace
from typing import TYPE_CHECKING, Annotated, Any, Callable, Literal

from harness.data import augment as augment_ops
from harness.data.augment import Rng
from harness.registries import DATASETS, LOSSES, MODELS, OPTIMIZERS, REGULARIZERS
from harness.registry import Range
from harness.technique import Parts, RegContext

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.models import ModelContext

__all__ = ["Parts", "RegContext"]

Batch = tuple["torch.Tensor", "torch.Tensor"]
Prob = Annotated[float, Range(ge=0, lt=1)]
Strength = Annotated[float, Range(ge=0)]
Alpha = Annotated[float, Range(gt=0)]


# --- dropout and DropConnect ---------------------------------------------------------------

def _needs_hidden(name: str) -> Callable[[dict[str, Any]], str | None]:
    def check(config: dict[str, Any]) -> str | None:
        if not MODELS.get(config["model"]["name"]).caps.hidden_layers:
            return (f"{name} acts on hidden fully connected layers; model {config['model']['name']!r} has none "
                    f"(wrn has its own dropout parameter)")
        return None

    return check


@REGULARIZERS.register("dropout", compatible=_needs_hidden("dropout"))
def dropout(ctx: RegContext, *, p: Prob = 0.5, variant: Literal["inverted", "vanilla"] = "inverted") -> Parts:
    """Dropout after every hidden activation (Srivastava et al. 2014); inverted or the vanilla scale-at-test form."""
    from torch import nn
    from harness.components.layers import VanillaDropout
    def layer() -> nn.Module:
        return nn.Dropout(p) if variant == "inverted" else VanillaDropout(p)

    return Parts(configure=lambda ctx: replace(ctx, hidden=(*ctx.hidden, layer)))


@REGULARIZERS.register("dropconnect", compatible=_needs_hidden("dropconnect"))
def dropconnect(ctx: RegContext, *, p: Prob = 0.5) -> Parts:
    """DropConnect on the weights of every hidden Linear layer (Wan et al. 2013); dense mean weights at eval."""

    from torch import nn
    from harness.components.layers import DropConnectLinear
    def convert(model: nn.Module) -> None:
        linears = [m for m in model.modules() if type(m) is nn.Linear]
        for layer in linears[:-1]:  # the classifier stays dense
            layer.__class__ = DropConnectLinear
            layer.p = p

    return Parts(modify=convert)


# --- penalties -----------------------------------------------------------------------------

def _weights(model: nn.Module, biases: bool) -> list[torch.Tensor]:
    return [p for name, p in model.named_parameters() if p.requires_grad and (biases or not name.endswith("bias"))]


def _penalty(l1: float, l2: float, biases: bool) -> Callable[[nn.Module], torch.Tensor]:
    def penalty(model: nn.Module) -> torch.Tensor:
        total = 0.0
        for w in _weights(model, biases):
            if l2:
                total = total + l2 * w.square().sum()
            if l1:
                total = total + l1 * w.abs().sum()
        return total

    return penalty


@REGULARIZERS.register("l2")
def l2(ctx: RegContext, *, strength: Strength = 1e-4, biases: bool = False) -> Parts:
    """L2 penalty strength * sum(w^2) added to the loss (not decoupled weight decay)."""
    return Parts(penalty=_penalty(0.0, strength, biases))


@REGULARIZERS.register("l1")
def l1(ctx: RegContext, *, strength: Strength = 1e-5, biases: bool = False) -> Parts:
    """L1 penalty strength * sum(|w|) added to the loss (Tibshirani 1996)."""
    return Parts(penalty=_penalty(strength, 0.0, biases))


@REGULARIZERS.register("elastic_net")
def elastic_net(ctx: RegContext, *, l1: Strength = 1e-5, l2: Strength = 1e-4, biases: bool = False) -> Parts:
    """Elastic net: l1 * sum(|w|) + l2 * sum(w^2) added to the loss (Zou & Hastie 2005)."""
    return Parts(penalty=_penalty(l1, l2, biases))


# --- batch transforms ----------------------------------------------------------------------

def _needs_soft_targets(name: str) -> Callable[[dict[str, Any]], str | None]:
    def check(config: dict[str, Any]) -> str | None:
        if not LOSSES.get(config["loss"]["name"]).caps.soft_targets:
            return f"{name} mixes targets and needs a loss that takes soft targets, not {config['loss']['name']!r}"
        if OPTIMIZERS.get(config["optimizer"]["name"]).caps.needs_closure:
            return f"{name} draws a new mix per call, so {config['optimizer']['name']!r}'s line search sees a different loss each time"
        return None

    return check


def _needs_images(name: str) -> Callable[[dict[str, Any]], str | None]:
    def check(config: dict[str, Any]) -> str | None:
        shape = DATASETS.get(config["dataset"]["name"]).caps.in_shape
        if shape and len(shape) != 3:
            return f"{name} transforms images (C, H, W); dataset {config['dataset']['name']!r} gives shape {shape}"
        return None

    return check


@REGULARIZERS.register("cutout", compatible=_needs_images("cutout"))
def cutout(ctx: RegContext, *, size: Annotated[int, Range(gt=0)] = 4) -> Parts:
    """Cutout: one size x size square per image set to zero, centre anywhere, clipped at borders (DeVries & Taylor 2017)."""
    return Parts(batch=lambda x, y, rng: (augment_ops.cutout(x, size, rng), y))


@REGULARIZERS.register("mixup", compatible=_needs_soft_targets("mixup"))
def mixup(ctx: RegContext, *, alpha: Alpha = 0.2) -> Parts:
    """Mixup: convex combinations of input pairs and of their one-hot targets, lambda ~ Beta(alpha, alpha) (Zhang et al. 2018)."""
    return Parts(batch=lambda x, y, rng: augment_ops.mixup(x, y, alpha, ctx.num_classes, rng))


def _cutmix_check(config: dict[str, Any]) -> str | None:
    return _needs_soft_targets("cutmix")(config) or _needs_images("cutmix")(config)


@REGULARIZERS.register("cutmix", compatible=_cutmix_check)
def cutmix(ctx: RegContext, *, alpha: Alpha = 1.0) -> Parts:
    """CutMix: a box from a shuffled image pasted in, targets mixed by area (Yun et al. 2019)."""
    return Parts(batch=lambda x, y, rng: augment_ops.cutmix(x, y, alpha, ctx.num_classes, rng))


# --- data augmentation ----------------------------------------------------------------------

@REGULARIZERS.register("augment", compatible=_needs_images("augment"))
def augment(
    ctx: RegContext, *, crop_padding: Annotated[int, Range(ge=0)] = 0, flip: bool = False,
    brightness: Strength = 0.0, contrast: Annotated[float, Range(ge=0, lt=1)] = 0.0,
    rotate: Annotated[float, Range(ge=0, le=180)] = 0.0, translate: Annotated[float, Range(ge=0, lt=1)] = 0.0,
    scale: Annotated[float, Range(ge=0, lt=1)] = 0.0, shear: Annotated[float, Range(ge=0, lt=90)] = 0.0,
    pca_lighting: Strength = 0.0,
) -> Parts:
    """Per-sample on-device augmentation: crop+pad, flip, brightness/contrast, affine, PCA lighting (Krizhevsky et al. 2012)."""
    basis = augment_ops.pca_basis(ctx.train_x) if pca_lighting > 0 and ctx.train_x is not None else None
    if pca_lighting > 0 and basis is None:
        raise ValueError("pca_lighting needs the training inputs")

    def apply(x: torch.Tensor, y: torch.Tensor, rng: Rng) -> Batch:
        if x.dim() != 4:
            raise ValueError(f"augment needs image batches (N, C, H, W), got shape {tuple(x.shape)}")
        if crop_padding:
            x = augment_ops.random_crop(x, crop_padding, rng)
        if flip:
            x = augment_ops.random_flip(x, rng)
        if rotate or translate or scale or shear:
            x = augment_ops.affine(x, rotate, translate, scale, shear, rng)
        if contrast:
            x = augment_ops.contrast(x, contrast, rng)
        if brightness:
            x = augment_ops.brightness(x, brightness, rng)
        if basis is not None:
            x = augment_ops.pca_lighting(x, basis, pca_lighting, rng)
        return x, y

    return Parts(batch=apply)


# --- stochastic depth -----------------------------------------------------------------------

def _needs_residual(config: dict[str, Any]) -> str | None:
    if not MODELS.get(config["model"]["name"]).caps.residual:
        return f"stochastic_depth drops residual branches; model {config['model']['name']!r} has none"
    return None


@REGULARIZERS.register("stochastic_depth", compatible=_needs_residual)
def stochastic_depth(ctx: RegContext, *, p: Prob = 0.5) -> Parts:
    """Stochastic depth: residual branches dropped in training, linear decay to p at the last block (Huang et al. 2016)."""
    def configure(ctx: "ModelContext") -> "ModelContext":
        return replace(ctx, drop_path=max(ctx.drop_path, p))

    return Parts(configure=configure)


# --- early stopping ------------------------------------------------------------------------

@REGULARIZERS.register("early_stopping")
def early_stopping(
    ctx: RegContext, *, metric: Literal["val_loss", "val_acc"] = "val_loss",
    patience: Annotated[int, Range(ge=0)] = 5, min_delta: Strength = 0.0, restore_best: bool = True,
) -> Parts:
    """Stop when the validation metric stalls for `patience` epochs; restore the best weights (Prechelt 1998)."""
    state: dict[str, Any] = {"best": None, "epoch": None, "bad": 0, "weights": None}
    maximize = metric.endswith("acc")

    def epoch_end(model: nn.Module, metrics: dict[str, float]) -> dict[str, Any] | None:
        value = metrics[metric]
        better = state["best"] is None or (value > state["best"] + min_delta if maximize
                                           else value < state["best"] - min_delta)
        if better:
            state["best"], state["epoch"], state["bad"] = value, metrics["epoch"], 0
            if restore_best:
                state["weights"] = copy.deepcopy(model.state_dict())
            return None
        state["bad"] += 1
        if state["bad"] <= patience:
            return None
        if restore_best and state["weights"] is not None:
            model.load_state_dict(state["weights"])
            return {"restored_epoch": state["epoch"]}
        return {"restored_epoch": None}

    return Parts(epoch_end=epoch_end, state=state)
