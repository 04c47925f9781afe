"""A fused pack: K trials trained as one stacked model, each ending with the record its own run writes.

Each trial of the pack is built as it would be alone (``harness.engine.build``: its seed, init,
techniques, schedule), then the K models become one ``StackedSequential`` (``harness.fused.models``)
and the K optimizers one fused optimizer (``harness.fused.optim``) with each slice's hyperparameters.
Every unfused model stays, its parameters, gradients and BatchNorm buffers turned into views of its
slice of the stacked ones: whatever reads or writes trial k's model (the per-layer diagnostics, early
stopping's restore, a weight average's evaluation weights, clipping, a penalty's gradient) acts on
slice k. So each trial keeps its own callbacks (``harness.engine.loop.trial_callbacks``: divergence
guard, budget, diagnostics, its techniques) and closes its epochs through the loop's ``close_epoch``.

Per step: each slice's batch from its own data order (the permutation its seed draws alone), its own
batch transforms (cutout, mixup) from its own augmentation streams, its own dropout masks (a generator
at the state its unfused run's global stream would have), its own schedule factor; one forward and
backward of the stacked model on ``[K, N, ...]``, one fused step. Evaluation runs every slice at once
on the same batches. A slice that diverges is recorded ``diverged`` at its step and frozen (the fused
optimizer's ``active`` mask); one whose callbacks raise is recorded ``failed``; one that stops early
ends with its record; the others train on. A record's times are its share of the pack's wall clock (each
epoch's time divided among the slices live in it); ``environment.fused`` names the pack.

A pack checkpoints as one unit (every epoch, and at a step when asked to stop): the stacked model and
optimizer, and per slice its record so far, callbacks, schedule and random streams. A pack that cannot
be built (layers without a stacked form) trains its trials one after another instead, saying why; on a
GPU, a pack that runs out of memory is split in two halves, which start over (HFTA's way, by trying).
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import math
import traceback
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from harness.data import Rng, make_loader
from harness.data.loader import epoch_batches
from harness.errors import StorageError, first_line
from harness.engine import checkpoint as ckpt
from harness.engine.build import Trial, build, param_groups
from harness.engine.callbacks import Diverged
from harness.engine.diagnostics import Diagnostics, Probe
from harness.engine.checkpoint import Preempted
from harness.engine.environment import environment
from harness.engine.runtime import defer_dynamo, torch_defaults, tune_cpu
from harness.engine.loop import _accelerator, _now, clipper, close_epoch, run_trial, trial_callbacks
from harness.fused.models import stack_models
from harness.fused.optim import FusedOptimizer, build_fused
from harness.fused.checkpoint import pack_state, restore_pack, save_pack
from harness.fused.plan import pack_id
from harness.fused.probe import profile_slices
from harness.registries import OPTIMIZERS
from harness.spec import COMPLETED, DIVERGED, FAILED, INTERRUPTED, Record, TrialSpec, summarize_history
from harness.technique import Cursor, Hooks, Run

@dataclasses.dataclass
class _Slice:
    """One trial of a pack: as built alone, with its own run, callbacks and streams."""

    spec: TrialSpec
    record: Record
    trial: Trial | None = None
    run: Run | None = None
    hooks: Hooks | None = None
    dropout: torch.Generator | None = None  # its dropout masks' stream
    clip: Callable[[], None] | None = None
    base_lr: float = 0.0
    live: bool = True
    pending: dict[str, Any] | None = None  # random states to restore once the resumed epoch's order is drawn


def run_pack(specs: list[TrialSpec], checkpoint: Path | None = None, stop: Callable[[], bool] = lambda: False,
             threads: int | None = None) -> list[Record]:
    """Train ``specs`` as one pack; their records, in order. With ``checkpoint``, the pack resumes from
    it and, when ``stop()`` turns true, saves one and returns ``interrupted`` records.

    Slice k of the stacked model is the k-th trial by trial id, whatever order ``specs`` come in (a suite whose
    grid values or seeds were reordered makes the same pack, by ``pack_id``), and the checkpoint names the
    trial of each slice: a resumed pack never hands one trial another's weights."""
    with torch_defaults(threads) as changed:  # threads: intra-op threads, as for a trial alone
        records = _run_sorted(sorted(specs, key=lambda s: s.trial_id), checkpoint, stop)
    for record in records if changed else ():  # slices share their code: the change is the pack's
        record.diagnostics.setdefault("warnings", []).extend(changed)
    by_id = {r.trial_id: r for r in records}
    return [by_id[s.trial_id] for s in specs]


def _fresh(spec: TrialSpec) -> Record:
    return Record(spec.trial_id, spec.suite, spec.seed, COMPLETED, spec.config, dict(spec.axes), started_at=_now())


def _run_sorted(specs: list[TrialSpec], checkpoint: Path | None, stop: Callable[[], bool]) -> list[Record]:
    slices = [_Slice(s, _fresh(s)) for s in specs]
    try:
        _train(slices, pack_id(specs), checkpoint, stop)
    except Preempted as e:
        for s in slices:  # the finished slices' records wait in the checkpoint, so the rerun forms the same pack
            s.record = dataclasses.replace(_fresh(s.spec), status=INTERRUPTED, reason=str(e), started_at=None)
    except _Unfusable as e:
        return [_alone(s.spec, str(e)) for s in slices]
    except torch.cuda.OutOfMemoryError:
        if len(specs) == 1:
            raise
        half = len(specs) // 2
        if checkpoint is not None:
            ckpt.remove(checkpoint)
        return (_run_sorted(specs[:half], _sibling(checkpoint, specs[:half]), stop)
                + _run_sorted(specs[half:], _sibling(checkpoint, specs[half:]), stop))
    for s in slices:
        s.record.finished_at = s.record.finished_at or _now()
    return [s.record for s in slices]


class _Unfusable(Exception):
    """The pack's trials cannot share a stacked model after all (a layer without a stacked form)."""


def _sibling(checkpoint: Path | None, specs: list[TrialSpec]) -> Path | None:  # a half's own checkpoint
    return None if checkpoint is None else checkpoint.with_name(f"{pack_id(specs)}.pt")


def _alone(spec: TrialSpec, why: str) -> Record:
    record = run_trial(spec)
    record.environment["fused"] = {"fallback": why}
    return record


def _fail(s: _Slice, e: BaseException) -> None:
    if isinstance(e, StorageError):
        raise e  # the disk, not the trial: it ends the pack (harness.errors.StorageError)
    s.live = False
    s.record.finished_at = _now()
    if isinstance(e, Diverged):
        s.record.status, s.record.reason, s.record.diverged_step = DIVERGED, e.reason, e.step
    else:
        s.record.status, s.record.reason = FAILED, (f"the trial's code called sys.exit({e.code!r})"
                                                    if isinstance(e, SystemExit) else f"{type(e).__name__}: {e}")
        s.record.diagnostics["traceback"] = traceback.format_exc(limit=20)


@contextlib.contextmanager
def _its_stream(s: _Slice) -> Any:
    """The global random stream as trial k's run alone would have it here: the stream its dropout masks
    came from (on the CPU). The per-layer probe draws its dropout from it (and puts it back), so its
    profiles equal the unfused run's; whatever a callback draws, the slice's stream keeps."""
    if s.dropout is None or s.dropout.device.type != "cpu":
        yield
        return
    kept = torch.get_rng_state()
    torch.set_rng_state(s.dropout.get_state())
    try:
        yield
    finally:
        s.dropout.set_state(torch.get_rng_state())
        torch.set_rng_state(kept)


def _call(s: _Slice, event: str, *args: Any) -> None:
    """A live slice's callbacks for ``event``; a slice whose callback raises ends, the pack goes on."""
    try:
        with _its_stream(s):
            s.hooks(event, s.run, *args)
    except (Diverged, Exception, SystemExit) as e:  # noqa: BLE001 - one trial's failure is recorded, the others train on
        _fail(s, e)


def _tie(stacked: nn.Module, models: list[nn.Module]) -> None:
    """Make model k's parameters, their gradients and its buffers views of slice k of the stacked ones."""
    for p in stacked.parameters():
        p.grad = torch.zeros_like(p)  # zeroed in place from now on, so the views stay valid
    for k, model in enumerate(models):
        for name, p in model.named_parameters():
            big = stacked.get_parameter(name)
            p.data = big.data[k]
            p.grad = big.grad[k]
        for name, b in model.named_buffers():
            if b.dim() > 0:  # BatchNorm's 0-d batch counter is the pack's
                b.data = stacked.get_buffer(name)[k]


def _optimizer(stacked: nn.Module, slices: list[_Slice]) -> FusedOptimizer:
    """The fused optimizer: the unfused parameter groups (decay exemptions), each slice's hyperparameters."""
    config = slices[0].spec.config
    model = slices[0].trial.model
    name = config["optimizer"]["name"]
    if "weight_decay" in OPTIMIZERS.get(name).params:
        groups = param_groups(model, config["decay"]["biases"], config["decay"]["norm"])
    else:
        groups = [{"params": list(model.parameters())}]
    names = {id(p): n for n, p in model.named_parameters()}
    fused_groups = [{**{k: v for k, v in g.items() if k != "params"},
                     "params": [stacked.get_parameter(names[id(p)]) for p in g["params"]]} for g in groups]
    keys = [k for k in config["optimizer"] if k != "name"]
    hyper = {k: [s.spec.config["optimizer"][k] for s in slices] for k in keys}
    return build_fused(name, fused_groups, hyper)


def _build(slices: list[_Slice], pid: str, accelerator: Any) -> tuple[list[_Slice], nn.Module, FusedOptimizer]:
    device = accelerator.device
    tuned = tune_cpu() if device.type == "cpu" else {"flush_denormal": False}  # as a trial alone
    defer_dynamo()  # the trials' torch optimizers are built, never stepped: no dynamo import (1.7 s); no pack compiles
    built = []
    for s in slices:
        try:
            s.trial = build(s.spec.config, s.spec.seed, device)
        except Exception as e:  # noqa: BLE001 - a trial that cannot be built is recorded failed; the pack goes on
            _fail(s, e)
            continue
        # its dropout masks continue the stream its unfused run would draw them from (on a GPU, its own seed)
        s.dropout = torch.Generator(device=device)
        if device.type == "cpu":
            s.dropout.set_state(torch.get_rng_state())
        else:
            s.dropout.manual_seed(s.spec.seed)
        built.append(s)
    if not built:
        return built, nn.Sequential(), None
    data = built[0].trial.data
    if built[0].trial.pipeline != "device":
        raise _Unfusable(f"the data of {data.meta['name']} does not fit on the device")
    try:
        stacked = stack_models([s.trial.model for s in built], [s.dropout for s in built])
    except ValueError as e:
        raise _Unfusable(str(e)) from None
    _tie(stacked, [s.trial.model for s in built])
    optimizer = _optimizer(stacked, built)
    mode = dict(mode="device", device=device)
    env = environment(device)  # package versions and the machine: once per pack
    for k, s in enumerate(built):
        t, config, r = s.trial, s.spec.config, s.record
        t.data = data  # one copy of the splits for the pack
        r.environment = {**copy.deepcopy(env), **tuned, "precision": "fp32", "compiled": False, "channels_last": False,
                         "processes": 1, "fused": {"pack": pid, "size": len(built), "slice": k}}
        r.dataset = {**data.meta, "pipeline": t.pipeline, "stored_mib": round(data.nbytes / 2**20, 3)}
        params = list(t.model.parameters())
        r.diagnostics["parameters"] = sum(p.numel() for p in params)
        r.diagnostics["ln_classes"] = math.log(data.num_classes)
        s.run = Run(trial=t, model=t.model, optimizer=t.optimizer, accelerator=accelerator, record=r,
                    rng=Rng.seeded(s.spec.seed, device), order=torch.Generator().manual_seed(s.spec.seed))
        s.hooks = Hooks(trial_callbacks(config, s.spec.seed, t, params, mode, [], None))
        s.clip = clipper(accelerator, params, config["clip"])
        s.base_lr = t.optimizer.param_groups[0]["lr"]
    return built, stacked, optimizer


@torch.inference_mode()
def evaluate_pack(stacked: nn.Module, loader: Any, k: int) -> tuple[list[float], list[float]]:
    """Every slice's mean cross-entropy and accuracy on the same batches, in one forward per batch."""
    stacked.eval()
    loss_sum = correct = None
    n = 0
    for xb, yb in loader:
        out = stacked(xb.expand(k, *xb.shape)).float()  # [K, N, classes]
        losses = F.cross_entropy(out.flatten(0, 1), yb.repeat(k), reduction="none").view(k, -1).sum(1)
        right = (out.argmax(2) == yb).sum(1)
        loss_sum = losses if loss_sum is None else loss_sum + losses
        correct = right if correct is None else correct + right
        n += len(yb)
    n = max(n, 1)
    return [v / n for v in loss_sum.tolist()], [v / n for v in correct.tolist()]


def _train(all_slices: list[_Slice], pid: str, checkpoint: Path | None, stop: Callable[[], bool]) -> None:
    accelerator = _accelerator("no")
    slices, stacked, optimizer = _build(all_slices, pid, accelerator)
    if not slices:
        return
    c = None
    if checkpoint is not None:
        try:
            c = restore_pack(checkpoint, pid, slices, stacked, optimizer)
        except Exception as e:  # noqa: BLE001 - a damaged checkpoint costs its progress, never the pack
            why = f"pack checkpoint {checkpoint.name} does not fit this pack ({first_line(e)}); started over"
            ckpt.remove(checkpoint)
            for s in all_slices:  # built again from scratch: nothing of the damaged file stays
                s.record, s.live, s.pending = _fresh(s.spec), True, None
            slices, stacked, optimizer = _build(all_slices, pid, accelerator)
            for s in slices:
                s.record.diagnostics["checkpoint"] = why
            if not slices:
                return
    c = c or Cursor()
    K, t0, config = len(slices), slices[0].trial, slices[0].spec.config
    mask = [s.live for s in slices]
    optimizer.set_active(mask)
    for s in slices:
        s.run.cursor = c
    run0 = slices[0].run
    data, device = t0.data, accelerator.device
    train = make_loader(data, "train", t0.batch_size, mode="device", device=device)  # normalized once where small
    inputs, targets, normalize = train.x, train.y, train.normalize
    n, eval_batch = len(targets), config["eval_batch_size"]
    mode = dict(mode="device", device=device)
    probe, val, test = (make_loader(data, "train", eval_batch, limit=max(len(data.val[1]), 1), **mode),
                        make_loader(data, "val", eval_batch, **mode), make_loader(data, "test", eval_batch, **mode))
    transforms = [s.trial.transform for s in slices]
    smoothing = _shared_cross_entropy(slices)
    bound = [{e: s.hooks.bound_run(e, s.run) for e in ("before_step", "after_backward", "after_step")} for s in slices]
    for s in slices:
        if s.live:
            _call(s, "on_start")
    for epoch in range(c.epoch, config["budget"]["epochs"] + 1):
        c.epoch = epoch
        live = [s for s in slices if s.live]
        if not live:
            break
        stacked.train()
        orders = [s.run.order.get_state() for s in slices]  # before this epoch's permutations are drawn
        perms = torch.stack([torch.cat(epoch_batches(n, t0.batch_size, s.run.order)) for s in slices]).to(device)
        sizes = [len(b) for b in epoch_batches(n, t0.batch_size, None)]
        for s, order in zip(slices, orders):
            s.run.epoch_order = order
            if s.pending is not None:  # after the permutation was drawn from the restored order
                s.run.rng.set_state(s.pending["rng"])
                s.dropout.set_state(s.pending["dropout"])
                ckpt.set_global_rng_state(s.pending["global"])
                s.pending = None
        for s in live:
            s.trial.model.train()
            _call(s, "train_mode")
            _call(s, "on_epoch_start")
        started = run0.clock() - c.epoch_train_s
        for s in slices:
            s.run.epoch_started = started
        offset = sum(sizes[:c.batches])
        for size in sizes[c.batches:]:
            idx = perms[:, offset:offset + size]
            offset += size
            x = normalize(inputs.index_select(0, idx.flatten())).view(K, size, *inputs.shape[1:])
            y = targets.index_select(0, idx.flatten()).view(K, size)
            ys = list(y.unbind(0))
            if any(tf is not None for tf in transforms):
                xs = list(x.unbind(0))
                for k, tf in enumerate(transforms):
                    if tf is not None and slices[k].live:
                        try:
                            xs[k], ys[k] = tf(xs[k], ys[k], slices[k].run.rng)
                        except (Exception, SystemExit) as e:  # noqa: BLE001 - that trial fails; its slice steps on as it is, frozen
                            _fail(slices[k], e)
                x = torch.stack(xs)
            optimizer.set_lr([_lr(s, c.step) for s in slices])
            _hooks(slices, bound, "before_step")
            out = stacked(x)
            parts = None  # each slice's own loss, where it has one
            if smoothing is not None:  # every slice's loss is the same plain cross-entropy: one call for all
                losses = F.cross_entropy(out.flatten(0, 1), y.flatten(), reduction="none",
                                         label_smoothing=smoothing).view(K, size).mean(1)
            else:
                parts = [_loss(s, out[k], ys[k]) for k, s in enumerate(slices)]
                losses = torch.stack(parts)
            optimizer.zero_grad(set_to_none=False)  # in place: the unfused models' gradients are views
            _backward(slices, losses, parts, optimizer)
            out, parts, losses = None, None, losses.detach()  # the kept graph goes now, not after the next forward
            _hooks(slices, bound, "after_backward")
            for s in slices:
                if s.live and s.clip is not None:
                    _guarded(s, s.clip)
            if [s.live for s in slices] != mask:  # a slice that ended in this step takes no update
                mask = [s.live for s in slices]
                optimizer.set_active(mask)
            optimizer.step()
            c.step += 1
            c.batches += 1
            for s, loss in zip(slices, losses.unbind(0)):
                s.run.loss = loss
            _hooks(slices, bound, "after_step")
            if checkpoint is not None and c.step < t0.total_steps and stop():
                c.epoch_train_s = run0.clock() - started
                save_pack(checkpoint, pack_state(slices, pid, c, stacked, optimizer, orders))
                raise Preempted(f"stopped at step {c.step} (epoch {c.epoch}) when asked; resumes from its checkpoint")
            if c.step >= t0.total_steps:
                break
        _end_epoch(slices, stacked, c, run0.clock() - started, (probe, val, test))
        mask = [s.live for s in slices]
        optimizer.set_active(mask)
        c.batches, c.epoch_train_s = 0, 0.0
        if checkpoint is not None and any(s.live for s in slices):
            save_pack(checkpoint, pack_state(slices, pid, Cursor(c.epoch + 1, c.step, 0, c.train_s, c.eval_s), stacked,
                                     optimizer, [s.run.order.get_state() for s in slices]))
            if stop():
                raise Preempted(f"stopped after epoch {c.epoch} when asked; resumes from its checkpoint")
    for s in slices:
        if s.live:
            _finish(s, c)


def _guarded(s: _Slice, compute: Callable[[], Any]) -> Any:
    """``compute()`` of one slice's own code (its schedule, loss, clipping); None, and the slice ended failed,
    where it raises: one trial's failure is recorded, and the pack goes on."""
    try:
        return compute()
    except torch.cuda.OutOfMemoryError:
        raise  # the pack's size, not the trial: run_pack halves it
    except (Exception, SystemExit) as e:  # noqa: BLE001
        _fail(s, e)
        return None


def _lr(s: _Slice, step: int) -> float:
    """Slice k's learning rate for this step (an ended slice's takes no update: any value)."""
    lr = _guarded(s, lambda: float(s.base_lr * s.trial.schedule(step))) if s.live else None
    return 0.0 if lr is None else lr


def _loss(s: _Slice, out: Tensor, y: Tensor) -> Tensor:
    """Slice k's training loss (its techniques' penalties on its own model, whose weights are its slice's)."""
    def scalar() -> Tensor:
        loss = s.trial.loss(s.trial.model, out, y)
        if not isinstance(loss, Tensor) or loss.dim() != 0:
            got = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, Tensor) else type(loss).__name__
            raise TypeError(f"the training loss must be a 0-d tensor, got {got}")
        return loss

    loss = _guarded(s, scalar) if s.live else None
    return out.sum() * 0.0 if loss is None else loss  # an ended slice adds no gradient


def _backward(slices: list[_Slice], losses: Tensor, parts: list[Tensor] | None, optimizer: FusedOptimizer) -> None:
    """Every slice's gradient in one backward; where that raises (a slice's loss whose backward fails),
    each live slice's from its own loss (``parts``), so that the one that raises ends and the others step
    on. The graph is kept through the first pass for that, at no cost in a step that succeeds."""
    try:
        losses.sum().backward(retain_graph=parts is not None)
        return
    except torch.cuda.OutOfMemoryError:
        raise
    except (Exception, SystemExit):  # noqa: BLE001 - found again, slice by slice, below
        if parts is None:  # one shared cross-entropy: nothing of a slice's own to blame
            raise
    optimizer.zero_grad(set_to_none=False)  # what the failed pass had added
    for k, s in enumerate(slices):
        if s.live and _guarded(s, lambda: parts[k].backward(retain_graph=True) or True) is None:
            for p in s.trial.model.parameters():  # its part of the pass that raised, out of the others' way
                p.grad.zero_()


def _shared_cross_entropy(slices: list[_Slice]) -> float | None:
    """The label smoothing of a cross-entropy every slice trains on as it is (no penalty wraps it, no
    transform changes its targets); None otherwise, and each slice's loss is then computed on its own."""
    values = set()
    for s in slices:
        fn, t = s.trial.loss_fn, s.trial
        if (type(fn) is not nn.CrossEntropyLoss or fn.weight is not None or t.transform is not None
                or any(tech.uses("wrap_loss") for tech in t.techniques)):
            return None
        values.add(fn.label_smoothing)
    return values.pop() if len(values) == 1 else None


def _hooks(slices: list[_Slice], bound: list[dict[str, list[Callable[[], None]]]], event: str) -> None:
    """The step's hooks of every live slice; a slice whose hook raises ends (diverged or failed)."""
    for s, hooks in zip(slices, bound):
        if not s.live or not hooks[event]:
            continue
        try:
            for hook in hooks[event]:
                hook()
        except (Diverged, Exception, SystemExit) as e:  # noqa: BLE001 - one trial's end, the pack goes on
            _fail(s, e)


def _end_epoch(slices: list[_Slice], stacked: nn.Module, c: Cursor, epoch_train: float, loaders: tuple) -> None:
    """Close the epoch of every live slice: its callbacks' epoch figures, one evaluation of all, its row."""
    c.train_s += epoch_train
    trained: dict[int, dict[str, Any]] = {}
    for k, s in enumerate(slices):
        if s.live:
            trained[k] = {}
            _call(s, "on_epoch_trained", trained[k])
    live = [k for k, s in enumerate(slices) if s.live]
    if not live:
        return
    run0 = slices[live[0]].run
    start = run0.clock()
    with contextlib.ExitStack() as stack:
        for k in live:  # every slice's evaluation weights at once (an average), then one pass over the data
            with _its_stream(slices[k]):
                stack.enter_context(slices[k].hooks.evaluation(slices[k].run))
            slices[k].trial.model.eval()
        probe, val, test = loaders
        _, train_acc = evaluate_pack(stacked, probe, len(slices))
        val_loss, val_acc = evaluate_pack(stacked, val, len(slices))
        test_loss, test_acc = evaluate_pack(stacked, test, len(slices))
    epoch_eval = run0.clock() - start
    c.eval_s += epoch_eval
    profile_slices(stacked, {k: _probe(slices[k]) for k in live}, [s.dropout for s in slices])  # one forward
    for k in live:
        s = slices[k]
        metrics = {"train_acc": train_acc[k], "val_loss": val_loss[k], "val_acc": val_acc[k],
                   "test_loss": test_loss[k], "test_acc": test_acc[k]}
        try:
            with _its_stream(s):
                stop = close_epoch(s.run, s.hooks, trained[k], metrics, s.base_lr,  # its share of the pack's time
                                   epoch_train / len(live), epoch_eval / len(live))
        except (Diverged, Exception, SystemExit) as e:  # noqa: BLE001
            _fail(s, e)
            continue
        if stop is not None:
            _finish(s, c)


def _probe(s: _Slice) -> Probe | None:
    return next((cb.probe for cb in s.hooks.callbacks if isinstance(cb, Diagnostics)), None)


def _finish(s: _Slice, c: Cursor) -> None:
    """A slice whose training ended (its budget, early stopping): its final metrics, its on_end."""
    r = s.record
    shares = [sum(h[k] for h in r.history) for k in ("train_time", "eval_time")]  # of each epoch's pack time
    summarize_history(r, s.run.final_epoch or len(r.history), *shares, c.step)
    s.live = False
    try:
        s.hooks("on_end", s.run)
    except Exception as e:  # noqa: BLE001
        _fail(s, e)
    r.finished_at = _now()
