"""Every setting of a trial and of a suite besides its components, declared once as keyword-only
parameters (types, bounds and defaults read from the signatures): suite validation and ``harness
list`` read the same source."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from harness.errors import ConfigError
from harness.registries import DATASETS, INITS, LOSSES, MODELS, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
from harness.registry import Range, Registry, params_of

# Trial keys that name a component, with the default used when the suite leaves them out.
COMPONENTS: dict[str, tuple[Registry, str]] = {
    "dataset": (DATASETS, "digits"),
    "model": (MODELS, "mlp"),
    "init": (INITS, "kaiming_normal"),
    "norm": (NORMS, "none"),
    "optimizer": (OPTIMIZERS, "sgd"),
    "schedule": (SCHEDULES, "constant"),
    "loss": (LOSSES, "cross_entropy"),
}
LISTS: dict[str, Registry] = {"regularizers": REGULARIZERS}


def _budget(*, epochs: Annotated[int, Range(gt=0)] = 1, max_steps: Annotated[int, Range(gt=0)] | None = None,
            stop_after: Annotated[int, Range(gt=0)] | None = None):
    """How long a trial trains: whole epochs, optionally cut at max_steps optimizer steps; stop_after
    stops it after that many epochs of an `epochs`-long run (schedules still see `epochs`), keeping its
    checkpoint so that a longer trial of the same run resumes from it (successive halving's rungs)."""


def _divergence(*, loss_ratio: Annotated[float, Range(gt=1)] = 100.0):
    """A trial diverges on a NaN/Inf loss or a training loss above loss_ratio × its first loss."""


def _scalars(
    *, batch_size: Annotated[int, Range(gt=0)] = 128, eval_batch_size: Annotated[int, Range(gt=0)] = 1000,
    trackers: list[Literal["tensorboard", "wandb", "mlflow"]] = (),
    precision: Literal["fp32", "bf16", "fp16"] = "fp32", compile: bool = False, channels_last: bool = False,
    save_weights: bool = False,
):
    """Plain values of a trial; trackers log each trial's config and curves live (Accelerate's tracker API);
    precision (mixed precision through Accelerate: bf16 autocast, or fp16 with a loss scaler), compile
    (torch.compile) and channels_last (the memory format of conv models and image batches) are speed switches;
    save_weights keeps the final weights in RESULTS/<suite>/weights/ (for harness landscape)."""


def _warmup(*, epochs: Annotated[float, Range(ge=0)] = 0.0):
    """Linear warm-up multiplying the schedule over the first `epochs` epochs (fractions allowed)."""


def _decay(*, biases: bool = True, norm: bool = True):
    """Which parameters the optimizer's weight_decay applies to (false: exempt biases / norm scales and shifts)."""


Positive = Annotated[float, Range(gt=0)] | None


def _clip(*, norm: Positive = None, value: Positive = None):
    """Gradient clipping before each step: by global L2 norm and/or by value (null: off)."""


def _ensemble(*, members: Annotated[int, Range(ge=1)] = 1):
    """Train `members` independently seeded models and report their averaged probabilities."""


def _loader(
    *, mode: Literal["auto", "device", "dataloader"] = "auto", workers: Annotated[int, Range(ge=0)] = 0,
    device_fraction: Annotated[float, Range(gt=0, le=1)] = 0.5,
):
    """Where batches come from: the data held on the device, or a DataLoader from host memory (auto: the
    device unless the data takes more than device_fraction of its free memory). Same batches either way."""


def _resources(*, processes: Annotated[int, Range(ge=1)] = 1, nodes: Annotated[int, Range(ge=1)] = 1):
    """Processes (per node) that train one trial data-parallel through accelerate launch, the batch size
    being the global batch; nodes > 1 spans SLURM nodes (harness submit, slurm/multinode.sbatch)."""


def _diagnostics(*, layers: bool = True, probe: Annotated[int, Range(gt=0)] = 256):
    """Per-layer activation, gradient and update statistics at init and each epoch's end, on a fixed
    probe batch of `probe` training samples (harness/engine/diagnostics.py); recorded, not acted on."""


def _param_groups(*, kind: str | list[str] | None = None, name: str | None = None,
                  ndim: Annotated[int, Range(ge=0)] | None = None, weight_decay: Annotated[float, Range(ge=0)] | None = None,
                  lr_scale: Annotated[float, Range(gt=0)] = 1.0, optimizer: str | dict | None = None):
    """Parameter-group rules, default none: an ordered list; each parameter falls under the first rule that
    matches it on all the rule gives: its kind (embedding, head (the last Linear layer), norm, bias, hidden
    (other weights of 2+ dims), other), a glob on its qualified name (fc.*), its ndim. A rule sets the weight
    decay of its parameters (null: the optimizer's and the decay setting's), a multiplier of their learning
    rate that every schedule scales from, and/or another optimizer for them; the trial's optimizer steps the
    others (Muon's own rule gives it the hidden matrices and AdamW the rest). harness/param_rules.py."""


# Each section's builder: its signature is what validation checks, its docstring what `harness list settings` says.
SECTION_BUILDERS = {"budget": _budget, "divergence": _divergence, "warmup": _warmup, "decay": _decay, "clip": _clip,
                    "ensemble": _ensemble, "loader": _loader, "resources": _resources, "diagnostics": _diagnostics}
SECTIONS = {key: params_of(builder) for key, builder in SECTION_BUILDERS.items()}
SCALARS = params_of(_scalars)
RULE_PARAMS = params_of(_param_groups)  # each rule of the list `param_groups` (harness.param_rules)
TRIAL_KEYS = [*COMPONENTS, *LISTS, *SECTIONS, *SCALARS, "param_groups"]


def _report(*, compare: str | list[str] | None = None, metric: str = "test_acc",
            baseline: str | dict[str, Any] | None = None):
    """What the report compares: axes (default: every axis that varies), the headline metric, and
    a baseline row every other row is tested against: AXIS=VALUE or {axis: value}, the value a name or the
    parameters that single out one row ({optimizer: {name: sgd, lr: 0.1}}), checked when the suite loads."""


def _slurm(
    *, partition: str | None = None, account: str | None = None, time: str | None = None,
    gpus_per_task: Annotated[int, Range(ge=0)] = 0, cpus_per_task: Annotated[int, Range(ge=1)] = 1,
    mem: str | None = None, constraint: str | None = None, max_parallel: Annotated[int, Range(ge=1)] | None = None,
    chunk: Annotated[int, Range(ge=1)] | Literal["auto"] = "auto", signal_seconds: Annotated[int, Range(ge=1)] = 120,
    setup: list[str] = (), extra: list[str] = (), template: str | None = None,
):
    """How `harness submit` asks SLURM for each array task: partition, account, time limit, GPUs and CPUs
    per task, memory, node constraint; at most max_parallel tasks at once; chunk trials per task (auto: sized
    from the trials' expected time, a task's start-up cost, the time limit and the slots; harness/launch/chunking.py); the
    USR1 warning signal_seconds before the limit; setup shell lines (modules, venv); extra #SBATCH
    options; and an sbatch template of your own (default slurm/array.sbatch)."""


def _execution(*, fuse: str | int | bool = "off",  # YAML reads a bare `off` as false
               crashes: Annotated[int, Range(ge=1)] = 2, threads: Annotated[int, Range(ge=1)] | Literal["auto"] = 1):
    """How the trials run: fuse packs compatible trials (same data, model, batch size, budget; they may differ
    in seed, hyperparameters, schedule, init and regularizer strengths) into stacked models of up to K trials
    trained as one (off, auto, or K; harness/fused/). `--fuse` on the command line overrides it. A trial whose
    process dies in it (os._exit, a segfault, the OOM killer) `crashes` times is recorded failed, so that the
    sweep gets past it. threads: torch's intra-op threads per trial (`--threads` overrides it); a fixed count
    makes a trial's numbers the same whatever --workers is (auto: the worker's share of the cores, or SLURM's
    cpus_per_task, which is faster for big CPU models but ties the numbers to the worker count)."""


# What SLURM accepts for each option the harness writes on an `#SBATCH` line (sbatch(1)): nothing else
# reaches the script, so a value cannot end its line and start a command or another directive.
_SLURM_VALUES = {
    "partition": (r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*", "partition names, comma-separated"),
    "account": (r"[A-Za-z0-9_.-]+", "an account name"),
    "time": (r"(\d+-)?\d+(:\d+){0,2}|UNLIMITED|INFINITE", "minutes, MM:SS, HH:MM:SS or D-HH[:MM[:SS]]"),
    "mem": (r"\d+[KMGT]?", "a size such as 32G or 4000M"),
    "constraint": (r"[A-Za-z0-9_.&|!*,:()\[\]-]+", "node features joined by & | , [ ] ( ) *"),
}
# one option: a flag, with a value after = or a space that is one word or one double-quoted string (sbatch
# reads several options from one #SBATCH line, so `--qos=normal --uid=0` would be two)
_WORD, _QUOTED = r"[^\s\"'\\\x00-\x1f\x7f]+", r'"[^"\\\x00-\x1f\x7f]*"'
_SLURM_EXTRA = re.compile(rf"(--?[A-Za-z][A-Za-z0-9-]*)(=(?:{_WORD}|{_QUOTED})|\s+(?:(?!-){_WORD}|{_QUOTED}))?")
# what the harness sets itself on an #SBATCH line (its log folder, array, signal, ...), or has a key for
_SLURM_OWN = {"--job-name": "the suite's name", "-J": "the suite's name", "--array": "the pending trials",
              "-a": "the pending trials", "--output": "the results folder's slurm/logs", "-o": "the results folder's slurm/logs",
              "--open-mode": "the array template", "--requeue": "the array template", "--signal": "slurm.signal_seconds",
              "--ntasks": "the array template", "-n": "the array template", "--nodes": "resources.nodes",
              "-N": "resources.nodes", "--cpus-per-task": "slurm.cpus_per_task", "-c": "slurm.cpus_per_task",
              "--partition": "slurm.partition", "-p": "slurm.partition", "--account": "slurm.account",
              "-A": "slurm.account", "--time": "slurm.time", "-t": "slurm.time", "--mem": "slurm.mem",
              "--constraint": "slurm.constraint", "-C": "slurm.constraint", "--gpus-per-task": "slurm.gpus_per_task",
              "--dependency": "the next rung's job", "-d": "the next rung's job"}


def check_slurm(slurm: dict[str, Any]) -> None:
    """Each `slurm:` value as SLURM's own syntax allows it (``setup`` lines alone are shell, by design)."""
    for key, (pattern, what) in _SLURM_VALUES.items():
        value = slurm.get(key)
        if value is not None and not re.fullmatch(pattern, value):
            raise ConfigError(f"slurm.{key}", f"expected {what}, got {value!r}")
    for i, line in enumerate(slurm.get("extra") or []):
        option = _SLURM_EXTRA.fullmatch(line)
        if not option:
            raise ConfigError(f"slurm.extra[{i}]", "expected one sbatch option a entry (--qos=normal; a value with "
                                                  f"spaces in double quotes), got {line[:200]!r}")
        if option.group(1) in _SLURM_OWN:
            raise ConfigError(f"slurm.extra[{i}]", f"{option.group(1)} is set by the harness (from "
                                                  f"{_SLURM_OWN[option.group(1)]}); it cannot be given again here")
    for i, line in enumerate(slurm.get("setup") or []):
        if "\n" in line or "\r" in line:
            raise ConfigError(f"slurm.setup[{i}]", "one shell line per entry (give several entries, not a newline)")


# Suite sections with keyword parameters, by the same rule (the others are documented in harness.suite.SUITE_KEYS)
SUITE_SECTION_BUILDERS = {"report": _report, "slurm": _slurm, "execution": _execution}
report_params = params_of(_report)
execution_params = params_of(_execution)
slurm_params = params_of(_slurm)
