"""Images/s of the on-device batch pipeline vs torchvision's DataLoader with per-sample transforms.

Both read the same CIFAR-shaped data (50,000 training images, 32x32x3, written in CIFAR-10's
on-disk format and loaded through torchvision) with the same augmentation: random crop with
4-pixel zero padding, horizontal flip, cutout 16 (DeVries & Taylor 2017), normalization.

- baseline: ``torchvision.datasets.CIFAR10`` + ``transforms.Compose`` per sample (PIL crop and
  flip, ToTensor, Normalize, a per-sample cutout), ``DataLoader(num_workers=--workers)``, the
  standard CIFAR recipe;
- harness: the stored uint8 splits on the device, ``make_loader`` + the ``augment`` and
  ``cutout`` regularizers' batch transforms, i.e. the code a trial runs.

The ratio (harness / baseline, same process, same data) is the figure; target >= 10 on a 2-core
CPU. With --model-steps N it also times N ResNet-20 training steps on the pipeline's batches and
prints the data share of a step (target on a GPU: < 5%).

    python benchmarks/data_pipeline.py                  # CPU, 2 DataLoader workers
    python benchmarks/data_pipeline.py --device cuda --model-steps 50
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/fakedata.py

from harness.components import REGULARIZERS  # noqa: E402
from harness.components.regularizers import RegContext  # noqa: E402
from harness.data import DATASETS, Rng, make_loader, place  # noqa: E402
from harness.data.datasets import _without_md5  # noqa: E402
from tests.fakedata import write_cifar10  # noqa: E402


class Cutout:
    """Per-sample cutout as in DeVries & Taylor's code: a size x size square, centre anywhere, clipped."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, img: torch.Tensor) -> torch.Tensor:
        _, h, w = img.shape
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.size // 2
        img[:, max(cy - half, 0): cy + half, max(cx - half, 0): cx + half] = 0
        return img


def _sync(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def baseline(root: Path, mean: list[float], std: list[float], batch: int, workers: int, epochs: int) -> float:
    from torchvision import transforms as T
    from torchvision.datasets import CIFAR10

    tf = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip(), T.ToTensor(), T.Normalize(mean, std),
                    Cutout(16)])
    dataset = _without_md5(CIFAR10)(str(root), train=True, transform=tf)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=workers,
                                         persistent_workers=workers > 0, drop_last=False)
    rates = []
    for epoch in range(epochs + 1):  # the first epoch starts the workers: not timed
        start, n = time.perf_counter(), 0
        for x, _ in loader:
            n += len(x)
        if epoch:
            rates.append(n / (time.perf_counter() - start))
    return statistics.median(rates)


def harness_pipeline(data, device: torch.device, batch: int, epochs: int):
    """Images/s of the harness path, and one epoch's batches-per-second for the model timing."""
    parts = [REGULARIZERS.build(REGULARIZERS.resolve(c, "r"), RegContext(10))
             for c in ({"name": "augment", "crop_padding": 4, "flip": True}, {"name": "cutout", "size": 16})]
    placed, mode, _ = place(data, device, "device")
    loader = make_loader(placed, "train", batch, mode, device, generator=torch.Generator().manual_seed(0))
    rng = Rng.seeded(0, device)

    def epoch():
        for x, y in loader:
            for p in parts:
                x, y = p.batch(x, y, rng)
            yield x, y

    for _ in epoch():  # warm-up: allocator, kernels
        pass
    rates = []
    for _ in range(epochs):
        start, n = _sync(device), 0
        for x, _ in epoch():
            n += len(x)
        rates.append(n / (_sync(device) - start))
    return statistics.median(rates), epoch


def model_share(epoch, device: torch.device, steps: int, batches_per_s: float) -> tuple[float, float]:
    """ms per ResNet-20 training step (data from the pipeline) and the data share of a step."""
    from harness.components import NORMS
    from harness.models import MODELS, ModelContext

    ctx = ModelContext(in_shape=(3, 32, 32), num_classes=10,
                       norm=lambda features, dims: NORMS.build(NORMS.resolve("batchnorm", "n"), features, dims))
    model = MODELS.build(MODELS.resolve({"name": "resnet", "depth": 20}, "m"), ctx).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    batches = epoch()
    done, start = 0, 0.0
    for x, y in batches:
        if done == 3:  # after warm-up steps
            start = _sync(device)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        done += 1
        if done == steps + 3:
            break
    step_ms = 1000 * (_sync(device) - start) / steps
    data_ms = 1000 / batches_per_s
    return step_ms, data_ms / step_ms


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes (cores on this machine: 2)")
    p.add_argument("--epochs", type=int, default=3, help="timed epochs per side (median)")
    p.add_argument("--model-steps", type=int, default=0, help="also time this many ResNet-20 steps")
    args = p.parse_args()
    device = torch.device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), per_batch=10_100, n_test=1000)  # 50,500: 50,000 train + 500 val
        data = DATASETS.build(DATASETS.resolve(
            {"name": "cifar10", "root": tmp, "val_size": 500, "checksum": False}, "dataset"))
        assert len(data.train[1]) == 50_000
        mean, std = data.meta["mean"], data.meta["std"]
        ours, epoch = harness_pipeline(data, device, args.batch_size, args.epochs)
        theirs = baseline(Path(tmp), mean, std, args.batch_size, args.workers, max(1, args.epochs - 1))
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}")
    print(f"DataLoader ({args.workers} workers, per-sample transforms): {theirs:10,.0f} images/s")
    print(f"harness on-device pipeline:                     {ours:10,.0f} images/s")
    print(f"ratio: {ours / theirs:.1f}x  (target >= 10x)")
    if args.model_steps:
        step_ms, share = model_share(epoch, device, args.model_steps, ours / args.batch_size)
        print(f"ResNet-20 step at batch {args.batch_size}: {step_ms:.1f} ms; data {100 * share:.1f}% of it "
              f"(target < 5% on a GPU)")


if __name__ == "__main__":
    main()
