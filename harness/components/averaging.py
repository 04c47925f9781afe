"""What the weight-averaging techniques share (``ema``, ``swa``, ``lookahead``): evaluation on
other weights than the trained ones, and BatchNorm statistics that belong to those weights.

Running statistics accumulated while training belong to the trained weights; for an average of
weights they are recomputed from training data, each sample weighing the same (Izmailov et al.
2018, SWA, section 3.2: "one additional pass over the data"). Only the BatchNorm layers run in
train mode for it (dropout stays off), and the global random states are left as they were.
"""
from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterable, Iterator

if TYPE_CHECKING:
    import torch
    from torch import nn

    from harness.technique import Run


def _batchnorms(model: nn.Module) -> list[nn.Module]:
    from torch.nn.modules.batchnorm import _BatchNorm
    return [m for m in model.modules() if isinstance(m, _BatchNorm)]


def recompute_batchnorm(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    """Running mean and variance of every BatchNorm layer averaged over ``batches``, each sample
    weighing the same (a short last batch does not count as much as a full one)."""
    import torch
    with torch.inference_mode():
        layers = _batchnorms(model)
        if not layers:
            return
        momenta = [m.momentum for m in layers]
        model.eval()
        for m in layers:
            m.reset_running_stats()
            m.train()
        seen = 0
        for x, _ in batches:
            for m in layers:
                m.momentum = len(x) / (seen + len(x))  # running = (seen·running + b·batch) / (seen + b)
            model(x)
            seen += len(x)
        for m, momentum in zip(layers, momenta):
            m.momentum = momentum
        model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    return bool(_batchnorms(model))


def training_batches(run: "Run", samples: int | None, batch_size: int = 1000) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    """The first ``samples`` training samples (all when None) in their stored order, unaugmented."""
    from harness.data import make_loader
    data = run.trial.data
    limit = len(data.train[1]) if samples is None else min(samples, len(data.train[1]))
    return make_loader(data, "train", batch_size, limit=limit, mode=run.trial.pipeline, device=run.device)


def bn_batches(run: "Run", samples: int | None) -> Iterable[tuple[torch.Tensor, torch.Tensor]] | None:
    """What ``evaluated_on`` recomputes BatchNorm statistics from: None for a model without
    BatchNorm. Built once per trial (a small split is normalized once, when its loader is made)."""
    return training_batches(run, samples) if has_batchnorm(run.trial.model) else None


@contextlib.contextmanager
def evaluated_on(run: "Run", weights: list[torch.Tensor],
                 batches: Iterable[tuple[torch.Tensor, torch.Tensor]] | None) -> Iterator[None]:
    """The trial's model with ``weights`` (one per parameter, in order) in place of its own, and
    BatchNorm statistics recomputed for them from ``batches`` (``bn_batches``); everything as it
    was afterwards. Random states are untouched: the statistics pass runs without dropout."""
    import torch
    model = run.trial.model
    params = list(model.parameters())
    buffers = [b.detach().clone() for b in model.buffers()]
    with torch.no_grad():
        kept = [p.detach().clone() for p in params]
        torch._foreach_copy_([p.data for p in params], weights)
    try:
        if batches is not None:
            recompute_batchnorm(model, batches)
        yield
    finally:
        with torch.no_grad():
            torch._foreach_copy_([p.data for p in params], kept)
            for b, saved in zip(model.buffers(), buffers):
                b.copy_(saved)


AVERAGING = ("ema", "swa", "lookahead")  # the techniques that supply evaluation weights


def alone(name: str):
    """A ``compatible`` check: one technique at a time decides which weights are evaluated."""

    def check(config: dict) -> str | None:
        others = [r["name"] for r in config["regularizers"] if r["name"] in AVERAGING and r["name"] != name]
        if others:
            return f"{name} and {others[0]} would each evaluate on weights of their own; use one"
        return None

    return check
