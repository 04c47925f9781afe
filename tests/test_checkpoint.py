"""Checkpoints: a trial stopped mid-epoch or between epochs and resumed ends with the record of an
uninterrupted run (everything but wall-clock times), with every random stream and component state
restored; a torn checkpoint is ignored and the trial starts over, saying so."""
import pytest

from harness.engine import run_trial
from harness.engine.checkpoint import checkpoint_path
from harness.engine.loop import Checkpointing
from harness.spec import COMPLETED, INTERRUPTED, TrialSpec
from harness.suite import resolve_trial

# Every kind of state a resume must restore: the data order and augmentation streams (cutout,
# mixup), the global RNG (dropout), the optimizer's moments (Adam), a schedule that reads the
# validation metric (plateau), and early stopping's best weights.
RAW = {
    "dataset": {"name": "digits", "val_size": 200, "train_subset": 500},
    "model": {"name": "mlp", "depth": 2, "width": 32},
    "optimizer": {"name": "adam", "lr": 0.003},
    "schedule": {"name": "plateau", "patience": 0, "factor": 0.5, "metric": "val_acc"},
    "regularizers": [{"name": "dropout", "p": 0.2}, {"name": "mixup", "alpha": 0.4},
                     {"name": "early_stopping", "patience": 10, "metric": "val_acc"}],
    "budget": {"epochs": 4},
    "batch_size": 32,  # 16 batches an epoch: the step-loss windows (16 steps) align with epochs
}


def _spec(**overrides):
    return TrialSpec.make("t", resolve_trial({**RAW, **overrides}, "base"), 3, {})


def _stop_after(calls: int):
    """A stop() that says yes on its ``calls``-th question (asked once per step, and after each epoch)."""
    n = {"asked": 0}

    def stop() -> bool:
        n["asked"] += 1
        return n["asked"] == calls

    return stop


def _comparable(record):
    history = [{k: v for k, v in h.items() if not k.endswith("_time")} for h in record.history]
    diagnostics = {k: v for k, v in record.diagnostics.items() if k != "resumed_at_step"}
    return history, record.steps, record.final, record.best, diagnostics, record.timing["steps"]


@pytest.mark.parametrize("stops", [[7], [17], [7, 40]], ids=["mid-epoch", "after-epoch-1", "twice"])
def test_a_resumed_trial_ends_with_the_uninterrupted_record(tmp_path, stops):
    spec = _spec()
    whole = run_trial(spec)
    assert whole.status == COMPLETED, whole.reason
    path = checkpoint_path(tmp_path, spec.trial_id)
    for calls in stops:
        part = run_trial(spec, checkpointing=Checkpointing(path, _stop_after(calls)))
        assert part.status == INTERRUPTED and "resumes from its checkpoint" in part.reason
        assert path.exists()
    resumed = run_trial(spec, checkpointing=Checkpointing(path))
    assert resumed.status == COMPLETED, resumed.reason
    assert _comparable(resumed) == _comparable(whole)
    assert len(resumed.diagnostics["resumed_at_step"]) == len(stops)


def test_a_stop_after_17_questions_is_the_end_of_the_first_epoch(tmp_path):
    spec = _spec()
    path = checkpoint_path(tmp_path, spec.trial_id)
    part = run_trial(spec, checkpointing=Checkpointing(path, _stop_after(17)))
    assert [h["epoch"] for h in part.history] == [1] and "after epoch 1" in part.reason


def test_a_torn_checkpoint_is_ignored_and_the_trial_starts_over(tmp_path):
    spec = _spec(regularizers=[], schedule="constant")
    whole = run_trial(spec)
    path = checkpoint_path(tmp_path, spec.trial_id)
    run_trial(spec, checkpointing=Checkpointing(path, _stop_after(20)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])  # a writer killed halfway (were writes not atomic)
    resumed = run_trial(spec, checkpointing=Checkpointing(path))
    assert resumed.status == COMPLETED
    assert "did not load" in resumed.diagnostics["checkpoint"] and "started over" in resumed.diagnostics["checkpoint"]
    assert "resumed_at_step" not in resumed.diagnostics
    assert resumed.history[-1]["test_acc"] == whole.history[-1]["test_acc"]


def test_another_trials_checkpoint_is_not_used(tmp_path):
    a, b = _spec(), _spec(batch_size=50)
    path = checkpoint_path(tmp_path, b.trial_id)
    run_trial(a, checkpointing=Checkpointing(path, _stop_after(5)))  # a's state under b's name
    resumed = run_trial(b, checkpointing=Checkpointing(path))
    assert resumed.status == COMPLETED and "not this trial's" in resumed.diagnostics["checkpoint"]


TECHNIQUES = {
    "ema": {"norm": "batchnorm", "regularizers": [{"name": "ema", "decay": 0.9}]},
    "swa": {"norm": "batchnorm", "regularizers": [{"name": "swa", "start": 0.25}]},
    "lookahead": {"regularizers": [{"name": "lookahead", "k": 3}]},
    "sam": {"regularizers": [{"name": "sam", "rho": 0.05}, {"name": "dropout", "p": 0.2}]},
    "schedule-free": {"norm": "batchnorm", "optimizer": {"name": "adamw_schedulefree", "lr": 0.01}, "regularizers": []},
}


@pytest.mark.parametrize("name", TECHNIQUES)
def test_a_technique_with_state_resumes_to_the_uninterrupted_record(tmp_path, name):
    from pathlib import Path

    from harness.plugins import load_plugin

    load_plugin(str(Path(__file__).resolve().parents[1] / "examples" / "plugins" / "schedulefree_plugin.py"))
    spec = _spec(schedule="constant", budget={"epochs": 3}, **TECHNIQUES[name])
    whole = run_trial(spec)
    assert whole.status == COMPLETED, whole.reason
    path = checkpoint_path(tmp_path, spec.trial_id)
    for calls in (11, 30):  # mid-epoch 1, then mid-epoch 2
        part = run_trial(spec, checkpointing=Checkpointing(path, _stop_after(calls)))
        assert part.status == INTERRUPTED, part.reason
    resumed = run_trial(spec, checkpointing=Checkpointing(path))
    assert resumed.status == COMPLETED, resumed.reason
    assert _comparable(resumed) == _comparable(whole)


class _Payload:
    """Unpickling this creates a file: what a planted checkpoint could do with any code."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


def test_a_planted_checkpoint_runs_nothing_and_the_trial_or_pack_starts_over(tmp_path):
    import torch

    from harness.engine.checkpoint import FORMAT
    from harness.fused.plan import pack_id
    from harness.launch.trial import execute, execute_unit

    marker = tmp_path / "pwned"
    planted = {"format": FORMAT, "payload": _Payload(marker)}
    torch.save(planted, tmp_path / "probe.pt")
    torch.load(tmp_path / "probe.pt", weights_only=False)  # the payload works when unpickled in full ...
    assert marker.exists()
    marker.unlink()
    spec = _spec(budget={"epochs": 1})
    results = tmp_path / "res"
    path = checkpoint_path(results, spec.run_id)
    path.parent.mkdir(parents=True)
    torch.save({**planted, "trial_id": spec.run_id}, path)
    record = execute(spec, results)
    assert not marker.exists()  # ... and not when the harness reads it
    assert record.status == COMPLETED and "holds more than tensors and plain data" in record.diagnostics["checkpoint"]
    pack = [_spec(budget={"epochs": 1}, optimizer={"name": "adam", "lr": lr}, regularizers=[]) for lr in (0.001, 0.003)]
    torch.save({**planted, "pack": pack_id(pack)}, checkpoint_path(results, pack_id(pack)))
    records = execute_unit(pack, results)
    assert not marker.exists()
    assert [r.status for r in records] == [COMPLETED, COMPLETED]
    assert all("holds more than tensors" in r.diagnostics["checkpoint"] for r in records)


@pytest.mark.parametrize("damage", ["tensors", "cursor"])
def test_a_checkpoint_that_no_longer_fits_starts_the_trial_over_and_says_why(tmp_path, damage):
    """Tensors of another shape (the model's code changed under the same trial id) or a damaged cursor: the
    trial starts over from its initial state, saying why, and ends as an uninterrupted run (issue 29.12: the
    trial was recorded failed)."""
    import torch

    spec = _spec(regularizers=[], schedule="constant")
    whole = run_trial(spec)
    path = checkpoint_path(tmp_path, spec.trial_id)
    run_trial(spec, checkpointing=Checkpointing(path, _stop_after(20)))
    state = torch.load(path, weights_only=True)
    if damage == "tensors":
        key = next(k for k in state["model"] if k.endswith("weight"))
        state["model"][key] = torch.zeros(7, 3)
    else:
        state["cursor"]["epoch"] = 0
    torch.save(state, path)
    resumed = run_trial(spec, checkpointing=Checkpointing(path))
    assert resumed.status == COMPLETED, resumed.reason
    why = resumed.diagnostics["checkpoint"]
    assert "does not fit this trial" in why and "started over" in why
    assert "resumed_at_step" not in resumed.diagnostics
    assert _comparable(resumed)[:2] == _comparable(whole)[:2]
