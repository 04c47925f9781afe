"""Training loops written by hand as a technique's authors document them, to hold the harness's records
against (tests/test_third_party.py, tests/test_class_optimizers.py)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from harness.data import make_loader
from harness.engine.build import build

CPU = torch.device("cpu")


def schedule_free_by_hand(config: dict, seed: int, call_eval: bool) -> list[tuple[float, float]]:
    """Schedule-Free as its README says to use it: optimizer.train() where model.train() is
    called, optimizer.eval() where model.eval() is; the model, data and order the trial has."""
    t = build(config, seed, CPU)
    model, opt = t.model, t.optimizer
    order = torch.Generator().manual_seed(seed)
    train = make_loader(t.data, "train", config["batch_size"], generator=order, mode=t.pipeline, device=CPU)
    val = make_loader(t.data, "val", 1000, mode=t.pipeline, device=CPU)
    out = []
    for _ in range(config["budget"]["epochs"]):
        model.train()
        opt.train()
        for x, y in train:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        if call_eval:
            opt.eval()
        with torch.no_grad():
            xv, yv = next(iter(val))
            logits = model(xv)
            out.append((F.cross_entropy(logits, yv).item(), (logits.argmax(1) == yv).float().mean().item()))
    return out
