"""Training speed of one trial under the suite's speed switches: precision (fp32, bf16, fp16),
compile (torch.compile) and channels_last, each a ratio against plain fp32 in the same process.

The trial is ResNet-20 on CIFAR-shaped data (written in CIFAR-10's on-disk format and loaded
through torchvision; random pixels, so accuracy means nothing here), through ``run_trial``: the
code a sweep runs, Accelerate's autocast and loss scaling included. The figure is the record's
own train time per step of the last epoch (the first epoch carries compilation and cuDNN autotuning).

    python benchmarks/speed_switches.py --device cuda              # on a GPU (the `device` tool)
    python benchmarks/speed_switches.py --n 2000 --batch-size 128   # a CPU smoke run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # for tests/fakedata.py

from harness.engine import run_trial  # noqa: E402
from harness.spec import TrialSpec  # noqa: E402
from harness.suite import resolve_trial  # noqa: E402
from tests.fakedata import write_cifar10  # noqa: E402

VARIANTS = [  # (label, switches)
    ("fp32", {}),
    ("fp32 channels_last", {"channels_last": True}),
    ("bf16", {"precision": "bf16"}),
    ("bf16 channels_last", {"precision": "bf16", "channels_last": True}),
    ("fp16 (loss scaling)", {"precision": "fp16"}),
    ("fp32 compile", {"compile": True}),
    ("bf16 compile channels_last", {"precision": "bf16", "compile": True, "channels_last": True}),
]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--n", type=int, default=20_000, help="training images")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--only", nargs="*", help="labels of the variants to run (default: all)")
    args = p.parse_args()
    if args.device == "cpu":
        VARIANTS[:] = [v for v in VARIANTS if "fp16" not in v[0]]  # fp16 autocast needs a GPU
    with tempfile.TemporaryDirectory() as tmp:
        write_cifar10(Path(tmp), per_batch=(args.n + 500) // 5, n_test=500)
        base = {
            "dataset": {"name": "cifar10", "root": tmp, "val_size": 500, "checksum": False},
            "model": {"name": "resnet", "depth": 20}, "norm": "batchnorm",
            "optimizer": {"name": "nesterov", "lr": 0.1, "momentum": 0.9},
            "regularizers": [{"name": "augment", "crop_padding": 4, "flip": True}],
            "batch_size": args.batch_size, "budget": {"epochs": args.epochs},
        }
        rows = []
        for label, switches in VARIANTS:
            if args.only and label not in args.only:
                continue
            spec = TrialSpec.make("speed", resolve_trial({**base, **switches}, "base"), 0, {})
            record = run_trial(spec)
            if record.status != "completed":
                print(f"{label:<28} {record.status}: {record.reason}")
                continue
            last = record.history[-1]
            steps = record.timing["steps"] / len(record.history)
            ms = 1000 * last["train_time"] / steps
            rows.append((label, ms, record.history[0]["train_time"], last["train_loss"]))
    print(f"device {args.device} ({torch.cuda.get_device_name() if args.device == 'cuda' else 'cpu'}), "
          f"torch {torch.__version__}, ResNet-20, batch {args.batch_size}, {args.n} images")
    fp32 = next((ms for label, ms, *_ in rows if label == "fp32"), None)
    for label, ms, first, loss in rows:
        ratio = f"{fp32 / ms:5.2f}x" if fp32 else "  -  "
        print(f"{label:<28} {ms:8.2f} ms/step  speed-up {ratio}  first epoch {first:6.1f} s  train loss {loss:.3f}")


if __name__ == "__main__":
    main()
