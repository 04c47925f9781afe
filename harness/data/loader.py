"""Epochs of batches: from tensors held on the training device, or through a DataLoader.

**Device path** (the default when the data fits): the stored splits (uint8 images) sit on the
training device whole; a batch is an index gather plus normalization there, with no worker
processes, no collation and no host-to-device copy per step.

**DataLoader path** (data that does not fit on the device, or ``loader.mode: dataloader``): the
splits stay in host memory and ``torch.utils.data.DataLoader`` gathers each batch (in
``loader.workers`` processes, pinned when the device is a GPU) and copies it over; it is
normalized on the device.

Both paths draw an epoch's order from the same seeded CPU generator, so they give identical
batches, and the choice does not change a trial's results (nor its id).

**Sharding.** An epoch is cut into global batches of ``batch_size``; process ``rank`` of
``world`` takes its contiguous part of each (``tensor_split``), so the union over processes is
exactly the epoch, every process takes the same number of steps, and the mean of the processes'
gradients is the gradient of the global batch (for equal parts). A last global batch smaller than
``world`` is merged into the one before, so no process gets an empty batch.
"""
from __future__ import annotations

import dataclasses
import math
import multiprocessing
import sys
from dataclasses import dataclass
from typing import Iterator, Literal

import torch
from torch.utils.data import DataLoader, Dataset

from harness.data.base import DataSplits, Normalizer

Mode = Literal["auto", "device", "dataloader"]
Batch = tuple[torch.Tensor, torch.Tensor]
# A split whose normalized inputs take at most this much (MNIST's training split: 172 MiB; not
# CIFAR-10's 614 MiB) is normalized once, not per batch: the normalizer is elementwise, so the
# batches are bit-identical, and the per-batch gather-convert-scale is ~20 us of a 1.5-3 ms step
# (digits and MNIST MLPs on the 2-core CPU).
NORMALIZE_ONCE_BYTES = 256 * 2**20


@dataclass(frozen=True)
class Shard:
    rank: int = 0
    world: int = 1


def epoch_batches(n: int, batch_size: int, generator: torch.Generator | None, world: int = 1) -> list[torch.Tensor]:
    """The global batches of one epoch as index tensors; shuffled when a generator is given.

    The permutation is drawn on the CPU so that a seed gives the same order on every device."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    parts = list(order.split(batch_size))
    if len(parts) > 1 and len(parts[-1]) < world:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


def count_batches(n: int, batch_size: int, world: int = 1) -> int:
    """How many batches ``epoch_batches`` cuts an epoch into."""
    steps = math.ceil(n / batch_size)
    return steps - 1 if steps > 1 and n - (steps - 1) * batch_size < world else steps


class DeviceLoader:
    """Batches gathered from stored tensors on the training device and normalized there."""

    mode = "device"

    def __init__(self, x: torch.Tensor, y: torch.Tensor, normalize: Normalizer, batch_size: int, *,
                 generator: torch.Generator | None = None, shard: Shard = Shard()) -> None:
        if normalize.w is None and x.numel() * 4 <= NORMALIZE_ONCE_BYTES:
            x, normalize = normalize(x), _as_is_inputs
        self.x, self.y, self.normalize, self.batch_size = x, y, normalize, batch_size
        self.generator, self.shard = generator, shard

    def __len__(self) -> int:
        return count_batches(len(self.y), self.batch_size, self.shard.world)

    def __iter__(self) -> Iterator[Batch]:
        if self.generator is None and self.shard.world == 1:
            for start in range(0, len(self.y), self.batch_size):  # in order: views, no gather
                end = start + self.batch_size
                yield self.normalize(self.x[start:end]), self.y[start:end]
            return
        world, rank, device = self.shard.world, self.shard.rank, self.x.device
        for batch in epoch_batches(len(self.y), self.batch_size, self.generator, world):
            idx = (batch if world == 1 else batch.tensor_split(world)[rank]).to(device)
            yield self.normalize(self.x.index_select(0, idx)), self.y.index_select(0, idx)


def _as_is_inputs(x: torch.Tensor) -> torch.Tensor:
    return x


class _Rows(Dataset):
    """Stored rows fetched a batch at a time (``__getitems__``): one gather, not one call per sample."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> Batch:
        return self.x[i], self.y[i]

    def __getitems__(self, indices: list[int]) -> Batch:
        idx = torch.as_tensor(indices)
        return self.x.index_select(0, idx), self.y.index_select(0, idx)


_FORK = "fork" if "fork" in multiprocessing.get_all_start_methods() else None


def _as_is(batch: Batch) -> Batch:
    return batch


class _ShardSampler:
    """A batch sampler giving this process's part of each global batch of an epoch."""

    def __init__(self, n: int, batch_size: int, generator: torch.Generator | None, shard: Shard) -> None:
        self.n, self.batch_size, self.generator, self.shard = n, batch_size, generator, shard

    def __len__(self) -> int:
        return count_batches(self.n, self.batch_size, self.shard.world)

    def __iter__(self) -> Iterator[list[int]]:
        for batch in epoch_batches(self.n, self.batch_size, self.generator, self.shard.world):
            yield batch.tensor_split(self.shard.world)[self.shard.rank].tolist()


class HostLoader:
    """Batches from host memory through a DataLoader, moved to the device and normalized there."""

    mode = "dataloader"

    def __init__(self, x: torch.Tensor, y: torch.Tensor, normalize: Normalizer, batch_size: int, *,
                 device: torch.device, generator: torch.Generator | None = None, shard: Shard = Shard(),
                 workers: int = 0) -> None:
        self.normalize, self.device = normalize, device
        self.loader = DataLoader(
            _Rows(x, y), batch_sampler=_ShardSampler(len(y), batch_size, generator, shard), collate_fn=_as_is,
            num_workers=workers, pin_memory=device.type == "cuda", persistent_workers=workers > 0,
            # Fork even inside a spawned pool worker (whose default is spawn, which re-imports
            # torch in every loader worker: seconds per trial). Loader workers only index host
            # tensors, never CUDA, so forking them is safe.
            multiprocessing_context=_FORK if workers > 0 else None,
        )

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        for x, y in self.loader:
            yield self.normalize(x.to(self.device, non_blocking=True)), y.to(self.device, non_blocking=True)


Loader = DeviceLoader | HostLoader


def _free_device_bytes(device: torch.device) -> int | None:
    """Free memory of an accelerator; None for the CPU, where the data already sits in memory."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return None


def place(data: DataSplits, device: torch.device, mode: Mode = "auto",
          device_fraction: float = 0.5) -> tuple[DataSplits, str, str | None]:
    """Put the splits where the loaders read them: (splits, chosen mode, why it was chosen).

    ``auto`` keeps everything on the device unless the stored splits take more than
    ``device_fraction`` of the device's free memory (the model, activations and optimizer need
    the rest); then it falls back to the DataLoader path and says so."""
    why = None
    if mode == "auto":
        free = _free_device_bytes(device)
        if free is not None and data.nbytes > device_fraction * free:
            mode = "dataloader"
            why = (f"dataset {data.meta['name']} takes {data.nbytes / 2**20:.1f} MiB stored, more than "
                   f"{device_fraction:g} of the {free / 2**20:.1f} MiB free on {device}: using the DataLoader path")
            print(f"harness: {why}", file=sys.stderr)
        else:
            mode = "device"
    if mode == "device":
        return data.to(device), mode, why
    return dataclasses.replace(data, normalize=data.normalize.to(device)), mode, why


def make_loader(data: DataSplits, split: str, batch_size: int, mode: str, device: torch.device, *,
                generator: torch.Generator | None = None, shard: Shard = Shard(), workers: int = 0,
                limit: int | None = None) -> Loader:
    """A loader over ``split`` (its first ``limit`` samples when given) of splits placed by ``place``."""
    x, y = getattr(data, split)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    if mode == "device":
        return DeviceLoader(x, y, data.normalize, batch_size, generator=generator, shard=shard)
    return HostLoader(x, y, data.normalize, batch_size, device=device, generator=generator, shard=shard,
                      workers=workers)
