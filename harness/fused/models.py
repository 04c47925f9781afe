"""Stacked models: K trials of one architecture as one model whose parameters lead with a slice dim K.

Slice k of every parameter and buffer is trial k's copy, so slice k computes what trial k's own
(unfused) model computes, on its own batch. ``stack_models`` builds the stacked model from K
harness models already built and initialized with each trial's seed and init scheme, so each slice
starts from its trial's exact init; ``unstack`` gives slice k back as the unfused model's state
dict. Linears are one ``baddbmm`` and convolutions one grouped convolution, as in HFTA (Wang et al.,
"Horizontally Fused Training Array", MLSys 2021).

Layouts. A stacked model takes ``[K, N, *in_shape]``: row k is slice k's batch of N samples (each
slice may see different data). Fully connected layers work on ``[K, N, F]`` (the *stacked* layout,
what ``baddbmm`` takes). Convolutional layers work on ``[N, K*C, H, W]`` (the *grouped* layout,
slice k's channels at ``k*C:(k+1)*C``): a grouped convolution, ``batch_norm`` (per channel),
``group_norm`` with K·G groups, max-pooling and elementwise activations all take it as it is, so a
CNN permutes its activations twice per forward, not once per layer: its first convolution turns
``[K, N, C, H, W]`` into the grouped layout (it also takes a grouped ``[N, K*C, H, W]`` input as it
is) and its ``Flatten`` turns ``[N, K*C, H, W]`` into ``[K, N, C*H*W]``. The output is ``[K, N,
classes]``; ``slice_losses`` gives the K per-slice losses, whose sum has each slice's own gradient.

Precision (float32, CPU): outputs of linears and normalizations equal the unfused layers' bit for
bit; weight gradients differ in the last bits (bmm's backward sums in another order than mm's); a
grouped convolution runs another kernel than K separate ones, and its outputs and weight gradients
differ by ~1e-6 relative (``tests/test_fused_models.py`` states the tolerances).

Per-slice dropout: each slice draws its mask from its own ``torch.Generator``, so its randomness does
not depend on the other slices, and draws it with the same call as ``nn.Dropout`` (inverted) and
the harness's ``VanillaDropout``: on the CPU, slice k's mask equals the unfused layer's mask drawn
from the same generator state. (On CUDA ``nn.Dropout`` runs torch's fused Philox kernel, which takes
no generator; masks there match in distribution only.)

Supported: the harness's ``mlp``, ``cnn_2c2d`` and ``cnn_3c3d`` (``nn.Sequential`` of Flatten,
Linear, Conv2d, MaxPool2d/AvgPool2d, BatchNorm1d/2d, LayerNorm, GroupNorm, elementwise activations,
Maxout, Dropout, VanillaDropout), every norm of the harness, every init. Not supported (a
``ValueError`` names the layer): residual models (``resnet``, ``resnet18``, ``wrn``: not a
Sequential), DropConnect layers, dropout on convolutional feature maps, and trials of one pack that
differ in anything but their weights and dropout rates (norm eps/momentum, activation parameters).
"""
from __future__ import annotations

import copy
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.components.layers import Maxout, VanillaDropout
from harness.models.resnet import DropPath, ResNet

_ELEMENTWISE = (nn.ReLU, nn.Tanh, nn.Sigmoid, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.Identity)
_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d)


def to_grouped(x: Tensor) -> Tensor:
    """``[K, N, C, H, W]`` → ``[N, K*C, H, W]`` (one copy)."""
    k, n = x.shape[:2]
    return x.transpose(0, 1).reshape(n, k * x.shape[2], *x.shape[3:])


def from_grouped(x: Tensor, k: int) -> Tensor:
    """``[N, K*C, ...]`` → ``[K, N, C, ...]`` (a view)."""
    return x.view(x.shape[0], k, x.shape[1] // k, *x.shape[2:]).transpose(0, 1)


def _flat_features(x: Tensor) -> Tensor:
    """``[K, N, C]`` → ``[N, K*C]``, the layout torch's per-channel normalization kernels take."""
    return x.transpose(0, 1).reshape(x.shape[1], -1)


def _unflat_features(x: Tensor, k: int) -> Tensor:
    return x.view(x.shape[0], k, -1).transpose(0, 1)


def slice_losses(loss_fn, logits: Tensor, targets: Tensor) -> Tensor:
    """The ``[K]`` losses of ``loss_fn(logits[k], targets[k])``; their sum has every slice's own gradient."""
    return torch.stack([loss_fn(logits[k], targets[k]) for k in range(logits.shape[0])])


class _StackedMatmul(torch.autograd.Function):
    """``x @ weightᵀ + bias`` per slice, with a backward that computes the weight gradient as ``gᵀx``.

    Autograd's own backward of ``bmm(x, weightᵀ)`` computes ``xᵀg`` (``[K, in, out]``) and accumulates
    its transpose into the ``[K, out, in]`` gradient. ``gᵀx`` gives that layout directly, and on the CPU
    it is up to 9x faster where ``out`` is small (a classifier: ``[16, 10, 32] @ [16, 32, 128]`` takes
    36 µs against 333 µs for ``[16, 128, 32] @ [16, 32, 10]``). The forward is the same ``baddbmm``."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        ctx.biased = bias is not None
        if bias is None:
            return torch.bmm(x, weight.transpose(1, 2))
        return torch.baddbmm(bias.unsqueeze(1), x, weight.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
        x, weight = ctx.saved_tensors
        gx = torch.bmm(g, weight) if ctx.needs_input_grad[0] else None
        gw = torch.bmm(g.transpose(1, 2), x) if ctx.needs_input_grad[1] else None
        gb = g.sum(1) if ctx.biased and ctx.needs_input_grad[2] else None
        return gx, gw, gb


class StackedLinear(nn.Module):
    """K linears: weight ``[K, out, in]``, bias ``[K, out]``, on ``[K, N, in]`` as one ``baddbmm``."""

    def __init__(self, slices: int, fan_in: int, fan_out: int, bias: bool = True) -> None:
        super().__init__()
        self.slices, self.in_features, self.out_features = slices, fan_in, fan_out
        self.weight = nn.Parameter(torch.empty(slices, fan_out, fan_in))
        self.bias = nn.Parameter(torch.zeros(slices, fan_out)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        return _StackedMatmul.apply(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"slices={self.slices}, in={self.in_features}, out={self.out_features}, bias={self.bias is not None}"


class StackedHead(StackedLinear):
    """A residual model's classifier: takes the pooled grouped features ``[N, K*C]`` (what the model's own
    ``flatten(1)`` gives) and returns ``[K, N, classes]``."""

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 2:
            x = _unflat_features(x, self.weight.shape[0])
        return super().forward(x)


class StackedConv2d(nn.Module):
    """K convolutions: weight ``[K, cout, cin/groups, kh, kw]``, as one convolution with K·groups groups.

    Takes ``[K, N, cin, H, W]`` or the grouped ``[N, K*cin, H, W]``; returns the grouped layout.
    """

    def __init__(self, slices: int, cin: int, cout: int, kernel: int | tuple[int, int], stride=1, padding=0,
                 bias: bool = True, *, dilation=1, groups: int = 1) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.slices, self.in_channels, self.out_channels = slices, cin, cout
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = nn.Parameter(torch.empty(slices, cout, cin // groups, kh, kw))
        self.bias = nn.Parameter(torch.zeros(slices, cout)) if bias else None

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5:
            x = to_grouped(x)
        w = self.weight.reshape(-1, *self.weight.shape[2:])
        b = None if self.bias is None else self.bias.reshape(-1)
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.slices * self.groups)

    def extra_repr(self) -> str:
        return (f"slices={self.slices}, {self.in_channels}, {self.out_channels}, "
                f"kernel={tuple(self.weight.shape[3:])}, stride={self.stride}, padding={self.padding}")


class StackedNorm(nn.Module):
    """Per-slice affine ``weight``/``bias`` ``[K, C]``; ``grouped`` says which layout the input has.
    The base of every stacked normalization, e.g. for parameter groups that exempt norms from decay."""

    def __init__(self, slices: int, features: int, eps: float, grouped: bool, affine: bool = True) -> None:
        super().__init__()
        self.slices, self.num_features, self.eps, self.grouped = slices, features, eps, grouped
        self.weight = nn.Parameter(torch.ones(slices, features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(slices, features)) if affine else None

    def _affine(self) -> tuple[Tensor | None, Tensor | None]:
        return (None, None) if self.weight is None else (self.weight.reshape(-1), self.bias.reshape(-1))

    def _apply_flat(self, x: Tensor, fn) -> Tensor:
        """``fn`` on the ``[N, K*C, ...]`` layout, whichever layout ``x`` came in."""
        if self.grouped:
            return fn(x)
        if x.dim() != 3:
            raise ValueError(f"{type(self).__name__} takes [K, N, C] features, got shape {tuple(x.shape)}")
        return _unflat_features(fn(_flat_features(x)), self.slices)

    def extra_repr(self) -> str:
        return f"slices={self.slices}, {self.num_features}, eps={self.eps}, grouped={self.grouped}"


class _StackedBatchNorm(StackedNorm):
    """``torch.nn.BatchNorm{1,2}d`` per slice: batch statistics per slice and channel in training,
    per-slice running statistics ``[K, C]`` (unbiased variance, ``momentum``; cumulative average when
    ``momentum`` is None) updated in place through views, and used at evaluation."""

    def __init__(self, slices: int, features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, *, grouped: bool) -> None:
        super().__init__(slices, features, eps, grouped, affine)
        self.momentum = momentum
        self.register_buffer("running_mean", torch.zeros(slices, features))
        self.register_buffer("running_var", torch.ones(slices, features))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))  # shared: slices step together

    def forward(self, x: Tensor) -> Tensor:
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        weight, bias = self._affine()
        mean, var = self.running_mean.view(-1), self.running_var.view(-1)  # views: F.batch_norm updates the buffers
        return self._apply_flat(x, lambda t: F.batch_norm(t, mean, var, weight, bias, self.training, factor, self.eps))


class StackedBatchNorm1d(_StackedBatchNorm):
    """BatchNorm1d per slice on ``[K, N, C]``."""

    def __init__(self, slices: int, features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True) -> None:
        super().__init__(slices, features, eps, momentum, affine, grouped=False)


class StackedBatchNorm2d(_StackedBatchNorm):
    """BatchNorm2d per slice on the grouped ``[N, K*C, H, W]``."""

    def __init__(self, slices: int, features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True) -> None:
        super().__init__(slices, features, eps, momentum, affine, grouped=True)


class StackedGroupNorm(StackedNorm):
    """``torch.nn.GroupNorm(groups, C)`` per slice: one ``group_norm`` with K·groups groups over K·C
    channels (a group never crosses slices). The harness's layernorm of images is GroupNorm(1, C)."""

    def __init__(self, slices: int, groups: int, features: int, eps: float = 1e-5, affine: bool = True, *,
                 grouped: bool = True) -> None:
        super().__init__(slices, features, eps, grouped, affine)
        self.num_groups = groups

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._affine()
        return self._apply_flat(x, lambda t: F.group_norm(t, self.slices * self.num_groups, weight, bias, self.eps))


class StackedLayerNorm(StackedNorm):
    """``torch.nn.LayerNorm(C)`` per slice on ``[K, N, C]``: ``layer_norm`` over each sample's C
    features, then slice k's scale and shift."""

    def __init__(self, slices: int, features: int, eps: float = 1e-5, affine: bool = True) -> None:
        super().__init__(slices, features, eps, False, affine)

    def forward(self, x: Tensor) -> Tensor:
        weight, bias = self._affine()
        if weight is None:
            return F.layer_norm(x, (self.num_features,), None, None, self.eps)
        # layer_norm's affine parameters are shared by every row; per-slice ones go on afterwards
        y = F.layer_norm(x, (self.num_features,), None, None, self.eps)
        return torch.addcmul(self.bias.unsqueeze(1), y, self.weight.unsqueeze(1))


class StackedMaxout(nn.Module):
    """The harness's Maxout on ``[K, N, pieces*F]``: the max over each unit's ``pieces`` features."""

    def __init__(self, pieces: int) -> None:
        super().__init__()
        self.pieces = pieces

    def forward(self, x: Tensor) -> Tensor:
        return x.view(*x.shape[:2], x.shape[2] // self.pieces, self.pieces, *x.shape[3:]).amax(dim=3)

    def extra_repr(self) -> str:
        return f"pieces={self.pieces}"


def stacked_dropout(x: Tensor, p: Sequence[float], keep: Tensor, generators: Sequence[torch.Generator],
                    training: bool, vanilla: bool = False) -> Tensor:
    """Dropout of ``[K, N, ...]`` with rate ``p[k]`` on slice k, its mask from ``generators[k]``.

    Inverted (Srivastava et al. 2014 as ``torch.nn.Dropout``): kept units × 1/(1 − p_k) in training,
    identity at evaluation. Vanilla: no scaling in training, × (1 − p_k) at evaluation. ``keep`` is
    the ``[K]`` tensor 1 − p on x's device; ``p`` the same rates as host floats, which each slice's
    draw takes as torch's dropout does. A slice with p_k = 0 draws nothing, as torch's dropout at p = 0.
    """
    rows = keep.to(x.dtype).view(-1, *([1] * (x.dim() - 1)))
    if not training:
        return x * rows if vanilla else x
    if all(pk == 0 for pk in p):
        return x
    mask = torch.ones_like(x)
    for k, (pk, gen) in enumerate(zip(p, generators)):
        if pk == 0:
            continue
        if gen.device != x.device:
            raise ValueError(f"slice {k}'s dropout generator is on {gen.device}, its input on {x.device}")
        if vanilla:  # VanillaDropout's call: bernoulli of a probability tensor
            mask[k] = torch.bernoulli(torch.full_like(x[k], 1 - pk), generator=gen)
        else:  # torch's CPU dropout: bernoulli_ with a scalar probability, then ÷ (1 − p)
            mask[k].bernoulli_(1 - pk, generator=gen)
    return x * (mask if vanilla else mask.div_(rows))


class StackedDropout(nn.Module):
    """Per-slice dropout on ``[K, N, ...]``; see ``stacked_dropout``. ``generators`` is shared by every
    dropout layer of a stacked model, as trial k's layers share its one random stream."""

    def __init__(self, p: Sequence[float] | Tensor, generators: Sequence[torch.Generator],
                 vanilla: bool = False) -> None:
        super().__init__()
        self.p = tuple(float(v) for v in (p.tolist() if isinstance(p, Tensor) else p))  # host copy, read once
        if any(not 0 <= v < 1 for v in self.p):
            raise ValueError(f"dropout rates must lie in [0, 1), got {self.p}")
        if len(generators) != len(self.p):
            raise ValueError(f"{len(self.p)} dropout rates need as many generators, got {len(generators)}")
        self.generators, self.vanilla = list(generators), vanilla
        # 1 − p in float64 on the host, then rounded to float32, as torch rounds it for a float32 kernel
        self.register_buffer("keep", torch.tensor([1 - v for v in self.p]), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        return stacked_dropout(x, self.p, self.keep, self.generators, self.training, self.vanilla)

    def extra_repr(self) -> str:
        return f"p={list(self.p)}, {'vanilla' if self.vanilla else 'inverted'}"


class StackedFlatten(nn.Module):
    """``nn.Flatten()`` per slice: ``[K, N, ...]`` → ``[K, N, F]``, or the grouped ``[N, K*C, H, W]`` →
    ``[K, N, C*H*W]`` in the order the unfused Flatten gives."""

    def __init__(self, slices: int, grouped: bool) -> None:
        super().__init__()
        self.slices, self.grouped = slices, grouped

    def forward(self, x: Tensor) -> Tensor:
        if self.grouped:
            return x.reshape(x.shape[0], self.slices, -1).transpose(0, 1)
        return x.flatten(2)

    def extra_repr(self) -> str:
        return f"slices={self.slices}, grouped={self.grouped}"


class StackedSequential(nn.Sequential):
    """A stacked model: its layers at the unfused Sequential's indices, so state dict keys match.
    ``grouped`` names the layers whose output is in the grouped layout (see ``slice_rows``)."""

    def __init__(self, slices: int, layers: list[nn.Module], grouped: dict[str, bool] | None = None) -> None:
        super().__init__(*layers)
        self.slices = slices
        self.grouped = dict(grouped or {})


def slice_rows(stacked: nn.Module, name: str, out: Tensor) -> Tensor:
    """The output ``out`` of the stacked model's layer ``name`` as ``[K, N, ...]``, row k slice k's."""
    return from_grouped(out, stacked.slices) if stacked.grouped.get(name) else out


# --- building from K unfused models -----------------------------------------------------------

def _same(index: int, layers: list[nn.Module], what: str, values: list) -> None:
    if any(v != values[0] for v in values[1:]):
        raise ValueError(f"layer {index} ({type(layers[0]).__name__}): the trials differ in {what} ({values}); "
                         f"a pack shares it")


def _rows(layers: list[nn.Module], name: str) -> Tensor:
    return torch.stack([getattr(m, name).detach() for m in layers])


def _copy_into(target: nn.Module, layers: list[nn.Module]) -> nn.Module:
    with torch.no_grad():
        for name, t in list(target.named_parameters(recurse=False)) + list(target.named_buffers(recurse=False)):
            if name == "num_batches_tracked":
                t.copy_(getattr(layers[0], name))
            else:
                t.copy_(_rows(layers, name))
    first = next(iter(layers[0].parameters()), None)
    return target.to(first) if first is not None else target


def _stack_layer(index: int, layers: list[nn.Module], grouped: bool, generators: list[torch.Generator]
                 ) -> tuple[nn.Module, bool]:
    """The stacked layer of K unfused ``layers`` at ``index``, and whether its output is grouped."""
    kind, K, m = type(layers[0]), len(layers), layers[0]
    where = f"layer {index} ({kind.__name__})"
    for name in ("weight", "bias"):
        _same(index, layers, f"{name} shape", [tuple(getattr(l, name).shape) if getattr(l, name, None) is not None
                                               else None for l in layers])
    if kind is nn.Flatten:
        _same(index, layers, "flatten dims", [(l.start_dim, l.end_dim) for l in layers])
        if (m.start_dim, m.end_dim) != (1, -1):
            raise ValueError(f"{where}: only Flatten(1, -1) is supported")
        return StackedFlatten(K, grouped), False
    if kind is nn.Linear:
        if grouped:
            raise ValueError(f"{where}: a Linear on a convolutional feature map needs a Flatten before it")
        return _copy_into(StackedLinear(K, m.in_features, m.out_features, m.bias is not None), layers), False
    if kind is nn.Conv2d:
        _same(index, layers, "convolution settings",
              [(l.stride, l.padding, l.dilation, l.groups, l.padding_mode) for l in layers])
        if m.padding_mode != "zeros":
            raise ValueError(f"{where}: padding_mode {m.padding_mode!r} is not supported (only 'zeros')")
        conv = StackedConv2d(K, m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding, m.bias is not None,
                             dilation=m.dilation, groups=m.groups)
        return _copy_into(conv, layers), True
    if kind in (nn.BatchNorm1d, nn.BatchNorm2d):
        _same(index, layers, "eps/momentum/affine", [(l.eps, l.momentum, l.affine) for l in layers])
        if not m.track_running_stats:
            raise ValueError(f"{where}: BatchNorm without running statistics is not supported")
        if grouped != (kind is nn.BatchNorm2d):
            raise ValueError(f"{where}: {kind.__name__} where the features are {'2-D' if grouped else '1-D'}")
        _same(index, layers, "num_batches_tracked", [int(l.num_batches_tracked) for l in layers])
        cls = StackedBatchNorm2d if grouped else StackedBatchNorm1d
        return _copy_into(cls(K, m.num_features, m.eps, m.momentum, m.affine), layers), grouped
    if kind is nn.GroupNorm:
        _same(index, layers, "groups/eps/affine", [(l.num_groups, l.eps, l.affine) for l in layers])
        norm = StackedGroupNorm(K, m.num_groups, m.num_channels, m.eps, m.affine, grouped=grouped)
        return _copy_into(norm, layers), grouped
    if kind is nn.LayerNorm:
        _same(index, layers, "shape/eps/affine", [(l.normalized_shape, l.eps, l.elementwise_affine) for l in layers])
        if grouped or len(m.normalized_shape) != 1 or getattr(m, "bias", None) is None and m.elementwise_affine:
            raise ValueError(f"{where}: only LayerNorm(C) over [N, C] features (with bias) is supported")
        return _copy_into(StackedLayerNorm(K, m.normalized_shape[0], m.eps, m.elementwise_affine), layers), False
    if kind is Maxout:
        _same(index, layers, "pieces", [l.pieces for l in layers])
        # on [N, K*C, ...] the harness's Maxout pools runs of `pieces` channels, which never cross slices
        return (copy.deepcopy(m) if grouped else StackedMaxout(m.pieces)), grouped
    if kind in (nn.Dropout, VanillaDropout):
        if grouped:
            raise ValueError(f"{where}: dropout on a convolutional feature map is not supported")
        return StackedDropout([l.p for l in layers], generators, vanilla=kind is VanillaDropout), False
    if kind is DropPath:
        if any(l.p > 0 for l in layers):
            raise ValueError(f"{where}: stochastic depth is not supported in a pack")
        return nn.Identity(), grouped
    if kind in _ELEMENTWISE or kind in _POOLS:
        if kind in _POOLS and not grouped:
            raise ValueError(f"{where}: pooling outside the convolutional part is not supported")
        _same(index, layers, "settings", [repr(l) for l in layers])
        return copy.deepcopy(m), grouped
    raise ValueError(f"{where}: no stacked version of {kind.__name__} (supported: Flatten, Linear, Conv2d, pooling, "
                     f"BatchNorm1d/2d, LayerNorm, GroupNorm, activations, Maxout, Dropout, VanillaDropout)")


def stack_models(models: Sequence[nn.Module], generators: Sequence[torch.Generator] | None = None
                 ) -> StackedSequential:
    """One stacked model from K unfused harness models of one architecture, model k's weights and
    buffers in row k. ``generators``: slice k's dropout stream (on the models' device); by default K
    CPU generators seeded from the global one. The unfused models are left as they were."""
    models = list(models)
    if not models:
        raise ValueError("stack_models needs at least one model")
    kinds = {type(m) for m in models}
    if len(kinds) == 1 and kinds <= {ResNet}:
        return _stack_residual(models, generators)
    for m in models:
        if type(m) is not nn.Sequential:
            raise ValueError(f"stack_models supports the harness's Sequential models (mlp, cnn_2c2d, cnn_3c3d) and "
                             f"residual models (resnet, resnet18, wrn), not {type(m).__name__}")
    lengths = [len(m) for m in models]
    if len(set(lengths)) > 1:
        raise ValueError(f"the models differ in their number of layers ({lengths}); a pack shares one architecture")
    K = len(models)
    if generators is None:
        seeds = torch.randint(0, 2**62, (K,)).tolist()
        generators = [torch.Generator().manual_seed(s) for s in seeds]
    generators = list(generators)
    layers, grouped, outputs = [], False, {}
    for index, column in enumerate(zip(*models)):
        kinds = {type(l).__name__ for l in column}
        if len(kinds) > 1:
            raise ValueError(f"layer {index}: the models differ in layer type ({sorted(kinds)})")
        layer, grouped = _stack_layer(index, list(column), grouped, generators)
        layers.append(layer)
        outputs[str(index)] = grouped
    first = next(models[0].parameters(), None)
    return StackedSequential(K, layers, outputs).to(device=None if first is None else first.device)


def _stack_residual(models: list[nn.Module], generators: Sequence[torch.Generator] | None) -> nn.Module:
    """A stacked CIFAR ResNet / WRN: model 0's own modules and forward, each layer replaced by its stacked
    form, every activation in the grouped layout from the stem to the pooled features, which the classifier
    (``StackedHead``) turns into ``[K, N, classes]``. The blocks' residual sums are elementwise, so they
    add slice k to slice k as they stand."""
    K = len(models)
    if generators is None:
        generators = [torch.Generator().manual_seed(s) for s in torch.randint(0, 2**62, (K,)).tolist()]
    shapes = {tuple((n, tuple(p.shape)) for n, p in m.named_parameters()) for m in models}
    if len(shapes) > 1:
        raise ValueError("the residual models differ in their layers or widths; a pack shares one architecture")
    stacked = copy.deepcopy(models[0])
    stacked.grouped = {}  # every layer's output is grouped, but the classifier's
    for name, module in list(models[0].named_modules()):
        if not name or next(module.children(), None) is not None:
            continue  # the model and its containers keep model 0's forward
        column = [m.get_submodule(name) for m in models]
        if name == "fc":
            layer: nn.Module = _copy_into(StackedHead(K, module.in_features, module.out_features,
                                                      module.bias is not None), column)
        else:
            layer, _ = _stack_layer(name, column, True, list(generators))
            stacked.grouped[name] = True
        stacked.set_submodule(name, layer)
    stacked.slices = K
    return stacked


def unstack(stacked: nn.Module, k: int) -> dict[str, Tensor]:
    """Slice k's weights and buffers in the unfused model's state dict format (keys and shapes).

    Every persistent tensor of a stacked model is ``[K, ...]`` except BatchNorm's 0-d batch
    counter, which the slices share."""
    return {name: (t if t.dim() == 0 else t[k]).detach().clone() for name, t in stacked.state_dict().items()}
