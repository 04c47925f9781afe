"""Every slice's per-layer activation profile from one forward of the stacked model.

A trial alone profiles its activations at each epoch's end (``harness.engine.diagnostics.Probe``: a
forward in train mode on a fixed batch of training data, hooks on its activation layers, its
BatchNorm statistics and random streams put back after). A pack of K would run K such forwards, one
per slice's model; ``profile_slices`` runs one forward of the stacked model on the same batch with
each slice's dropout masks drawn from its own stream (the state its run alone would draw them from),
puts the statistics and the streams back, and hands each slice's probe its profile (``Probe.given``).
Each profile equals the slice's own to the 4 digits a profile keeps (``tests/test_fused_pack.py``).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from harness.engine.diagnostics import Probe, probing, profiles
from harness.fused.models import slice_rows


@torch.no_grad()
def profile_slices(stacked: nn.Module, probes: dict[int, Probe | None], streams: list[torch.Generator | None]
                   ) -> None:
    """Give each probe of ``probes`` (slice index → that slice's probe) its slice's profile. ``streams``:
    every slice's dropout generator, in slice order. Nothing is given (each slice then probes alone)
    where a slice has no probe or the probes do not share one batch."""
    if not probes or any(p is None for p in probes.values()):
        return
    first = next(iter(probes.values()))
    x = first.x
    if any(p.x is not x and not torch.equal(p.x, x) for p in probes.values()):
        return  # the slices share their data, so this does not happen; if it did, each would probe alone
    rows: dict[str, list[dict[str, float]]] = {}

    def profile(name: str, module: nn.Module, out: Tensor) -> None:
        rows[name] = profiles(module, slice_rows(stacked, name, out))

    layers = [(name, stacked.get_submodule(name)) for name, _ in first.layers]
    states = [g.get_state() if g is not None else None for g in streams]
    try:
        with probing(stacked, layers, profile):
            stacked(x.expand(len(streams), *x.shape))
    finally:
        for g, state in zip(streams, states):
            if g is not None:
                g.set_state(state)
    for k, probe in probes.items():
        probe.given = {name: rows[name][k] for name, _ in probe.layers if name in rows}
