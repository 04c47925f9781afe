"""Parameter-group rules (the trial setting ``param_groups``), checked when the suite loads.

An ordered list of rules; each parameter falls under the first rule that matches it. A rule matches
on what a parameter is (its ``kind``, a glob on its qualified name, its number of dimensions) and
sets its weight decay, a multiplier of its learning rate, and/or another optimizer for it. An
optimizer may declare rules of its own (``OptimizerCaps.rules``: Muon takes the hidden matrices and
gives the rest to AdamW); they decide, after a suite's rules, which optimizer steps a parameter whose
suite rule names none. ``harness.engine.groups`` applies the rules to a built model.

A suite without ``param_groups`` (or with an empty list) has no such key in its resolved config,
so its trial ids are the ids it had before the setting existed.
"""
from __future__ import annotations

import fnmatch
from typing import Any

from harness.errors import ConfigError
from harness.registries import OPTIMIZERS
from harness.registry import near_miss, resolve_params
from harness.settings import RULE_PARAMS

# What a parameter is, first match wins in this order (harness.engine.groups.classify).
KINDS = {
    "embedding": "the weight of an nn.Embedding",
    "head": "the weight and bias of the model's last nn.Linear (its output layer)",
    "norm": "the parameters of a normalization layer (BatchNorm, LayerNorm, GroupNorm)",
    "bias": "any other bias",
    "hidden": "any other weight of 2 or more dimensions: hidden matrices and conv kernels",
    "other": "anything else (a 1-D scale or gate outside a normalization layer)",
}
_MATCH = ("kind", "name", "ndim")


def rule(path: str = "rule", **given: Any) -> dict[str, Any]:
    """One rule with every key filled in: ``kind`` as a list (or None: any kind), the optimizer resolved."""
    resolved = resolve_params(RULE_PARAMS, given, path, "a parameter-group rule")
    kinds = resolved["kind"]
    if isinstance(kinds, str):
        kinds = [kinds]
    for i, kind in enumerate(kinds or []):
        if kind not in KINDS:
            raise ConfigError(f"{path}.kind" + (f"[{i}]" if isinstance(resolved["kind"], list) else ""),
                              f"unknown parameter kind {kind!r}; {near_miss(str(kind), list(KINDS))}")
    resolved["kind"] = list(kinds) if kinds is not None else None
    if resolved["optimizer"] is not None:
        resolved["optimizer"] = OPTIMIZERS.resolve(resolved["optimizer"], f"{path}.optimizer")
    return resolved


def matches(r: dict[str, Any], name: str, kind: str, ndim: int) -> bool:
    return ((r["kind"] is None or kind in r["kind"]) and (r["name"] is None or fnmatch.fnmatchcase(name, r["name"]))
            and (r["ndim"] is None or ndim == r["ndim"]))


def own_rules(spec: dict[str, Any]) -> list[dict[str, Any]]:
    """The rules an optimizer declares for itself (empty for most)."""
    rules = OPTIMIZERS.get(spec["name"]).caps.rules
    return rules(spec) if rules is not None else []


def describe(r: dict[str, Any], steps_with: str | None = None) -> str:
    """A rule in a few words, for the record: ``kind=bias,norm name=fc.* -> weight_decay=0``; ``steps_with``
    names the optimizer of a rule that sets none (an optimizer's own rule: itself)."""
    match = " ".join(f"{k}={','.join(map(str, r[k])) if k == 'kind' else r[k]}" for k in _MATCH if r[k] is not None)
    sets = [f"weight_decay={r['weight_decay']:g}"] if r["weight_decay"] is not None else []
    sets += [f"lr_scale={r['lr_scale']:g}"] if r["lr_scale"] != 1.0 else []
    stepper = r["optimizer"]["name"] if r["optimizer"] is not None else steps_with
    sets += [f"optimizer={stepper}"] if stepper is not None else []
    return f"{match or 'any'} -> {' '.join(sets) or 'the defaults'}"


def _check_optimizer(spec: dict[str, Any], path: str, several: bool) -> None:
    entry = OPTIMIZERS.get(spec["name"])
    if "weight_decay" not in entry.params:
        raise ConfigError(path, f"optimizer {spec['name']!r} takes one parameter group (it has no weight_decay): "
                                "param_groups needs optimizers that take several")
    caps = entry.caps
    needs = [why for flag, why in ((caps.needs_closure, "a closure"), (caps.full_batch, "full batches"),
                                   (caps.create_graph, "Hessian-vector products"),
                                   (caps.train_eval, "train()/eval() weights")) if flag]
    if several and needs:
        raise ConfigError(path, f"optimizer {spec['name']!r} needs {needs[0]}, which a trial of several "
                                "optimizers (stepped one after another) cannot give it")


def resolve_rules(value: Any, trial_path: str, config: dict[str, Any]) -> list[dict[str, Any]]:
    """A suite's ``param_groups``, checked against the trial's resolved ``config``: every rule with its keys
    filled in (a misspelt key, an unknown kind or optimizer is an error at its key path)."""
    path = f"{trial_path}.param_groups"
    if value is None:
        return []
    if not isinstance(value, list):
        raise ConfigError(path, f"expected a list of rules like [{{kind: [bias, norm], weight_decay: 0}}], got {value!r}")
    rules = []
    for i, given in enumerate(value):
        if not isinstance(given, dict):
            raise ConfigError(f"{path}[{i}]", f"expected a rule mapping ({', '.join(RULE_PARAMS)}), got {given!r}")
        rules.append(rule(f"{path}[{i}]", **given))
    if not rules:
        return []
    trial = config["optimizer"]
    specs = [(trial, f"{trial_path}.optimizer")]
    specs += [(r["optimizer"], f"{path}[{i}].optimizer") for i, r in enumerate(rules) if r["optimizer"] is not None]
    specs += [(r["optimizer"], specs[0][1]) for r in own_rules(trial) if r["optimizer"] is not None]
    for spec, where in specs:
        _check_optimizer(spec, where, several=len(specs) > 1)
    return rules
