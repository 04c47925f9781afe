"""Which trials of a sweep train together as one fused pack, and why the others train alone.

A pack is K trials that differ only in what a stacked model and a fused optimizer can hold per slice
(``harness.fused.models``, ``harness.fused.optim``): the seed, the optimizer's hyperparameters, the
schedule and warm-up, the init scheme, the regularizers' strengths and rates (dropout p, L1/L2,
cutout/mixup/CutMix, augmentation), early stopping, weight averages, the loss (label smoothing),
clipping, the divergence ratio and the diagnostics. Everything else must be equal: dataset and
split, model and widths, norm, batch sizes, budget, precision, the optimizer's family and which
parameters it decays, and which layers the regularizers add (dropout's presence and kind).

``execution.fuse`` (or ``--fuse``): ``off`` (every trial alone), a number K (packs of at most K), or
``auto``: on a GPU, as many as the device's memory holds, found by trying (``harness.fused.pack``
halves a pack that runs out of memory, as HFTA sizes its arrays); on a CPU, the compatible trials
shared evenly among the workers, at most ``CPU_AUTO_MAX`` per pack, and MLPs only: on a CPU a grouped
convolution runs slower than separate ones (a number K fuses convolutional models all the same).
"""
from __future__ import annotations

import hashlib
import math
from typing import TYPE_CHECKING, Any, Union

from harness.errors import ConfigError
from harness.registries import OPTIMIZERS
from harness.spec import canonical_json

if TYPE_CHECKING:
    from harness.spec import TrialSpec

Fuse = Union[str, int]  # "off", "auto" or a pack size
FUSED_MODELS = ("mlp", "cnn_2c2d", "cnn_3c3d", "resnet", "resnet18", "wrn")
# the techniques a pack runs per slice; a technique not listed (a plugin's, SAM, Lookahead, DropConnect,
# stochastic depth) keeps its trial out of packs, and the plan says so
FUSED_TECHNIQUES = frozenset({"dropout", "l1", "l2", "elastic_net", "cutout", "mixup", "cutmix", "augment",
                              "early_stopping", "ema", "swa"})
CONV_MODELS = frozenset({"cnn_2c2d", "cnn_3c3d", "resnet", "resnet18", "wrn"})
LAYER_TECHNIQUES = frozenset({"dropout"})  # they add layers: a pack shares their presence and kind, not their rate
PER_SLICE = ("optimizer", "schedule", "warmup", "init", "regularizers", "loss", "divergence", "clip", "diagnostics")
CPU_AUTO_MAX = 64
SHOWN = 8  # trial ids named on a line of the plan's pack summary


def parse_fuse(value: Any, where: str = "execution.fuse") -> Fuse:
    """``off``, ``auto`` or a whole number >= 1 (a string from the command line is read as one; YAML reads
    a bare ``off`` as false)."""
    if value is False:
        return "off"
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():  # not "²"
        value = int(value)
    if value in ("off", "auto") or (isinstance(value, int) and not isinstance(value, bool) and value >= 1):
        return value
    raise ConfigError(where, f"expected off, auto or a pack size >= 1, got {value!r}")


def why_not(config: dict[str, Any]) -> str | None:
    """Why a trial of this resolved config cannot train in a pack; None when it can."""
    from harness.fused.optim import FAMILIES  # torch's import: only where a suite fuses

    optimizer = config["optimizer"]["name"]
    if config.get("param_groups"):
        return "its parameter-group rules (param_groups) give parameters their own decay, lr or optimizer"
    if OPTIMIZERS.get(optimizer).caps.rules is not None:
        return f"optimizer {optimizer!r} splits the parameters between optimizers by its own rule"
    if optimizer not in FAMILIES:
        return f"optimizer {optimizer!r} has no fused form (fused: {', '.join(sorted(FAMILIES))})"
    if config["ensemble"]["members"] > 1:
        return "an ensemble trains its members one after another"
    if config["resources"]["processes"] > 1 or config["resources"]["nodes"] > 1:
        return "a multi-process trial is data-parallel already"
    model = config["model"]["name"]
    if model not in FUSED_MODELS:
        return f"model {model!r} has no stacked form yet (stacked: {', '.join(FUSED_MODELS)})"
    if config["model"].get("dropout"):
        return f"dropout inside {model}'s blocks acts on convolutional feature maps, which a pack does not stack"
    for r in config["regularizers"]:
        if r["name"] not in FUSED_TECHNIQUES:
            return f"technique {r['name']!r} does not run per slice of a pack"
    if config["precision"] != "fp32":
        return f"precision {config['precision']} (packs train in fp32)"
    for key, why in (("compile", "torch.compile"), ("channels_last", "channels_last"), ("trackers", "live trackers"),
                     ("save_weights", "save_weights")):
        if config.get(key):
            return f"{why} is not supported in a pack"
    if config["budget"]["stop_after"] is not None:
        return "a rung of successive halving keeps its own checkpoint for its promotion"
    if config["loader"]["mode"] == "dataloader" or config["loader"]["workers"]:
        return "a pack reads its batches from data held on the device, not a DataLoader"
    return None


def pack_key(config: dict[str, Any]) -> str:
    """What the trials of one pack share: equal keys, one architecture and one data stream shape."""
    shared = {k: v for k, v in config.items() if k not in PER_SLICE}
    shared["optimizer"] = config["optimizer"]["name"]
    shared["layers"] = [{k: v for k, v in r.items() if k != "p"} for r in config["regularizers"]
                        if r["name"] in LAYER_TECHNIQUES]
    return canonical_json(shared)


def pack_id(specs: list["TrialSpec"]) -> str:
    """A pack's name: from its members' trial ids, so the same pack resumes from its checkpoint."""
    return "pack-" + hashlib.sha256(",".join(sorted(s.trial_id for s in specs)).encode()).hexdigest()[:12]


def pack_size(fuse: Fuse, group: int, workers: int, cuda: bool) -> int:
    """How many trials of a group of ``group`` compatible ones go in each pack."""
    if fuse == "off":
        return 1
    if isinstance(fuse, int):
        return fuse
    if cuda:  # as many as fit: the pack runner halves a pack that runs out of memory
        return group
    return min(CPU_AUTO_MAX, max(1, math.ceil(group / max(workers, 1))))


def plan_packs(specs: list["TrialSpec"], fuse: Fuse, workers: int = 1, cuda: bool = False
               ) -> tuple[list[list["TrialSpec"]], dict[str, str]]:
    """The sweep's units in plan order (a pack, or a trial alone), and why each lone trial is not fused."""
    if fuse == "off":
        return [[s] for s in specs], {}
    reasons: dict[str, str] = {}
    groups: dict[str, list["TrialSpec"]] = {}
    units: list[list["TrialSpec"]] = []
    for spec in specs:
        why = why_not(spec.config)
        if why is None and fuse == "auto" and not cuda and spec.config["model"]["name"] in CONV_MODELS:
            # measured here: a ResNet-8 pack of 4 on digits took 18.8 s, the 4 trials alone 13.6 s
            why = "on a CPU a grouped convolution runs slower than separate ones (auto fuses MLPs there; --fuse K forces it)"
        if why is not None:
            reasons[spec.trial_id] = why
            units.append([spec])
        else:
            groups.setdefault(pack_key(spec.config), []).append(spec)
    for members in groups.values():
        size = pack_size(fuse, len(members), workers, cuda)
        for start in range(0, len(members), size):
            chunk = members[start:start + size]
            if len(chunk) == 1:
                reasons[chunk[0].trial_id] = (
                    "no other trial of the sweep shares its architecture, data and budget" if len(members) == 1
                    else f"packs of 1 (--fuse {fuse})" if isinstance(fuse, int)
                    else f"its {len(members)} compatible trials are spread over {workers} workers, one a worker")
            units.append(chunk)
    return units, reasons


def describe(specs: list["TrialSpec"], fuse: Fuse, workers: int = 1, cuda: bool | None = None) -> list[str]:
    """What ``harness plan`` prints of the packs: each pack's trials, and why each lone trial is alone.
    ``cuda`` None: whether this machine has a GPU, asked of torch only when trials may pack."""
    if fuse == "off":
        return ["fuse: off (every trial trains alone; execution.fuse or --fuse auto|K packs compatible trials)"]
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    units, reasons = plan_packs(specs, fuse, workers, cuda)
    packs = [u for u in units if len(u) > 1]
    lines = [f"fuse: {fuse}: {sum(map(len, packs))} trials in {len(packs)} packs, {len(units) - len(packs)} alone"]
    lines += [f"  {pack_id(u)}  {len(u)} trials: {' '.join(t.trial_id for t in u)}" for u in packs]
    alone: dict[str, list[str]] = {}
    for trial_id, why in reasons.items():  # one line per reason, not per trial
        alone.setdefault(why, []).append(trial_id)
    for why, ids in alone.items():
        more = f" and {len(ids) - SHOWN} more" if len(ids) > SHOWN else ""
        lines.append(f"  {len(ids)} alone: {why}: {' '.join(ids[:SHOWN])}{more}")
    return lines
