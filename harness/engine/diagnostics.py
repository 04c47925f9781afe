"""Per-layer diagnostics, kept in every record: the checks of "babysitting the learning process"
(Karpathy, CS231n notes; Glorot & Bengio 2010 for the activation and gradient profiles by depth).

- **Initial loss**: plain softmax cross-entropy of the model at init on a probe batch. With small
  random logits it is about ln C for C classes; far from that, the init or the output layer is off.
- **Activations**: mean and std of every activation layer's output on a fixed probe batch of
  training inputs, at init and after each epoch; for ReLU the fraction of *dead* units (zero for
  every probe sample), for tanh/sigmoid the fraction of *saturated* outputs (|tanh| > 0.99,
  sigmoid < 0.01 or > 0.99), where the gradient all but vanishes.
- **Gradients**: the norm of each weight matrix's gradient (linear and conv weights: parameters of
  2 or more dimensions), at init on the probe batch and as an epoch's mean over the sampled steps.
- **Updates**: the norm of a step's change of each weight over the weight's norm; about 1e-3 is
  the rule of thumb, much more and the learning rate is likely too high.

Flags (``flags``), each with the numbers that raised it:

- ``vanishing gradients``: the first weight layer's gradient RMS (norm / sqrt(numel)) under
  1/100 of the last one's; ``exploding gradients``: over 100 times it. (A weight's gradient is the
  back-propagated error times the layer's input, so this catches errors that shrink or grow with
  depth, as in deep sigmoid nets.)
- ``collapsing activations``: the last activation layer's std under 1/100 of the first one's, the
  small-init failure where every layer scales its input down (and with it every weight gradient);
  ``exploding activations``: over 100 times it.
- ``dead units``: a ReLU layer with more than half its units dead.
- ``saturated units``: a tanh/sigmoid layer with more than half its outputs saturated.
- ``large updates``: a layer's update/weight ratio over 0.1 in an epoch.

The probe runs the model as it trains (train mode, so BatchNorm uses batch statistics) without
changing training: the buffers (BatchNorm's running statistics) and the random number generators
(dropout's masks) are restored after it, and it adds no step to the optimizer.
"""
from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.components.layers import Maxout
from harness.engine import checkpoint as ckpt
from harness.technique import Callback, Run, Stop

ACTIVATIONS = (nn.ReLU, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.Tanh, nn.Sigmoid, Maxout)
SATURATION: dict[type, Callable[[torch.Tensor], torch.Tensor]] = {
    nn.Tanh: lambda y: y.abs() > 0.99,
    nn.Sigmoid: lambda y: (y < 0.01) | (y > 0.99),
}
GRADIENT_RATIO = 100.0  # first/last layer gradient RMS beyond this factor either way is flagged
DEAD, SATURATED = 0.5, 0.5  # fraction of a layer beyond which it is flagged
LARGE_UPDATE = 0.1
# The initial loss is expected within these multiples of ln C. Zero-mean logits of std σ give a cross-entropy
# of about ln C + σ²/2, and Kaiming's √2 gain on a ReLU MLP's output layer alone makes σ² about 2: 1.2-1.5 x ln C
# for C = 10 by seed, more with dropout's 1/(1-p) in training mode. 2 x ln C (σ² about 2 ln C) leaves that default
# unflagged and still catches what the check is for (unnormalized inputs, a std-1 init: 5-50 x ln C).
INIT_LOSS_LOW, INIT_LOSS_HIGH = 0.5, 2.0


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else x


def weights(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """The weight matrices and conv kernels (2+ dimensions), in the order the model declares them."""
    return [(n, p) for n, p in model.named_parameters() if p.dim() >= 2 and p.requires_grad]


def activation_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ACTIVATIONS)]


def profiles(module: nn.Module, y: torch.Tensor) -> list[dict[str, float]]:
    """The activation profile of each row of ``y`` (``[K, N, C, ...]``: K models' outputs of ``module``
    on one probe batch, K = 1 for a trial alone): mean, std, the share of dead units (a ReLU whose unit,
    a feature or a channel, is 0 on the whole batch) and of saturated outputs (tanh, sigmoid)."""
    y = y.detach().float()
    flat = y.flatten(1)
    columns = {"mean": flat.mean(1), "std": flat.std(1) if flat.shape[1] > 1 else flat.new_zeros(len(flat))}
    if type(module) is nn.ReLU:
        columns["dead"] = (y.transpose(1, 2).flatten(2) == 0).all(dim=2).float().mean(1)
    saturated = SATURATION.get(type(module))
    if saturated is not None:
        columns["saturated"] = saturated(flat).float().mean(1)
    values = {key: column.tolist() for key, column in columns.items()}  # one host copy per statistic
    return [{key: _round(v[k]) for key, v in values.items()} for k in range(len(flat))]


@contextlib.contextmanager
def probing(model: nn.Module, layers: list[tuple[str, nn.Module]],
            profile: Callable[[str, nn.Module, torch.Tensor], None]) -> Iterator[None]:
    """``model`` in train mode with ``profile(name, module, output)`` hooked on each of ``layers``; on leaving,
    the hooks removed, its mode and its buffers (BatchNorm statistics) as they were."""
    hooks = [module.register_forward_hook(lambda m, inputs, out, name=name: profile(name, m, out))
             for name, module in layers]
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    was_training = model.training
    model.train()
    try:
        yield
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
        with torch.no_grad():
            for k, b in model.named_buffers():
                b.copy_(buffers[k])


class Probe:
    """Profiles one model on a fixed batch of training data, leaving its training untouched.
    ``given``: the next ``activations()``, computed elsewhere (a fused pack profiles all its slices in
    one forward of the stacked model, ``harness.fused.probe``)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> None:
        self.model, self.x, self.y = model, x, y
        self.weights = weights(model)
        self.layers = activation_layers(model)
        self.given: dict[str, dict[str, float]] | None = None

    def _forward(self, grad: bool, then: Callable[[torch.Tensor], Any] = lambda out: None,
                 ) -> tuple[Any, dict[str, dict[str, float]]]:
        """``then(output)`` runs before the buffers are restored (a backward needs them as they were)."""
        stats: dict[str, dict[str, float]] = {}

        def profile(name: str, module: nn.Module, out: torch.Tensor) -> None:
            stats[name] = profiles(module, out.unsqueeze(0))[0]

        rng = ckpt.global_rng_state()
        try:
            with probing(self.model, self.layers, profile), torch.set_grad_enabled(grad):
                result = then(self.model(self.x))
        finally:
            ckpt.set_global_rng_state(rng)
        return result, stats

    def activations(self) -> dict[str, dict[str, float]]:
        if self.given is not None:
            given, self.given = self.given, None
            return given
        return self._forward(grad=False)[1]

    def at_init(self) -> dict[str, Any]:
        """Loss, activations and per-layer gradient norms of the untrained model (no step is taken)."""
        params = [p for _, p in self.weights]

        def gradients(out: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor | None, ...]]:
            loss = F.cross_entropy(out.float(), self.y)
            return loss, torch.autograd.grad(loss, params, allow_unused=True)  # .grad is left alone

        (loss, grads), stats = self._forward(grad=True, then=gradients)
        norms = {n: _round(g.norm().item()) if g is not None else 0.0 for (n, _), g in zip(self.weights, grads)}
        return {"loss": _round(loss.item()), "activations": stats, "grad_norm": norms}


def grad_norms(params: list[nn.Parameter]) -> torch.Tensor:
    """Each parameter's gradient norm (0 where it has none), in one fused call: the global norm and
    the per-layer diagnostics both read them."""
    present = [i for i, p in enumerate(params) if p.grad is not None]
    norms = torch.stack(torch._foreach_norm([params[i].grad for i in present]))
    if len(present) == len(params):
        return norms
    return norms.new_zeros(len(params)).index_copy(0, torch.tensor(present, device=norms.device), norms)


class StepStats:
    """Per-layer gradient norms and update/weight ratios, sampled at some steps of an epoch."""

    def __init__(self, model: nn.Module) -> None:
        self.named = weights(model)
        self.params = [p for _, p in self.named]
        position = {id(p): i for i, p in enumerate(model.parameters())}
        self.index = torch.tensor([position[id(p)] for p in self.params], dtype=torch.long)
        self.grad_norms: list[torch.Tensor] = []  # one vector per sampled step, kept on the device
        self.ratios: list[torch.Tensor] = []
        self._before: list[torch.Tensor] | None = None

    def gradients(self, per_param: torch.Tensor | None = None) -> None:
        """After backward: each weight's gradient norm (before clipping: what the loss gave), picked
        from ``per_param`` (the norms of all of the model's parameters, in order) when the caller
        has them already."""
        if not self.params:
            return
        if per_param is None:
            self.grad_norms.append(grad_norms(self.params))
            return
        if self.index.device != per_param.device:
            self.index = self.index.to(per_param.device)  # once: no copy per sampled step
        self.grad_norms.append(per_param[self.index])

    def before_step(self) -> None:
        self._before = [p.detach().clone() for p in self.params]

    def after_step(self) -> None:
        if self._before is None or not self.params:
            return
        current = [p.detach() for p in self.params]
        torch._foreach_sub_(self._before, current)
        change = torch.stack(torch._foreach_norm(self._before))
        size = torch.stack(torch._foreach_norm(current)).clamp_min(1e-12)
        self.ratios.append(change / size)
        self._before = None

    def state(self) -> dict[str, list[list[float]]]:
        """What a mid-epoch checkpoint keeps of it."""
        return {"grad_norms": [v.tolist() for v in self.grad_norms], "ratios": [v.tolist() for v in self.ratios]}

    def restore(self, state: dict[str, list[list[float]]] | None, device: torch.device) -> None:
        state = state or {}
        self.grad_norms = [torch.tensor(v, device=device) for v in state.get("grad_norms", [])]
        self.ratios = [torch.tensor(v, device=device) for v in state.get("ratios", [])]

    def epoch(self) -> dict[str, dict[str, float]]:
        """The epoch's means per layer, and a fresh start for the next epoch."""
        out = {}
        for key, rows in (("grad_norm", self.grad_norms), ("update_ratio", self.ratios)):
            if rows:
                mean = torch.stack(rows).float().mean(0).tolist()
                out[key] = {n: _round(v) for (n, _), v in zip(self.named, mean)}
        self.grad_norms, self.ratios = [], []
        return out


def flags(entry: dict[str, Any], sizes: dict[str, int], when: str, updates: bool = True) -> list[tuple[str, str]]:
    """The flags one profile (init or an epoch) raises, as (kind:layer, message); ``sizes``: each
    weight's element count; ``updates``: whether to judge the update/weight ratio (not for L-BFGS,
    whose one step is a whole line search)."""
    out = []
    norms = entry.get("grad_norm") or {}
    names = [n for n in norms if sizes.get(n)]
    if len(names) >= 2:
        first, last = names[0], names[-1]
        rms_first = norms[first] / math.sqrt(sizes[first])
        rms_last = norms[last] / math.sqrt(sizes[last])
        if rms_last > 0 and rms_first / rms_last < 1 / GRADIENT_RATIO:
            out.append(("vanishing gradients", f"vanishing gradients {when}: gradient RMS of {first} is {rms_first:.3g}, "
                       f"{rms_first / rms_last:.2g}x that of {last}"))
        elif rms_last > 0 and rms_first / rms_last > GRADIENT_RATIO:
            out.append(("exploding gradients", f"exploding gradients {when}: gradient RMS of {first} is {rms_first:.3g}, "
                       f"{rms_first / rms_last:.3g}x that of {last}"))
    acts = entry.get("activations") or {}
    if len(acts) >= 2:
        (first, a), *_, (last, b) = acts.items()
        if a["std"] > 0 and b["std"] / a["std"] < 1 / GRADIENT_RATIO:
            out.append(("collapsing activations", f"collapsing activations {when}: std of {last} is {b['std']:.3g}, "
                                                  f"{b['std'] / a['std']:.2g}x that of {first}"))
        elif a["std"] > 0 and b["std"] / a["std"] > GRADIENT_RATIO:
            out.append(("exploding activations", f"exploding activations {when}: std of {last} is {b['std']:.3g}, "
                                                 f"{b['std'] / a['std']:.3g}x that of {first}"))
    for name, stats in acts.items():
        if stats.get("dead", 0) > DEAD:
            out.append((f"dead units:{name}",
                        f"dead units {when}: {stats['dead']:.0%} of the units of {name} are zero on every probe input"))
        if stats.get("saturated", 0) > SATURATED:
            out.append((f"saturated units:{name}",
                        f"saturated units {when}: {stats['saturated']:.0%} of the outputs of {name} are saturated"))
    for name, ratio in (entry.get("update_ratio") or {}).items() if updates else ():
        if ratio > LARGE_UPDATE:
            out.append((f"large updates:{name}",
                        f"large updates {when}: a step changes {name} by {ratio:.2g} of its norm (about 1e-3 is usual)"))
    return out


def initial_loss_warning(loss: float, num_classes: int) -> str | None:
    """A warning when the loss at init is far from ln C (softmax over C classes of near-zero logits)."""
    expected = math.log(num_classes)
    if INIT_LOSS_LOW * expected <= loss <= INIT_LOSS_HIGH * expected:
        return None
    head = (f"initial loss {loss:.3g} is far from ln C = {expected:.3g} for {num_classes} classes "
            f"({loss / expected:.2g}x; expected within {INIT_LOSS_LOW}-{INIT_LOSS_HIGH}x)")
    if loss < expected:
        return (f"{head}: the untrained model already predicts the labels (do the inputs carry them?), or the "
                "loss is not a mean over the batch")
    sigma = math.sqrt(2 * (loss - expected))
    return (f"{head}: the logits at init are large (std about {sigma:.2g}); a smaller output layer brings the loss "
            "near ln C (init: xavier_normal or lsuv, or a smaller std), and so does normalizing the inputs; "
            "dropout's 1/(1-p) scaling in training mode raises it too")



GRAD_NORM_EVERY = 16  # steps between gradient-norm samples (a norm over all parameters)


class Diagnostics(Callback):
    """The history's ``grad_norm`` (the global gradient norm, sampled every GRAD_NORM_EVERY steps
    before clipping) and, with ``probe`` (a batch of training samples), the per-layer profiles of
    ``record.diagnostics``: ``layers`` (at init and each epoch's end), ``flags`` and ``warnings``."""

    def __init__(self, model: nn.Module, params: list[torch.Tensor], device: torch.device,
                 probe: tuple[torch.Tensor, torch.Tensor] | None, num_classes: int, judge_updates: bool) -> None:
        self.params, self.device, self.num_classes = params, device, num_classes
        self.norms: list[torch.Tensor] = []
        self.sample = False
        self.probe = Probe(model, *probe) if probe is not None else None  # the module itself: no DDP or compiled wrapper
        self.steps = StepStats(model) if probe is not None else None
        self.sizes = {n: p.numel() for n, p in self.probe.weights} if self.probe else {}
        self.judge_updates = judge_updates

    def on_start(self, run: Run) -> None:
        d = run.record.diagnostics
        if self.probe is None or "layers" in d:  # none asked for, or the profiles so far came back with a checkpoint
            return
        init = self.probe.at_init()
        d["layers"] = {"init": init, "epochs": []}
        d["init_loss"] = init["loss"]
        warning = initial_loss_warning(init["loss"], self.num_classes)
        if warning:
            d.setdefault("warnings", []).append(warning)
        self._flag(d, init, "at init")

    def on_epoch_start(self, run: Run) -> None:
        if run.cursor.batches == 0:
            self.norms = []

    def before_step(self, run: Run) -> None:
        self.sample = run.cursor.step % GRAD_NORM_EVERY == 0 or not self.norms  # at least one sample per epoch
        if self.sample and self.steps is not None:
            self.steps.before_step()

    def after_backward(self, run: Run) -> None:
        if self.sample:
            per_param = grad_norms(self.params)  # before clipping: the gradient the loss gave
            self.norms.append(torch.linalg.vector_norm(per_param))
            if self.steps is not None:
                self.steps.gradients(per_param)

    def after_step(self, run: Run) -> None:
        if self.sample and self.steps is not None:
            self.steps.after_step()

    def on_epoch_trained(self, run: Run, row: dict[str, Any]) -> None:
        row["grad_norm"] = torch.stack(self.norms).mean().item() if self.norms else None

    def on_epoch_end(self, run: Run, row: dict[str, Any]) -> Stop | None:
        if self.probe is not None:
            epoch = row["epoch"]
            entry = {"epoch": epoch, "activations": self.probe.activations(), **self.steps.epoch()}
            run.record.diagnostics["layers"]["epochs"].append(entry)
            self._flag(run.record.diagnostics, entry, f"in epoch {epoch}")
        return None

    def _flag(self, d: dict[str, Any], entry: dict[str, Any], when: str) -> None:
        seen = set(d.setdefault("flag_kinds", []))
        for kind, message in flags(entry, self.sizes, when, self.judge_updates):
            if kind not in seen:  # the first time each layer raises each flag
                seen.add(kind)
                d["flag_kinds"].append(kind)
                d.setdefault("flags", []).append(message)

    def state_dict(self) -> dict[str, Any]:
        return {"norms": [v.item() for v in self.norms], "layers": self.steps.state() if self.steps else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.norms = [torch.tensor(v, device=self.device) for v in state["norms"]]
        if self.steps is not None:
            self.steps.restore(state["layers"], self.device)
