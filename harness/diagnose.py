"""Sanity checks on one configuration before a sweep: "babysitting the learning process"
(Karpathy, CS231n notes, "Neural Networks Part 3"; Glorot & Bengio 2010 for the profiles by depth).

1. **Initial loss** on a probe batch of training samples, against ln C for C classes
   (``diagnostics.initial_loss_warning``).
2. **Profile at init**: each activation layer's mean, std and dead (ReLU) or saturated (tanh,
   sigmoid) fraction, each weight's gradient norm (``diagnostics.Probe``), and the flags they raise
   (``diagnostics.flags``).
3. **Overfit a small sample**: the trial's model and optimizer, at the optimizer's own learning
   rate held constant, train on the first N training samples as one batch, again and again, until
   they are all classified right (accuracy in eval mode, as the engine measures train accuracy) or
   K steps have passed. A model that cannot memorize 20-30 samples has a bug, a dead init or a
   learning rate that does not move it.
4. **Profile after**: the activations at the end of that run, and each weight's mean gradient
   norm and update/weight ratio over it (``diagnostics.StepStats``), with their flags; not
   *large updates* for L-BFGS, whose one step is a whole line search (the 1e-3 rule is for SGD-like steps).

The overfit run is the trial's training with everything that works *against* memorization
taken out: the schedule (and warmup) is off, and the regularizers that transform batches (cutout,
mixup, CutMix, augment) or add a penalty (l1, l2, elastic net) are not applied. What is part of
the model or the optimizer stays: dropout, DropConnect and stochastic depth (they act in training
only, and the accuracy is taken in eval mode), BatchNorm, weight decay, momentum. The loss is the
trial's own (with any label smoothing); the curve shows the plain cross-entropy.
"""
from __future__ import annotations

import io
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from harness.data import make_loader
from harness.engine import diagnostics as diag
from harness.engine.build import Trial, build, seed_everything
from harness.engine.step import Step
from harness.errors import UsageError
from harness.spec import TrialSpec, json_safe
from harness.store.records import READ_ERRORS, read_record

@dataclass
class Overfit:
    samples: int
    max_steps: int
    lr: float  # held constant
    reached: bool  # every sample classified right
    steps: int  # steps taken: where it reached 100%, or where it stopped
    final_loss: float  # plain cross-entropy on the samples, eval mode
    final_acc: float
    losses: list[float]  # index 0: before any step, then after each step
    accs: list[float]
    disabled: list[str]  # regularizers not applied
    stopped: str | None = None  # why it stopped before max_steps without reaching 100% (a NaN loss)

    def summary(self) -> str:
        head = f"overfits {self.samples} samples to 100% train accuracy in {self.max_steps} steps"
        if self.reached:
            return f"{head}: yes, at step {self.steps} (loss {self.final_loss:.3g})"
        return (f"{head}: no, {self.final_acc:.0%} after {self.steps} steps (loss {self.final_loss:.3g})"
                + (f"; {self.stopped}" if self.stopped else ""))


@dataclass
class Diagnosis:
    label: str
    trial_id: str
    optimizer: str
    num_classes: int
    probe_size: int
    init: dict[str, Any]  # Probe.at_init(): loss, activations, grad_norm
    after: dict[str, Any]  # activations at the end of the overfit run; grad_norm, update_ratio over it
    overfit: Overfit
    layer_types: dict[str, str]  # activation layer → its module's class name
    sizes: dict[str, int]  # weight → element count
    warnings: list[str] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)

    @property
    def ln_classes(self) -> float:
        return math.log(self.num_classes)

    @property
    def problems(self) -> list[str]:
        return self.warnings + self.flags + ([] if self.overfit.reached else [self.overfit.summary()])

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return json_safe({**asdict(self), "ln_classes": self.ln_classes, "passed": self.passed,
                        "problems": self.problems})


def diagnose(config: dict[str, Any], seed: int, *, samples: int = 32, max_steps: int = 200,
             label: str = "", trial_id: str = "", device: torch.device | None = None) -> Diagnosis:
    """Run the checks on a resolved trial config (see the module docstring)."""
    if samples < 2:
        raise UsageError(f"diagnose: --samples {samples}: need at least 2 (BatchNorm needs two samples)")
    if max_steps < 1:
        raise UsageError(f"diagnose: --steps {max_steps}: need at least 1")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    t = build(config, seed, device)
    seed_everything(seed)
    n_train = len(t.data.train[1])
    if samples > n_train:
        raise UsageError(f"diagnose: --samples {samples}: the training split has only {n_train}")
    n_probe = config["diagnostics"]["probe"]  # the probe batch of the trial's own records
    size = max(n_probe, samples)
    x, y = next(iter(make_loader(t.data, "train", size, limit=size, mode=t.pipeline, device=device)))
    probe = diag.Probe(t.model, x[:n_probe], y[:n_probe])
    sizes = {n: p.numel() for n, p in probe.weights}
    init = probe.at_init()
    warning = diag.initial_loss_warning(init["loss"], t.data.num_classes)
    flags = diag.flags(init, sizes, "at init")

    disabled = _disabled(config, t)
    stats = diag.StepStats(t.model)
    overfit = _overfit(t, x[:samples], y[:samples], max_steps, stats, disabled)
    after = {"activations": probe.activations(), **stats.epoch()}
    seen = {kind for kind, _ in flags}
    flags += [(k, m) for k, m in diag.flags(after, sizes, "in the overfit run", updates=not t.caps.needs_closure)
              if k not in seen]

    return Diagnosis(
        label, trial_id, config["optimizer"]["name"], t.data.num_classes, len(probe.y), init, after, overfit,
        {n: type(m).__name__ for n, m in probe.layers}, sizes, [warning] if warning else [], [m for _, m in flags])


def _disabled(config: dict[str, Any], t: Trial) -> list[str]:
    """The trial's regularizers that transform batches or add a penalty: the ones left out."""
    return [r["name"] for r, technique in zip(config["regularizers"], t.techniques) if technique.changes_batches()]


def _overfit(t: Trial, x: torch.Tensor, y: torch.Tensor, max_steps: int, stats: diag.StepStats,
             disabled: list[str]) -> Overfit:
    model, optimizer = t.model, t.optimizer
    lr = optimizer.param_groups[0]["lr"]  # the configured lr: build never applies the schedule

    def measure() -> tuple[float, float]:
        model.eval()
        with torch.no_grad():
            out = model(x).float()
            loss, acc = F.cross_entropy(out, y).item(), (out.argmax(1) == y).float().mean().item()
        model.train()
        return loss, acc

    calls = 0

    def gradients() -> None:
        nonlocal calls
        if calls == 0:  # L-BFGS calls it again within a step: the step's gradient is the first
            stats.gradients()
        calls += 1

    # the plain loss: the penalties are among the techniques left out
    step_on = Step(model, optimizer, t.caps, lambda m, out, target: t.loss_fn(out, target), after_backward=[gradients])

    loss, acc = measure()
    losses, accs = [loss], [acc]
    stopped, step = None, 0
    model.train()
    while step < max_steps and acc < 1.0:
        calls = 0
        stats.before_step()
        step_on(x, y)
        stats.after_step()
        step += 1
        loss, acc = measure()
        losses.append(loss)
        accs.append(acc)
        if not math.isfinite(loss):
            stopped = f"the loss is {loss} at step {step}"
            break
    return Overfit(len(y), max_steps, lr, acc >= 1.0, step, loss, acc, losses, accs, disabled, stopped)


def verdict(d: Diagnosis) -> str:
    """A short plain-text report: the checks, a table per activation layer and per weight, the problems."""
    o = d.overfit
    warned = "ok" if not d.warnings else "FAR FROM IT"
    ratios = list((d.after.get("update_ratio") or {}).values())
    lines = [
        f"diagnose {d.label}" + (f" [{d.trial_id}]" if d.trial_id else ""),
        f"initial loss  {d.init['loss']:.4g} on {d.probe_size} training samples; ln C = {d.ln_classes:.4g} "
        f"for {d.num_classes} classes: {warned}",
        f"overfit test  {o.summary()}",
        f"              {d.optimizer} at lr {o.lr:.3g}, constant"
        + (f"; not applied: {', '.join(o.disabled)}" if o.disabled else ""),
    ]
    if ratios:
        lines.append(f"updates       update/weight ratio per step in the run: {min(ratios):.2g} to {max(ratios):.2g} "
                     "(about 1e-3 is usual)")
    lines.append("")
    rows = [("activation", "mean", "std", "dead/sat", "std after", "dead/sat after")]
    for name, a in d.init["activations"].items():
        b = d.after["activations"].get(name, {})
        rows.append((f"{name} ({d.layer_types.get(name, '?')})", _g(a["mean"]), _g(a["std"]), _frac(a),
                     _g(b.get("std")), _frac(b)))
    lines += _table(rows) + [""]
    rows = [("weight", "grad norm at init", "grad norm in run", "update/weight")]
    for name, g in d.init["grad_norm"].items():
        rows.append((name, _g(g), _g((d.after.get("grad_norm") or {}).get(name)),
                     _g((d.after.get("update_ratio") or {}).get(name))))
    lines += _table(rows) + [""]
    problems = d.problems
    lines += [f"- {p}" for p in problems]
    lines.append(f"{len(problems)} problem{'s' * (len(problems) != 1)} found" if problems else "no problems found")
    return "\n".join(lines)


def _g(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def _frac(stats: dict[str, float]) -> str:
    v = stats.get("dead", stats.get("saturated"))
    return "-" if v is None else f"{v:.0%}"


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))).rstrip()
            for r in rows]


def plot(d: Diagnosis, path: Path, title: str) -> Path:
    """(a) the overfit curve, (b) activation std by layer at init and after, (c) gradient norm by weight."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from harness.store import atomic_write

    o = d.overfit
    fig, (ax_a, ax_b, ax_c) = plt.subplots(1, 3, figsize=(15, 4.2))
    steps = range(len(o.losses))
    ax_a.plot(steps, o.losses, color="C0", label="loss")
    ax_a.set(xlabel="step", ylabel="cross-entropy on the samples",
             title=f"(a) overfit {o.samples} samples: {'yes' if o.reached else 'no'}")
    if all(v > 0 for v in o.losses if math.isfinite(v)):
        ax_a.set_yscale("log")
    acc_ax = ax_a.twinx()
    acc_ax.plot(steps, o.accs, color="C1", label="accuracy")
    acc_ax.set(ylabel="train accuracy", ylim=(0, 1.05))
    ax_a.legend(handles=ax_a.get_lines() + acc_ax.get_lines(), fontsize=8, loc="center right")

    layers = list(d.init["activations"])
    _by_layer(ax_b, layers, {"at init": [d.init["activations"][n]["std"] for n in layers],
                         "after": [d.after["activations"].get(n, {}).get("std", math.nan) for n in layers]}, spread=10)
    ax_b.set(ylabel="activation std", title="(b) activation std by layer")
    names = list(d.init["grad_norm"])
    _by_layer(ax_c, names, {"at init": [d.init["grad_norm"][n] for n in names],
                        "mean in run": [(d.after.get("grad_norm") or {}).get(n, math.nan) for n in names]})
    ax_c.set(ylabel="gradient norm", title="(c) gradient norm by weight")
    fig.suptitle(title)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100)
    plt.close(fig)
    atomic_write(path, buffer.getvalue())
    return path


def _by_layer(ax: Any, names: list[str], series: dict[str, list[float]], spread: float = 1.0) -> None:
    """Markers per layer; on a log scale when every value is positive and max/min exceeds ``spread``."""
    for i, (label, values) in enumerate(series.items()):
        ax.plot(range(len(names)), values, marker="o", color=f"C{i}", label=label)
    ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=8)
    values = [v for vs in series.values() for v in vs if math.isfinite(v)]
    if values and min(values) > 0 and max(values) / min(values) > spread:
        ax.set_yscale("log")
    ax.legend(fontsize=8)


def resolve_target(target: str, overrides: list[str] | None = None, index: int = 0) -> tuple[TrialSpec, str]:
    """The trial a ``diagnose`` target names: trial ``index`` of a suite YAML, or the config and
    seed of a trial record (``RESULTS/<suite>/trials/<id>.json``; overrides then take
    ``base.``-prefixed keys, as in a suite). Returns the spec and a label."""
    from harness.suite import apply_overrides, load_suite, resolve_trial

    path = Path(target)
    if not path.exists():
        raise UsageError(f"{target}: no such file (expected a suite .yaml or a trial record .json)")
    if path.is_dir():
        raise UsageError(f"{target}: a folder; give a suite .yaml or one record, e.g. {path / 'trials'}/<id>.json")
    if path.suffix in (".yaml", ".yml"):
        suite = load_suite(path, overrides)
        if not 0 <= index < len(suite.trials):
            raise UsageError(f"--index {index}: the suite has trials 0..{len(suite.trials) - 1} "
                             "(harness plan lists them)")
        spec = suite.trials[index]
        return spec, f"{suite.name}: {spec.label()}"
    if path.suffix != ".json":
        raise UsageError(f"{target}: expected a suite (.yaml) or a trial record (.json)")
    try:
        record = read_record(path)
    except READ_ERRORS as e:
        raise UsageError(f"{target}: not a trial record ({e})") from None
    config = record.config
    if overrides:
        bad = [o for o in overrides if not o.startswith("base.")]
        if bad:
            raise UsageError(f"override {bad[0]!r}: on a record, override its config with base.KEY=VALUE")
        config = resolve_trial(apply_overrides({"base": config}, overrides)["base"], "base")
    spec = TrialSpec.make(record.suite, config, record.seed, record.axes)
    return spec, f"{record.suite}: {spec.label()}"
