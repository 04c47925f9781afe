"""Trackers: curves logged live through Accelerate's tracker API, read back from the real files."""
import importlib.util

import pytest

from harness.engine import run_trial
from harness.errors import ConfigError
from harness.spec import COMPLETED, TrialSpec
from harness.suite import resolve_trial

RAW = {"dataset": {"name": "digits", "val_size": 200, "train_subset": 300}, "model": {"name": "mlp", "depth": 1, "width": 16},
       "optimizer": {"name": "adam", "lr": 0.003}, "budget": {"epochs": 3}, "batch_size": 50}


def test_tensorboard_gets_every_epoch_of_every_trial(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = TrialSpec.make("tb", resolve_trial({**RAW, "trackers": ["tensorboard"]}, "base"), 0, {"optimizer": "adam"})
    assert spec.trial_id == TrialSpec.make("tb", resolve_trial(RAW, "base"), 0, {"optimizer": "adam"}).trial_id
    record = run_trial(spec, tracking_dir=tmp_path)
    assert record.status == COMPLETED, record.reason
    runs = list((tmp_path / "tensorboard").iterdir())
    assert [r.name for r in runs] == [f"optimizer=adam seed=0 [{spec.trial_id}]"]
    events = EventAccumulator(str(runs[0]))
    events.Reload()
    logged = events.Scalars("val_acc")
    assert [e.step for e in logged] == [h["epoch"] for h in record.history]
    assert [e.value for e in logged] == pytest.approx([h["val_acc"] for h in record.history])
    assert {"train_loss", "test_acc", "lr"} <= set(events.Tags()["scalars"])


def test_a_tracker_without_its_package_is_an_error_at_load_time():
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(ConfigError, match=r"base.trackers\[0\]: tracker 'wandb' needs the wandb package.*pip install wandb"):
        resolve_trial({**RAW, "trackers": ["wandb"]}, "base")
    with pytest.raises(ConfigError, match=r"base.trackers\[0\]: expected one of 'tensorboard', 'wandb', 'mlflow'"):
        resolve_trial({**RAW, "trackers": ["neptune"]}, "base")
