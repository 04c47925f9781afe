"""The training loop: one TrialSpec in, one Record out.

``run_trial`` never raises for a problem of the trial itself: a NaN/Inf or exploding loss gives
status ``diverged`` with the step, any exception gives ``failed`` with the message, so a sweep
goes on. Train time (the optimization steps) and eval time (the per-epoch evaluations) are kept
apart, each measured after synchronizing the device.

The loop itself is ``_fit``: prepare, then per epoch iterate, step, evaluate, record. Everything
else is a callback (``harness.technique``): the divergence guard and the budget
(``callbacks``), checkpoints and mid-epoch resume (``checkpoint.Checkpointer``), the per-layer
diagnostics (``diagnostics.Diagnostics``), live trackers, an ensemble member's probabilities, and
every technique of the trial (early stopping, weight averaging, optimizer modes).
"""
from __future__ import annotations

import datetime as dt
import math
import socket
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, gather_object
from torch import nn

from harness.data import Rng, Shard, make_loader
from harness.data.loader import Loader
from harness.errors import StorageError
from harness.engine import checkpoint as ckpt
from harness.engine.build import Trial, build, param_groups, seed_everything  # noqa: F401  (the engine's API)
from harness.components.averaging import has_batchnorm
from harness.engine.callbacks import Budget, Capture, Diverged, Guard, Log, OptimizerModes
from harness.engine.checkpoint import Checkpointer, Preempted
from harness.engine.diagnostics import Diagnostics
from harness.engine.ensemble import train_ensemble
from harness.engine.runtime import restore_dynamo, torch_defaults, tune_cpu
from harness.engine.environment import environment
from harness.engine.step import Step, clipper, plain_backward, set_lr
from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED, Record, TrialSpec, run_id_of, summarize_history
from harness.technique import Callback, Hooks, Run, Stop
from harness.tracking import Trackers

MIXED_PRECISION = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}  # the suite's names → Accelerate's
OnEpoch = Callable[[dict[str, Any], int], None]


@dataclass(frozen=True)
class Checkpointing:
    """Where a trial keeps its checkpoint (saved after every epoch and when ``stop()`` turns true,
    asked after every step), and resumes from if one is there; where its final weights go, if kept."""

    path: Path
    stop: Callable[[], bool] = lambda: False
    weights: Path | None = None


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def run_trial(spec: TrialSpec, accelerator: Accelerator | None = None, tracking_dir: Path | None = None,
              checkpointing: Checkpointing | None = None, on_epoch: OnEpoch | None = None,
              threads: int | None = None) -> Record:
    """Train and evaluate one trial; the returned record says how it ended. With trackers in the
    config and a ``tracking_dir``, each epoch's metrics are logged there as they come. With
    ``checkpointing``, the trial resumes from its checkpoint and, when asked to stop, saves one and
    returns an ``interrupted`` record. ``on_epoch(row, epoch)`` sees each epoch's history row as it comes
    (a sweep's progress display). It trains under ``threads`` intra-op threads (None: as many as this process
    has); its record's environment says how many (``torch_threads``)."""
    record = Record(spec.trial_id, spec.suite, spec.seed, COMPLETED, spec.config, dict(spec.axes),
                    started_at=_now())
    trackers = None
    with torch_defaults(threads) as changed:  # a plugin's global settings stay in its own trial
        try:
            accelerator = accelerator or _accelerator(MIXED_PRECISION[spec.config["precision"]])
            if spec.config.get("trackers") and tracking_dir is not None:
                trackers = Trackers(spec.config["trackers"], Path(tracking_dir), spec.suite,
                                    f"{spec.label()} [{spec.trial_id}]")
                trackers.start(spec.config)
            listeners = [f for f in (trackers.log if trackers else None, on_epoch) if f is not None]
            _train(spec, record, accelerator, _each(listeners) if listeners else None, checkpointing)
        except Preempted as e:
            record.status, record.reason = INTERRUPTED, str(e)
        except Diverged as e:
            record.status, record.reason, record.diverged_step = DIVERGED, e.reason, e.step
        except StorageError:
            raise  # a full or read-only disk is not this trial's failure: it ends the sweep, to be rerun
        except Exception as e:  # noqa: BLE001 - any failure of a trial is recorded, and the sweep goes on
            record.status, record.reason = FAILED, f"{type(e).__name__}: {e}"
            record.diagnostics["traceback"] = traceback.format_exc(limit=20)
        except SystemExit as e:  # a plugin's sys.exit() in the trial's code ends the trial, not the sweep
            record.status, record.reason = FAILED, f"the trial's code called sys.exit({e.code!r})"
            record.diagnostics["traceback"] = traceback.format_exc(limit=20)
        finally:
            if trackers is not None:
                trackers.finish()
    if changed:
        record.diagnostics.setdefault("warnings", []).extend(changed)
    record.finished_at = _now()
    return record


def _each(listeners: list[OnEpoch]) -> OnEpoch:
    def tell(row: dict[str, Any], epoch: int) -> None:
        for listen in listeners:
            listen(row, epoch)
    return tell


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
        n += yb.numel()  # a sequence's targets each count (a language model's next tokens): per token
        if keep_probs:
            kept.append(out.float().softmax(1))
    n = max(n, 1)
    return float(loss_sum) / n, int(correct) / n, torch.cat(kept).cpu() if keep_probs else None


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


def _train(spec: TrialSpec, record: Record, accelerator: Accelerator, on_epoch: OnEpoch | None,
           checkpointing: Checkpointing | None) -> None:
    members = spec.config["ensemble"]["members"]
    if members == 1:
        fit(spec.config, spec.seed, record, accelerator, [Log(on_epoch)] if on_epoch else [], checkpointing)
        return
    # An ensemble's members are not checkpointed: a preempted ensemble trial starts over.
    train_ensemble(spec, record, members,
                   lambda seed, member, probs: fit(spec.config, seed, member, accelerator, [Capture(probs)]))
    for row in record.history if on_epoch else []:  # an ensemble's metrics exist once every member has trained
        on_epoch(row, row["epoch"])


@dataclass
class _Loaders:
    train: Loader
    probe: Loader  # a fixed slice of the training set, for train accuracy in eval mode
    val: Loader
    test: Loader


def _prepare(config: dict[str, Any], seed: int, record: Record, accelerator: Accelerator,
             extra: list[Callback], checkpointing: Checkpointing | None) -> tuple[Run, Hooks, Step, _Loaders]:
    """Build the trial, wrap it for Accelerate, and line up its callbacks."""
    device = accelerator.device
    record.environment = environment(device, config)
    # denormals flushed and freed memory kept for the next step (harness.engine.runtime)
    record.environment.update(tune_cpu() if device.type == "cpu" else {"flush_denormal": False})
    shard = Shard(accelerator.process_index, accelerator.num_processes)
    t = build(config, seed, device, shard)
    for warning in t.warnings:  # what the build handled for it (an optimizer's undeclared train()/eval())
        record.diagnostics.setdefault("warnings", []).append(warning)
    if t.groups:  # which parameter-group rule each parameter fell under
        record.diagnostics["param_groups"] = t.groups
    record.dataset = {**t.data.meta, "pipeline": t.pipeline, "stored_mib": round(t.data.nbytes / 2**20, 3)}
    if t.pipeline_reason:
        record.dataset["pipeline_reason"] = t.pipeline_reason
    if config["channels_last"]:
        t.model.to(memory_format=torch.channels_last)  # conv weights NHWC; other layers are unaffected
    if _plain_optimizer_ok(accelerator):
        model, optimizer, backward = accelerator.prepare(t.model), t.optimizer, plain_backward
    else:
        (model, optimizer), backward = accelerator.prepare(t.model, t.optimizer), accelerator.backward
    if config["compile"]:
        restore_dynamo()  # torch.optim's wrappers disable dynamo again, as a compiled model expects
        model = torch.compile(model)  # compiles at the first batch; checkpoints save the module beneath
    record.environment.update(precision=config["precision"], compiled=bool(config["compile"]),
                              channels_last=bool(config["channels_last"]), processes=accelerator.num_processes)
    if accelerator.num_processes > 1:  # where every process ran: a multi-node trial names each node
        record.environment["hosts"] = gather_object([socket.gethostname()])
    record.diagnostics["parameters"] = sum(p.numel() for p in t.model.parameters())
    record.diagnostics["ln_classes"] = math.log(t.data.num_classes)
    params = list(t.model.parameters())  # the same objects, in the same order, as the wrapped model's
    # Data order and augmentation depend on the seed alone (and the process's rank).
    run = Run(trial=t, model=model, optimizer=optimizer, accelerator=accelerator, record=record,
              rng=Rng.seeded(seed, device, stream=shard.rank), order=torch.Generator().manual_seed(seed))
    mode = dict(mode=t.pipeline, device=device)  # evaluation reads in-process; only training overlaps
    eval_batch, n_val = config["eval_batch_size"], max(len(t.data.val[1]), 1)
    loaders = _Loaders(make_loader(t.data, "train", t.batch_size, generator=run.order, shard=shard,
                                   workers=config["loader"]["workers"], **mode),
                       make_loader(t.data, "train", eval_batch, limit=n_val, **mode),
                       *(make_loader(t.data, split, eval_batch, **mode) for split in ("val", "test")))
    hooks = Hooks(trial_callbacks(config, seed, t, params, mode, extra, checkpointing))
    step = Step(model, optimizer, t.caps, t.loss, backward, clipper(accelerator, params, config["clip"]),
                hooks.bound_run("after_backward", run))
    return run, hooks, step, loaders


def trial_callbacks(config: dict[str, Any], seed: int, t: Trial, params: list[torch.Tensor], mode: dict[str, Any],
               extra: list[Callback], checkpointing: Checkpointing | None) -> list[Callback]:
    """The trial's callbacks in the order they see each event: the guard first (a later callback
    sees the step's loss counted), the techniques before the budget (early stopping's stop wins),
    the checkpoint last (it saves what every other callback has done)."""
    size = config["diagnostics"]["probe"]
    probe = next(iter(make_loader(t.data, "train", size, limit=size, **mode))) if config["diagnostics"]["layers"] else None
    callbacks: list[Callback] = [
        Guard(config["divergence"]["loss_ratio"], mode["device"]),
        Diagnostics(t.model, params, mode["device"], probe, t.data.num_classes, judge_updates=not t.caps.needs_closure),
    ]
    if t.caps.train_eval:  # the authors' BatchNorm remedy: statistics from 50 training batches at the eval weights
        bn = (lambda: make_loader(t.data, "train", t.batch_size, limit=50 * t.batch_size, **mode)) \
            if has_batchnorm(t.model) else None
        callbacks.append(OptimizerModes(bn))
    callbacks += [*extra, *t.techniques, Budget(config["budget"]["epochs"], config["budget"]["stop_after"],
                                                t.total_steps)]
    if checkpointing is not None:
        others = Hooks(list(callbacks))  # what the checkpoint keeps of them, with the schedule's state
        callbacks.append(Checkpointer(checkpointing.path, run_id_of(config, seed), checkpointing.stop,
                                      lambda: {"callbacks": others.state_dict(), "schedule": t.schedule_state},
                                      lambda state: _restore(t, others, state), t.total_steps))
    return callbacks


def _restore(t: Trial, hooks: Hooks, state: dict[str, Any]) -> None:
    hooks.load_state_dict(state["callbacks"])
    if t.schedule_state is not None:
        t.schedule_state.clear()
        t.schedule_state.update(state["schedule"])


def fit(config: dict[str, Any], seed: int, record: Record, accelerator: Accelerator,
        extra: list[Callback] = (), checkpointing: Checkpointing | None = None) -> None:
    """Train one model into ``record``, with ``extra`` callbacks."""
    run, hooks, step, loaders = _prepare(config, seed, record, accelerator, list(extra), checkpointing)
    t = run.trial
    base_lrs = [g["lr"] for g in run.optimizer.param_groups]
    channels_last = config["channels_last"]
    hooks("on_restore", run)
    c = run.cursor  # a checkpoint may have replaced it
    hooks("on_start", run)
    before_step, after_step = hooks.bound["before_step"], hooks.bound["after_step"]  # bound once: the hot path
    for epoch in range(c.epoch, config["budget"]["epochs"] + 1):
        c.epoch = epoch
        hooks("train_mode", run)
        run.model.train()
        run.epoch_order = run.order.get_state()  # before this epoch's permutation is drawn
        batches = iter(loaders.train)
        for _ in range(c.batches):  # resuming within this epoch: the same permutation, past the batches done
            next(batches)
        hooks("on_epoch_start", run)
        run.epoch_started = run.clock() - c.epoch_train_s
        for x, y in batches:
            if t.transform is not None:
                x, y = t.transform(x, y, run.rng)
            if channels_last and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            set_lr(run.optimizer, base_lrs, t.schedule(c.step))
            for hook in before_step:
                hook(run)
            run.loss = step(x, y)
            c.step += 1
            c.batches += 1
            for hook in after_step:
                hook(run)
            if c.step >= t.total_steps:
                break
        row: dict[str, Any] = {}
        hooks("on_epoch_trained", run, row)
        epoch_train = run.clock() - run.epoch_started
        c.train_s += epoch_train
        c.batches, c.epoch_train_s = 0, 0.0
        stop = _end_epoch(run, hooks, loaders, row, base_lrs[0], epoch_train)
        if stop is not None:
            break
    # after early stopping's restore the model holds that epoch's weights, so its metrics are the final ones
    summarize_history(record, run.final_epoch or len(record.history), c.train_s, c.eval_s, c.step)
    hooks("on_end", run)
    if checkpointing is not None and checkpointing.weights is not None and accelerator.is_main_process:
        with hooks.evaluation(run):
            ckpt.save_weights(checkpointing.weights, record.trial_id, accelerator.unwrap_model(run.model).state_dict())


def _end_epoch(run: Run, hooks: Hooks, loaders: _Loaders, row: dict[str, Any], base_lr: float,
               epoch_train: float) -> Stop | None:
    """Evaluate (on the weights the callbacks supply) and close the epoch; the Stop that ends training, if one does."""
    start = run.clock()
    with hooks.evaluation(run):
        _, train_acc = evaluate(run.model, loaders.probe)
        val_loss, val_acc, val_probs = _evaluate(run.model, loaders.val, hooks.wants_probs)
        test_loss, test_acc, test_probs = _evaluate(run.model, loaders.test, hooks.wants_probs)
    if hooks.wants_probs:
        hooks("on_evaluate", run, {"val": val_probs, "test": test_probs})
    epoch_eval = run.clock() - start
    run.cursor.eval_s += epoch_eval
    metrics = {"train_acc": train_acc, "val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss,
               "test_acc": test_acc}
    return close_epoch(run, hooks, row, metrics, base_lr, epoch_train, epoch_eval)


def close_epoch(run: Run, hooks: Hooks, trained: dict[str, Any], metrics: dict[str, float], base_lr: float,
                epoch_train: float, epoch_eval: float) -> Stop | None:
    """Record the epoch's history row from what the callbacks gave at ``on_epoch_trained`` and the
    evaluated ``metrics``, let every callback see it; the Stop that ends training, if one does.
    (A fused pack closes each slice's epochs here too.)"""
    c, t = run.cursor, run.trial
    if t.observe is not None:
        t.observe({"epoch": c.epoch, "val_loss": metrics["val_loss"], "val_acc": metrics["val_acc"]})
    row = {"epoch": c.epoch, "step": c.step, "lr": base_lr * t.schedule(c.step),  # the next step's lr
           "train_loss": trained.get("train_loss"), "train_acc": metrics["train_acc"],
           "val_loss": metrics["val_loss"], "val_acc": metrics["val_acc"], "test_loss": metrics["test_loss"],
           "test_acc": metrics["test_acc"], "grad_norm": trained.get("grad_norm"), "train_time": epoch_train,
           "eval_time": epoch_eval}
    run.record.history.append(row)
    stop = hooks.first_stop(run, row)
    if stop is not None and stop.status is not None:
        run.record.status, run.record.reason = stop.status, stop.reason
    hooks("on_epoch_done", run, stop)
    return stop
