"""The training loop: one TrialSpec in, one Record out.

``run_trial`` never raises for a problem of the trial itself: a NaN/Inf or exploding loss gives
status ``diverged`` with the step, any exception gives ``failed`` with the message, so a sweep
goes on. Train time (the optimization steps) and eval time (the per-epoch evaluations) are kept
apart, each measured after synchronizing the device.
"""
from __future__ import annotations

import datetime as dt
import math
import random
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from torch import nn

from harness.components import INITS, LOSSES, NORMS, OPTIMIZERS, REGULARIZERS, SCHEDULES
from harness.components.inits import InitContext
from harness.components.regularizers import Parts, RegContext
from harness.components.schedules import Schedule, ScheduleContext
from harness.data import DataSplits, Rng, Shard, load, make_loader, place
from harness.data.loader import Loader, count_batches
from harness.engine import checkpoint as ckpt
from harness.engine import diagnostics as diag
from harness.engine.environment import environment
from harness.models import MODELS, ModelContext
from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED, STOPPED, Record, TrialSpec, run_id_of
from harness.tracking import Trackers

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # the suite's names → Accelerate's
CHECK_EVERY = 16  # steps between divergence checks: one host sync per window, not per step
GRAD_NORM_EVERY = 16  # steps between gradient-norm samples (a norm over all parameters)


class Diverged(Exception):
    def __init__(self, step: int, reason: str) -> None:
        super().__init__(reason)
        self.step, self.reason = step, reason


class Preempted(Exception):
    """Asked to stop (a scheduler's signal): the trial's state is in its checkpoint."""


@dataclass(frozen=True)
class Checkpointing:
    """Where a trial keeps its checkpoint (saved after every epoch and when ``stop()`` turns true,
    asked after every step), and resumes from if one is there; where its final weights go, if kept."""

    path: Path
    stop: Callable[[], bool] = lambda: False
    weights: Path | None = None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_trial(spec: TrialSpec, accelerator: Accelerator | None = None, tracking_dir: Path | None = None,
              checkpointing: Checkpointing | None = None) -> Record:
    """Train and evaluate one trial; the returned record says how it ended. With trackers in the
    config and a ``tracking_dir``, each epoch's metrics are logged there as they come. With
    ``checkpointing``, the trial resumes from its checkpoint and, when asked to stop, saves one and
    returns an ``interrupted`` record."""
    record = Record(spec.trial_id, spec.suite, spec.seed, COMPLETED, spec.config, dict(spec.axes),
                    started_at=_now())
    trackers = None
    try:
        accelerator = accelerator or _accelerator(MIXED_PRECISION[spec.config["precision"]])
        if spec.config.get("trackers") and tracking_dir is not None:
            trackers = Trackers(spec.config["trackers"], Path(tracking_dir), spec.suite,
                                f"{spec.label()} [{spec.trial_id}]")
            trackers.start(spec.config)
        _train(spec, record, accelerator, trackers.log if trackers else None, checkpointing)
    except Preempted as e:
        record.status, record.reason = INTERRUPTED, str(e)
    except Diverged as e:
        record.status, record.reason, record.diverged_step = DIVERGED, e.reason, e.step
    except Exception as e:  # noqa: BLE001 - any failure of a trial is recorded, and the sweep goes on
        record.status, record.reason = FAILED, f"{type(e).__name__}: {e}"
        record.diagnostics["traceback"] = traceback.format_exc(limit=20)
    finally:
        if trackers is not None:
            trackers.finish()
    record.finished_at = _now()
    return record


def _accelerator(mixed_precision: str) -> Accelerator:
    """An Accelerator with this trial's precision. Accelerate keeps one process-wide state; a pool
    worker runs trials of several precisions one after another, so a different precision resets
    it (the distributed part of the state, set up once per process, is kept)."""
    if AcceleratorState._shared_state and AcceleratorState().mixed_precision != mixed_precision:
        AcceleratorState._reset_state()
    # cpu=True where there is no GPU: under `accelerate launch` that is what makes it a gloo
    # process group (MULTI_CPU) rather than a lone process
    return Accelerator(step_scheduler_with_optimizer=False, mixed_precision=mixed_precision,
                       cpu=not torch.cuda.is_available())


@dataclass
class Trial:
    """Everything built from a spec, ready to train."""

    model: nn.Module
    optimizer: torch.optim.Optimizer
    schedule: Callable[[int], float]  # lr factor of an optimizer step
    observe: Callable[[dict[str, Any]], None] | None  # the schedule's view of each epoch's metrics
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    transform: Callable[[torch.Tensor, torch.Tensor, Rng], tuple[torch.Tensor, torch.Tensor]]
    penalty: Callable[[nn.Module], torch.Tensor] | None
    data: DataSplits  # placed: on the device, or in host memory for the DataLoader path
    pipeline: str  # "device" or "dataloader"
    pipeline_reason: str | None  # why auto chose the DataLoader path
    total_steps: int
    batch_size: int  # the whole training split for full-batch optimizers
    needs_closure: bool  # the optimizer re-evaluates the loss within a step (L-BFGS)
    epoch_end: list[Callable[[nn.Module, dict[str, float]], dict[str, Any] | None]]  # may stop training
    states: list[dict[str, Any]]  # the components' state between epochs (schedule, early stopping)


_NORM_LAYERS = (nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm)


def param_groups(model: nn.Module, decay_biases: bool, decay_norm: bool) -> list[dict[str, Any]]:
    """Parameters in one group, or two where biases and/or normalization parameters skip weight decay."""
    decay, exempt = [], []
    for module in model.modules():
        is_norm = isinstance(module, _NORM_LAYERS)
        for name, p in module.named_parameters(recurse=False):
            skip = (is_norm and not decay_norm) or (name == "bias" and not decay_biases)
            (exempt if skip else decay).append(p)
    return [{"params": decay}] + ([{"params": exempt, "weight_decay": 0.0}] if exempt else [])


def _warmed(schedule: Schedule, warmup_steps: float) -> Callable[[int], float]:
    if warmup_steps <= 0:
        return schedule.factor
    return lambda step: min(1.0, (step + 1) / warmup_steps) * schedule.factor(step)


def build(config: dict[str, Any], seed: int, device: torch.device, shard: Shard = Shard()) -> Trial:
    """Data, model, init, optimizer, schedule and regularizers from a resolved config."""
    stored = load(config["dataset"])
    seed_everything(seed)  # after loading, so cached and fresh data give the same init
    reg_ctx = RegContext(stored.num_classes, stored.inputs("train", 2000))
    data = stored
    parts: list[Parts] = [REGULARIZERS.build(r, reg_ctx) for r in config["regularizers"]]
    norm = config["norm"]
    ctx = ModelContext(
        in_shape=data.in_shape, num_classes=data.num_classes,
        norm=lambda features, dims: NORMS.build(norm, features, dims),
        hidden=tuple(p.hidden for p in parts if p.hidden),
        drop_path=max([p.drop_path for p in parts if p.drop_path is not None], default=0.0),
    )
    model = MODELS.build(config["model"], ctx)
    for part in parts:
        if part.model is not None:
            part.model(model)  # before init, so the init sees the final layers
    sample = stored.inputs("train", config["batch_size"])  # on the CPU, like the model at init
    INITS.build(config["init"], model, InitContext(config["model"].get("activation"), sample))
    after_init = getattr(model, "after_init", None)
    if after_init is not None:
        after_init()  # e.g. zero-init of each residual block's last norm scale
    model.to(device)
    opt_entry = OPTIMIZERS.get(config["optimizer"]["name"])
    if "weight_decay" in opt_entry.params:
        params: Any = param_groups(model, config["decay"]["biases"], config["decay"]["norm"])
    else:
        params = model.parameters()  # L-BFGS takes a single group and has no decay
    optimizer = OPTIMIZERS.build(config["optimizer"], params)
    n_train = len(data.train[1])
    batch_size = n_train if opt_entry.meta.get("full_batch") else config["batch_size"]
    steps_per_epoch = count_batches(n_train, batch_size, shard.world)
    total = config["budget"]["epochs"] * steps_per_epoch
    if config["budget"]["max_steps"] is not None:
        total = min(total, config["budget"]["max_steps"])
    schedule = SCHEDULES.build(config["schedule"], ScheduleContext(total, steps_per_epoch))
    transforms = [p.batch for p in parts if p.batch]
    penalties = [p.penalty for p in parts if p.penalty]

    def transform(x: torch.Tensor, y: torch.Tensor, rng: Rng) -> tuple[torch.Tensor, torch.Tensor]:
        for t in transforms:
            x, y = t(x, y, rng)
        return x, y

    penalty = (lambda m: sum(p(m) for p in penalties)) if penalties else None
    return Trial(
        model, optimizer, _warmed(schedule, config["warmup"]["epochs"] * steps_per_epoch), schedule.observe,
        LOSSES.build(config["loss"]), transform, penalty, *place(data, device, config["loader"]["mode"],
                                                                config["loader"]["device_fraction"]), total, batch_size,
        bool(opt_entry.meta.get("needs_closure")), [p.epoch_end for p in parts if p.epoch_end],
        [s for s in (schedule.state, *(p.state for p in parts)) if s is not None],
    )


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def evaluate(model: nn.Module, loader: Loader) -> tuple[float, float]:
    """Mean cross-entropy (unsmoothed, so losses compare across configs) and accuracy."""
    loss, acc, _ = _evaluate(model, loader, keep_probs=False)
    return loss, acc


@torch.inference_mode()
def _evaluate(model: nn.Module, loader: Loader, keep_probs: bool) -> tuple[float, float, torch.Tensor | None]:
    """``evaluate``, plus the softmax probabilities of every sample (on the CPU) when asked."""
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    kept = []
    for xb, yb in loader:
        out = model(xb)
        loss_sum = loss_sum + F.cross_entropy(out.float(), yb, reduction="sum")  # stays on the device
        correct = correct + (out.argmax(1) == yb).sum()
        n += len(yb)
        if keep_probs:
            kept.append(out.float().softmax(1))
    n = max(n, 1)
    return float(loss_sum) / n, int(correct) / n, torch.cat(kept).cpu() if keep_probs else None


class _Guard:
    """Checks a window of step losses for NaN/Inf or explosion in one host sync."""

    def __init__(self, loss_ratio: float) -> None:
        self.loss_ratio = loss_ratio
        self.first: float | None = None

    def check(self, accelerator: Accelerator, losses: list[torch.Tensor], first_step: int) -> float:
        """Sum of the window's losses (averaged over the processes of a multi-process trial, so
        every process sees the same numbers and stops together); raises Diverged at the first bad step."""
        window = torch.stack(losses).float()
        if accelerator.num_processes > 1:
            window = accelerator.reduce(window, "mean")
        if self.first is None:
            self.first = window[0].item()
            if not math.isfinite(self.first):
                raise Diverged(first_step, f"loss is {self.first} at step {first_step}")
        limit = self.loss_ratio * max(self.first, 1e-8)
        bad = ~torch.isfinite(window) | (window > limit)
        if bad.any():
            i = int(bad.nonzero()[0])
            value = window[i].item()
            step = first_step + i
            if not math.isfinite(value):
                raise Diverged(step, f"loss is {value} at step {step}")
            raise Diverged(step, f"loss {value:.4g} at step {step} exceeds {self.loss_ratio:g}× the first loss {self.first:.4g}")
        return window.sum().item()


def _plain_optimizer_ok(accelerator: Accelerator) -> bool:
    """Whether Accelerate's optimizer wrapper and backward would only add work.

    They matter for a GradScaler (fp16), gradient accumulation, DeepSpeed and XLA. Otherwise they
    delegate, at a price: accelerate 1.15 spends ~0.2 ms per step on CPU (two package lookups and
    an ``inspect.signature`` per step, plus a loss division), ~10% of a small MLP's step.
    DDP needs neither: its gradient hooks live on the prepared model.
    """
    return (accelerator.scaler is None and accelerator.gradient_accumulation_steps == 1
            and accelerator.distributed_type in (DistributedType.NO, DistributedType.MULTI_CPU,
                                                 DistributedType.MULTI_GPU))


def _clipper(accelerator: Accelerator, model: nn.Module, clip: dict[str, Any]) -> Callable[[], None] | None:
    """Gradient clipping through Accelerate, which unscales fp16 gradients first."""
    if clip["norm"] is None and clip["value"] is None:
        return None
    params = [p for p in model.parameters() if p.requires_grad]

    def apply() -> None:
        if clip["norm"] is not None:
            accelerator.clip_grad_norm_(params, clip["norm"])
        if clip["value"] is not None:
            accelerator.clip_grad_value_(params, clip["value"])

    return apply


def _set_lr(optimizer: torch.optim.Optimizer, base_lrs: list[float], factor: float) -> None:
    for group, base in zip(optimizer.param_groups, base_lrs):
        group["lr"] = base * factor


def _train(spec: TrialSpec, record: Record, accelerator: Accelerator, on_epoch: OnEpoch | None,
           checkpointing: Checkpointing | None) -> None:
    members = spec.config["ensemble"]["members"]
    if members == 1:
        _fit(spec.config, spec.seed, record, accelerator, on_epoch=on_epoch, checkpointing=checkpointing)
        return
    # An ensemble's members are not checkpointed: a preempted ensemble trial starts over.
    from harness.engine.ensemble import train_ensemble

    train_ensemble(spec, record, members, lambda seed, member, probs: _fit(spec.config, seed, member, accelerator, probs))
    for row in record.history if on_epoch else []:  # an ensemble's metrics exist once every member has trained
        on_epoch(row, row["epoch"])


OnEpoch = Callable[[dict[str, Any], int], None]


def _fit(config: dict[str, Any], seed: int, record: Record, accelerator: Accelerator,
         probs: list[tuple[torch.Tensor, torch.Tensor]] | None = None, on_epoch: OnEpoch | None = None,
         checkpointing: Checkpointing | None = None) -> None:
    """Train one model into ``record``; with ``probs``, collect (val, test) probabilities per epoch."""
    device = accelerator.device
    if device.type == "cpu":
        # Denormal floats (below ~1e-38) slow x86 CPU arithmetic several-fold; gradients of a
        # trained net produce them, and which seed hits them is luck. Flushed to zero, they
        # change no outcome and make CPU step times comparable across trials (measured: up to
        # 25% per step on an MNIST MLP).
        torch.set_flush_denormal(True)
    record.environment = environment(device)
    record.environment["flush_denormal"] = device.type == "cpu"
    shard = Shard(accelerator.process_index, accelerator.num_processes)
    t = build(config, seed, device, shard)
    record.dataset = {**t.data.meta, "pipeline": t.pipeline, "stored_mib": round(t.data.nbytes / 2**20, 3)}
    if t.pipeline_reason:
        record.dataset["pipeline_reason"] = t.pipeline_reason
    channels_last = config["channels_last"]
    if channels_last:
        t.model.to(memory_format=torch.channels_last)  # conv weights NHWC; other layers are unaffected
    if _plain_optimizer_ok(accelerator):
        model, optimizer = accelerator.prepare(t.model), t.optimizer
        backward = torch.Tensor.backward
    else:
        model, optimizer = accelerator.prepare(t.model, t.optimizer)
        backward = accelerator.backward
    if config["compile"]:
        model = torch.compile(model)  # compiles at the first batch; checkpoints save the module beneath
    record.environment.update(precision=config["precision"], compiled=bool(config["compile"]),
                              channels_last=bool(channels_last), processes=accelerator.num_processes)
    base_lrs = [g["lr"] for g in optimizer.param_groups]
    params = list(t.model.parameters())  # the same objects, in the same order, as the wrapped model's
    # Data order and augmentation depend on the seed alone (and the process's rank).
    order = torch.Generator().manual_seed(seed)
    rng = Rng.seeded(seed, device, stream=shard.rank)
    loaders = dict(mode=t.pipeline, device=device)  # evaluation reads in-process; only training overlaps
    train_loader = make_loader(t.data, "train", t.batch_size, generator=order, shard=shard,
                               workers=config["loader"]["workers"], **loaders)
    eval_batch = config["eval_batch_size"]
    # Train accuracy in eval mode on a fixed slice of the training set (as large as the
    # validation set): the model as it stands, without dropout noise, and no per-step cost.
    probe = make_loader(t.data, "train", eval_batch, limit=max(len(t.data.val[1]), 1), **loaders)
    val, test = (make_loader(t.data, split, eval_batch, **loaders) for split in ("val", "test"))
    guard = _Guard(config["divergence"]["loss_ratio"])
    clip = _clipper(accelerator, model, config["clip"])
    record.diagnostics["parameters"] = sum(p.numel() for p in model.parameters())
    record.diagnostics["ln_classes"] = math.log(t.data.num_classes)
    saver = (_Saver(checkpointing, run_id_of(config, seed), record, accelerator, model, optimizer, t, guard, order, rng)
             if checkpointing else None)
    resumed = saver.resume() if saver else None
    layers = _Layers(t, config, record, resumed is not None, loaders) if config["diagnostics"]["layers"] else None
    step, train_time, eval_time = (resumed["step"], resumed["train_s"], resumed["eval_s"]) if resumed else (0, 0.0, 0.0)
    first_epoch = resumed["epoch"] if resumed else 1

    for epoch in range(first_epoch, config["budget"]["epochs"] + 1):
        model.train()
        epoch_order = order.get_state()  # before this epoch's permutation is drawn
        batches = iter(train_loader)
        partial = resumed.get("partial") if resumed and epoch == first_epoch else None
        if partial:  # resuming within this epoch: the same permutation, past the batches done
            for _ in range(partial["batches"]):
                next(batches)
            losses = [torch.tensor(v, device=device) for v in partial["losses"]]
            norms = [torch.tensor(v, device=device) for v in partial["norms"]]
            if layers:
                layers.steps.restore(partial.get("layers"), device)
            loss_sum, window_start, epoch_first_step = partial["loss_sum"], partial["window_start"], partial["first_step"]
            done_in_epoch, start = partial["batches"], _sync(device) - partial["train_s"]
        else:
            losses, norms = [], []
            loss_sum, window_start, epoch_first_step, done_in_epoch = 0.0, step, step, 0
            start = _sync(device)
        if resumed and epoch == first_epoch:
            saver.restore_random(resumed)  # after the loader drew its permutation from the restored order
        for x, y in batches:
            x, y = t.transform(x, y, rng)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            sample_norm = step % GRAD_NORM_EVERY == 0 or not norms  # at least one sample per epoch

            def closure() -> torch.Tensor:
                loss = t.loss_fn(model(x), y)
                if t.penalty is not None:
                    loss = loss + t.penalty(model)
                optimizer.zero_grad(set_to_none=True)
                backward(loss)
                if sample_norm:
                    per_param = diag.grad_norms(params)  # before clipping: the gradient the loss gave
                    norms.append(torch.linalg.vector_norm(per_param))
                    if layers:
                        layers.steps.gradients(per_param)
                if clip is not None:
                    clip()
                return loss

            _set_lr(optimizer, base_lrs, t.schedule(step))
            if layers and sample_norm:
                layers.steps.before_step()
            if t.needs_closure:
                loss = optimizer.step(closure)  # returns the loss at the step's starting point
            else:
                loss = closure()
                optimizer.step()
            if layers and sample_norm:
                layers.steps.after_step()
            losses.append(loss.detach())
            step += 1
            done_in_epoch += 1
            if len(losses) == CHECK_EVERY:
                window_sum = guard.check(accelerator, losses, window_start)
                loss_sum += window_sum
                record.steps.append([step, window_sum / len(losses)])
                losses, window_start = [], step
            if step >= t.total_steps:
                break
            if saver and saver.asked_to_stop(step):
                saver.save(epoch, step, train_time, eval_time, epoch_order, partial={
                    "batches": done_in_epoch, "losses": [v.item() for v in losses],
                    "norms": [v.item() for v in norms], "loss_sum": loss_sum, "window_start": window_start,
                    "first_step": epoch_first_step, "train_s": _sync(device) - start,
                    "layers": layers.steps.state() if layers else None})
                raise Preempted(f"stopped at step {step} (epoch {epoch}) when asked; resumes from its checkpoint")
        if losses:
            window_sum = guard.check(accelerator, losses, window_start)
            loss_sum += window_sum
            record.steps.append([step, window_sum / len(losses)])
        if guard.first is not None and "initial_loss" not in record.diagnostics:
            record.diagnostics["initial_loss"] = guard.first
        epoch_train = _sync(device) - start
        train_time += epoch_train

        start = _sync(device)
        _, train_acc = evaluate(model, probe)
        keep = probs is not None
        val_loss, val_acc, val_probs = _evaluate(model, val, keep)
        test_loss, test_acc, test_probs = _evaluate(model, test, keep)
        if keep:
            probs.append((val_probs, test_probs))
        epoch_eval = _sync(device) - start
        eval_time += epoch_eval
        metrics = {"epoch": epoch, "val_loss": val_loss, "val_acc": val_acc}
        if t.observe is not None:
            t.observe(metrics)
        record.history.append({
            "epoch": epoch, "step": step, "lr": base_lrs[0] * t.schedule(step),  # the next step's lr
            "train_loss": loss_sum / max(step - epoch_first_step, 1),  # mean of the batch losses
            "train_acc": train_acc,
            "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc,
            "grad_norm": torch.stack(norms).mean().item() if norms else None,
            "train_time": epoch_train, "eval_time": epoch_eval,
        })
        if layers:
            layers.epoch_end(epoch)
        if on_epoch is not None:
            on_epoch(record.history[-1], epoch)
        stops = [s for s in (hook(model, metrics) for hook in t.epoch_end) if s is not None]
        if stops:
            record.diagnostics["early_stopping"] = {"stopped_after_epoch": epoch, **stops[0]}
            break
        if step >= t.total_steps or epoch == config["budget"]["epochs"]:
            break
        if epoch == config["budget"]["stop_after"]:
            # a rung of successive halving: kept resumable, so that a promotion trains on from here
            if saver:
                saver.save(epoch + 1, step, train_time, eval_time, order.get_state())
            record.status = STOPPED
            record.reason = (f"stopped after epoch {epoch} of {config['budget']['epochs']} (budget.stop_after); "
                             + ("its checkpoint is kept for a longer trial of the same run" if saver else "no checkpoint"))
            break
        if saver:
            saver.save(epoch + 1, step, train_time, eval_time, order.get_state())
            if saver.asked_to_stop(step, now=True):
                raise Preempted(f"stopped after epoch {epoch} when asked; resumes from its checkpoint")

    restored = record.diagnostics.get("early_stopping", {}).get("restored_epoch")
    # after a restore the model holds that epoch's weights, so its metrics are the final ones
    summarize_history(record, restored or len(record.history), train_time, eval_time, step)
    if checkpointing is not None and checkpointing.weights is not None and accelerator.is_main_process:
        ckpt.save_weights(checkpointing.weights, record.trial_id, accelerator.unwrap_model(model).state_dict())


class _Layers:
    """The per-layer diagnostics of one trial (``harness.engine.diagnostics``), kept in
    ``record.diagnostics``: ``layers`` (init and per-epoch profiles), ``flags`` and ``warnings``."""

    def __init__(self, t: Trial, config: dict[str, Any], record: Record, resumed: bool, loaders: dict[str, Any]) -> None:
        size = config["diagnostics"]["probe"]
        x, y = next(iter(make_loader(t.data, "train", size, limit=size, **loaders)))
        self.probe = diag.Probe(t.model, x, y)  # the module itself: no DDP or compiled wrapper
        self.steps = diag.StepStats(t.model)
        self.sizes = {n: p.numel() for n, p in self.probe.weights}
        self.record = record
        self.judge_updates = not t.needs_closure
        d = record.diagnostics
        if resumed and "layers" in d:  # the profiles so far came back with the checkpoint
            return
        init = self.probe.at_init()
        d["layers"] = {"init": init, "epochs": []}
        d["init_loss"] = init["loss"]
        warning = diag.initial_loss_warning(init["loss"], t.data.num_classes)
        if warning:
            d.setdefault("warnings", []).append(warning)
        self._flag(init, "at init")

    def _flag(self, entry: dict[str, Any], when: str) -> None:
        d = self.record.diagnostics
        seen = set(d.setdefault("flag_kinds", []))
        for kind, message in diag.flags(entry, self.sizes, when, self.judge_updates):
            if kind not in seen:  # the first time each layer raises each flag
                seen.add(kind)
                d["flag_kinds"].append(kind)
                d.setdefault("flags", []).append(message)

    def epoch_end(self, epoch: int) -> None:
        entry = {"epoch": epoch, "activations": self.probe.activations(), **self.steps.epoch()}
        self.record.diagnostics["layers"]["epochs"].append(entry)
        self._flag(entry, f"in epoch {epoch}")


class _Saver:
    """Saves and restores one trial's checkpoint (see ``harness.engine.checkpoint``). In a
    multi-process trial every process's random streams are gathered into the one file the main
    process writes, and the decision to stop is taken together (every CHECK_EVERY steps)."""

    def __init__(self, checkpointing: Checkpointing, run_id: str, record: Record, accelerator: Accelerator,
                 model: nn.Module, optimizer: torch.optim.Optimizer, trial: Trial, guard: "_Guard",
                 order: torch.Generator, rng: Rng) -> None:
        # kept under the run's id: a promoted rung of successive halving resumes the run's checkpoint
        self.c, self.run_id, self.record, self.accelerator = checkpointing, run_id, record, accelerator
        self.model, self.optimizer = model, optimizer
        self.trial, self.guard, self.order, self.rng = trial, guard, order, rng
        self.world = accelerator.num_processes

    def asked_to_stop(self, step: int, now: bool = False) -> bool:
        if self.world == 1:
            return self.c.stop()
        if not now and step % CHECK_EVERY:
            return False
        flag = torch.tensor([1.0 if self.c.stop() else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() > 0)

    def _ranks(self) -> list[dict[str, Any]]:
        mine = {"rng": self.rng.state(), "global": ckpt.global_rng_state()}
        if self.world == 1:
            return [mine]
        from accelerate.utils import gather_object

        return gather_object([mine])

    def save(self, epoch: int, step: int, train_s: float, eval_s: float, order_state: torch.Tensor,
             partial: dict[str, Any] | None = None) -> None:
        ranks = self._ranks()  # every process takes part in the gather
        if not self.accelerator.is_main_process:
            return
        r = self.record
        ckpt.save(self.c.path, {
            "trial_id": self.run_id, "world": self.world, "epoch": epoch, "step": step,
            "train_s": train_s, "eval_s": eval_s, "partial": partial,
            "model": self.accelerator.unwrap_model(self.model).state_dict(),
            "optimizer": self.optimizer.state_dict(), "components": self.trial.states,
            "order": order_state, "ranks": ranks, "guard_first": self.guard.first,
            "record": {"history": r.history, "steps": r.steps, "diagnostics": r.diagnostics,
                       "started_at": r.started_at},
        })

    def resume(self) -> dict[str, Any] | None:
        state, why = ckpt.load(self.c.path, self.run_id)
        if state is not None and state["world"] != self.world:
            state, why = None, (f"checkpoint was written by {state['world']} processes, not {self.world}; "
                                "started over")
        if why:
            self.record.diagnostics["checkpoint"] = why
        if state is None:
            return None
        self.accelerator.unwrap_model(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        for live, saved in zip(self.trial.states, state["components"]):
            live.clear()
            live.update(saved)
        saved = state["record"]
        resumes = saved["diagnostics"].get("resumed_at_step", []) + [state["step"]]
        self.record.history, self.record.steps = saved["history"], saved["steps"]
        self.record.diagnostics = {**saved["diagnostics"], "resumed_at_step": resumes}
        self.record.started_at = saved["started_at"]
        self.guard.first = state["guard_first"]
        self.order.set_state(state["order"])
        return state

    def restore_random(self, state: dict[str, Any]) -> None:
        mine = state["ranks"][self.accelerator.process_index]
        self.rng.set_state(mine["rng"])
        ckpt.set_global_rng_state(mine["global"])


def summarize_history(record: Record, final_epoch: int, train_s: float, eval_s: float, steps: int) -> None:
    """Fill ``final`` (metrics of ``final_epoch``), ``best`` (the best-validation epoch) and ``timing``."""
    final = record.history[final_epoch - 1]
    record.final = {k: v for k, v in final.items() if k not in ("train_time", "eval_time")}
    best = max(record.history, key=lambda h: (h["val_acc"], -h["epoch"]))
    record.best = {k: best[k] for k in ("epoch", "val_acc", "val_loss", "test_acc", "test_loss")}
    record.timing = {"train_s": train_s, "eval_s": eval_s, "steps": steps,
                     "train_step_ms": 1000 * train_s / max(steps, 1)}
