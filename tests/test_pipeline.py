"""The batch pipeline: identical batches on both paths, shards that partition each epoch,
seeded per-sample augmentation, and the automatic choice of path."""
import json

import pytest
import torch

from harness.data import DATASETS, Rng, Shard, make_loader, place
from harness.data import augment as ops
from harness.data import loader as loader_mod
from harness.data.base import Normalizer
from harness.engine import run_trial
from harness.spec import COMPLETED, TrialSpec
from harness.suite import resolve_trial

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def digits():
    return DATASETS.build(DATASETS.resolve({"name": "digits"}, "d"))


def _epoch(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


@pytest.mark.parametrize("workers", [0, 2])
def test_device_and_dataloader_paths_give_identical_batches(digits, workers):
    device = make_loader(digits, "train", 64, "device", CPU, generator=torch.Generator().manual_seed(3))
    host = make_loader(digits, "train", 64, "dataloader", CPU, generator=torch.Generator().manual_seed(3),
                       workers=workers)
    assert type(device).__name__ == "DeviceLoader" and type(host).__name__ == "HostLoader"
    for _ in range(2):  # two epochs: each draws its own order from the same generator state
        a, b = _epoch(device), _epoch(host)
        assert len(a) == len(b) == len(device) == 18
        for (xa, ya), (xb, yb) in zip(a, b):
            assert xa.dtype == torch.float32 and torch.equal(xa, xb) and torch.equal(ya, yb)
    # batches are the stored uint8 rows, normalized: together they are exactly the training split
    xs = torch.cat([x for x, _ in a])
    ys = torch.cat([y for _, y in a])
    assert sorted(ys.tolist()) == sorted(digits.train[1].tolist())
    assert torch.allclose(xs.sum(0), digits.inputs("train").sum(0), atol=1e-2)


@pytest.mark.parametrize("n, batch, world", [(103, 10, 3), (101, 10, 3), (64, 16, 2), (7, 100, 2)])
def test_shards_partition_every_epoch_with_equal_step_counts(n, batch, world):
    x = torch.arange(n, dtype=torch.uint8 if n < 256 else torch.int32).view(n, 1)
    y = torch.arange(n)
    identity = Normalizer("standardize", mul=torch.ones(1), add=torch.zeros(1))
    for epoch_seed in (0, 1):
        shards = [
            make_loader_from(x, y, identity, batch, epoch_seed, Shard(rank, world)) for rank in range(world)
        ]
        epochs = [_epoch(s) for s in shards]
        steps = {len(e) for e in epochs}
        assert len(steps) == 1 and steps == {len(shards[0])}  # every process takes the same number of steps
        seen = [int(v) for e in epochs for _, yb in e for v in yb]
        assert sorted(seen) == list(range(n))  # the union of the shards is the epoch, no sample twice
        assert all(len(yb) > 0 for e in epochs for _, yb in e)
        for step in range(len(epochs[0])):  # within a global batch the parts differ by at most one
            sizes = [len(e[step][1]) for e in epochs]
            assert max(sizes) - min(sizes) <= 1


def make_loader_from(x, y, normalize, batch, seed, shard):
    return loader_mod.DeviceLoader(x, y, normalize, batch, generator=torch.Generator().manual_seed(seed), shard=shard)


def test_augmentation_is_per_sample_and_the_same_seed_gives_the_same_draws():
    x = torch.randn(256, 3, 16, 16)

    def chain(rng):
        out = ops.cutout(ops.random_flip(ops.random_crop(x, 4, rng), rng), 8, rng)
        return ops.mixup(out, torch.arange(256) % 10, 0.2, 10, rng)

    a, b, c = chain(Rng.seeded(7)), chain(Rng.seeded(7)), chain(Rng.seeded(8))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    # cutout: one hole per image, at many different places (per-sample, not per-batch)
    holes = ops.cutout(torch.ones(256, 1, 16, 16), 4, Rng.seeded(0)) == 0
    assert len({tuple(h.nonzero()[0].tolist()) for h in holes[:, 0]}) > 50
    # a saved stream state replays the same draws (what a checkpoint relies on)
    rng = Rng.seeded(3)
    state = rng.state()
    first = ops.random_crop(x, 4, rng)
    rng.set_state(state)
    assert torch.equal(first, ops.random_crop(x, 4, rng))


def test_the_pipelines_stream_does_not_depend_on_the_global_rng():
    x = torch.randn(64, 3, 8, 8)
    torch.manual_seed(0)
    a = ops.random_crop(x, 2, Rng.seeded(1))
    torch.manual_seed(99)
    torch.rand(1000)
    assert torch.equal(a, ops.random_crop(x, 2, Rng.seeded(1)))


def _trial(mode, **extra):
    raw = {
        "dataset": {"name": "digits", "val_size": 100, "train_subset": 300},
        "model": {"name": "mlp", "depth": 1, "width": 32}, "optimizer": {"name": "momentum", "lr": 0.05},
        "budget": {"epochs": 2}, "batch_size": 32, 
        "regularizers": [{"name": "augment", "crop_padding": 1, "flip": True, "brightness": 0.1},
                         {"name": "cutout", "size": 3}, {"name": "mixup", "alpha": 0.4}],
        "loader": {"mode": mode, **extra},
    }
    return TrialSpec.make("pipe", resolve_trial(raw, "base"), 0)


def _curves(record):
    return [{k: v for k, v in h.items() if not k.endswith("_time")} for h in record.history]


def test_rerun_and_either_loader_path_give_the_same_trial():
    device, again, host = run_trial(_trial("device")), run_trial(_trial("device")), run_trial(_trial("dataloader"))
    assert device.status == host.status == COMPLETED, (device.reason, host.reason)
    assert _curves(device) == _curves(again)  # same seed: identical batches and augmentations
    assert _curves(device) == _curves(host)  # the path changes neither the results...
    assert _trial("device").trial_id == _trial("dataloader").trial_id  # ...nor the trial's identity
    assert device.dataset["pipeline"] == "device" and host.dataset["pipeline"] == "dataloader"


def test_auto_falls_back_to_the_dataloader_when_the_data_does_not_fit(digits, monkeypatch, capsys):
    # A CPU holds the data already, so only an accelerator's free memory decides; stand in a small one.
    monkeypatch.setattr(loader_mod, "_free_device_bytes", lambda device: 100_000)
    placed, mode, why = place(digits, CPU, "auto", device_fraction=0.5)
    assert mode == "dataloader" and placed.train[0].device == CPU
    assert "takes 0.1 MiB stored, more than 0.5 of the 0.1 MiB free" in why and "DataLoader" in capsys.readouterr().err
    monkeypatch.setattr(loader_mod, "_free_device_bytes", lambda device: 10**9)
    assert place(digits, CPU, "auto")[1] == "device"
    monkeypatch.setattr(loader_mod, "_free_device_bytes", lambda device: 1000)
    assert place(digits, CPU, "device")[1] == "device"  # explicit choices are kept


@pytest.mark.slow
def test_pool_workers_can_run_dataloader_workers_of_their_own(tmp_path):
    from conftest import TINY, harness_cli

    suite = tmp_path / "tiny.yaml"
    suite.write_text(TINY.replace("base:\n", "base:\n  loader: {mode: dataloader, workers: 2}\n"))
    out = harness_cli("run", suite, "--results", tmp_path / "res", "--workers", "2")
    assert out.returncode == 0, out.stderr
    records = [json.loads(p.read_text()) for p in (tmp_path / "res" / "tiny" / "trials").glob("*.json")]
    assert len(records) == 4 and all(r["status"] == COMPLETED for r in records)
    assert all(r["dataset"]["pipeline"] == "dataloader" for r in records)
