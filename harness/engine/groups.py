"""A trial's optimizer over its parameter groups: the ``decay`` setting's one or two groups, or the groups
that parameter-group rules (``harness.param_rules``: a suite's ``param_groups``, then the optimizer's own
rules, Muon's) make, with one optimizer per distinct optimizer spec, combined into one
(``harness.components.combined``) when there are several.

A rule's ``lr_scale`` multiplies its groups' ``lr`` once, here: the loop keeps each group's lr as built as
its base and sets ``base x schedule factor`` every step (``harness.engine.step.set_lr``), so the
multiplier holds under every schedule and warm-up.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from harness.components.combined import Combined
from harness.param_rules import describe, matches, own_rules
from harness.registries import OPTIMIZERS
from harness.spec import canonical_json

NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_groups(model: nn.Module, decay_biases: bool, decay_norm: bool) -> list[dict[str, Any]]:
    """Parameters in one group, or two where biases and/or normalization parameters skip weight decay."""
    decay, exempt, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for name, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied weight (a language model's embedding and head) is one parameter
                continue
            seen.add(id(p))
            skip = (is_norm and not decay_norm) or (name == "bias" and not decay_biases)
            (exempt if skip else decay).append(p)
    return [{"params": decay}] + ([{"params": exempt, "weight_decay": 0.0}] if exempt else [])


@dataclass(frozen=True)
class ParamInfo:
    name: str  # qualified, as model.named_parameters() gives it
    param: nn.Parameter
    kind: str  # one of harness.param_rules.KINDS
    exempt: bool  # what the decay setting alone exempts from weight decay (its bias / norm switches)


def classify(model: nn.Module, decay: dict[str, bool]) -> list[ParamInfo]:
    """Every parameter of ``model`` once, in ``model.parameters()`` order, with its kind."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    head = linears[-1] if linears else None
    seen: set[int] = set()
    out = []
    for prefix, module in model.named_modules():
        is_norm = isinstance(module, NORM_LAYERS)
        for leaf, p in module.named_parameters(recurse=False):
            if id(p) in seen:  # a tied weight is optimized once, under its first name
                continue
            seen.add(id(p))
            kind = ("embedding" if isinstance(module, nn.Embedding) else "head" if module is head
                    else "norm" if is_norm else "bias" if leaf == "bias" else "hidden" if p.ndim >= 2 else "other")
            exempt = (is_norm and not decay["norm"]) or (leaf == "bias" and not decay["biases"])
            out.append(ParamInfo(f"{prefix}.{leaf}" if prefix else leaf, p, kind, exempt))
    return out


def _stepped_by(spec: dict[str, Any], info: ParamInfo) -> tuple[dict[str, Any], str]:
    """The optimizer that steps ``info`` when ``spec`` is its optimizer, by ``spec``'s own rules, and why."""
    for i, r in enumerate(own_rules(spec)):
        if matches(r, info.name, info.kind, info.param.ndim):
            why = f"{spec['name']}'s rule {i}: {describe(r, spec['name'])}"
            if r["optimizer"] is None or r["optimizer"] == spec:
                return spec, why
            return _stepped_by(r["optimizer"], info)[0], why
    return spec, ""


def _has_decay(spec: dict[str, Any]) -> bool:
    return "weight_decay" in OPTIMIZERS.get(spec["name"]).params


def place(infos: list[ParamInfo], rules: list[dict[str, Any]], trial: dict[str, Any]) -> dict[tuple, list[ParamInfo]]:
    """Parameters by (rule label, optimizer spec, weight decay or None, lr scale), in order of first appearance."""
    groups: dict[tuple, list[ParamInfo]] = {}
    for info in infos:
        i, r = next(((i, r) for i, r in enumerate(rules) if matches(r, info.name, info.kind, info.param.ndim)),
                    (None, None))
        spec, why = _stepped_by(r["optimizer"] if r and r["optimizer"] else trial, info)
        label = "; ".join(x for x in (f"param_groups[{i}] {describe(r)}" if r else "", why) if x) or "no rule"
        decay = r["weight_decay"] if r and r["weight_decay"] is not None else None
        if decay is None and info.exempt and _has_decay(spec):
            decay, label = 0.0, f"{label} (decay setting: exempt)"
        key = (label, canonical_json(spec), decay, r["lr_scale"] if r else 1.0)
        groups.setdefault(key, []).append(info)
    return groups


def build_optimizer(model: nn.Module, config: dict[str, Any]) -> tuple[torch.optim.Optimizer, list[dict[str, Any]]]:
    """The trial's optimizer, and (for the record) the group each parameter fell in; no groups are
    recorded for a trial without rules, which keeps its one or two groups as they always were."""
    trial = config["optimizer"]
    rules = config.get("param_groups") or []
    if not rules and not own_rules(trial):
        if _has_decay(trial):
            params: Any = param_groups(model, config["decay"]["biases"], config["decay"]["norm"])
        else:
            params = model.parameters()  # L-BFGS takes a single group and has no decay
        return OPTIMIZERS.build(trial, params), []
    placed = place(classify(model, config["decay"]), rules, trial)
    by_optimizer: dict[str, list[tuple[tuple, list[ParamInfo]]]] = {canonical_json(trial): []}
    for key, infos in placed.items():
        by_optimizer.setdefault(key[1], []).append((key, infos))
    parts, names, record = [], [], []
    for spec_json, groups in by_optimizer.items():
        if not groups:
            continue
        spec = json.loads(spec_json)
        torch_groups = [{"params": [i.param for i in infos], **({} if decay is None else {"weight_decay": decay})}
                        for (_, _, decay, _), infos in groups]
        optimizer = OPTIMIZERS.build(spec, torch_groups)
        for group, ((label, _, decay, scale), infos) in zip(optimizer.param_groups, groups):
            group["lr"] *= scale
            record.append({"rule": label, "optimizer": spec["name"], "lr": group["lr"],
                           "weight_decay": group.get("weight_decay"), "count": len(infos),
                           "parameters": [i.name for i in infos]})
        parts.append(optimizer)
        names.append(spec["name"])
    return (parts[0] if len(parts) == 1 else Combined(parts, names)), record
