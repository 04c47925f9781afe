"""Harness overhead: per-step training time of the harness vs a minimal hand-written PyTorch loop.

Same model (an MLP, same init), same data (held on the device), same batch size and optimizer, in one
process, alternating the two so that machine noise hits both alike. On CPU both run with
denormals flushed to zero, as the engine sets it (see harness/engine/loop.py), so the figure is
the cost of the harness's loop, not of a numeric mode. Prints the median per-step
times and ratio = hand / harness (1.0 = no overhead; the target is >= 0.97), and the same for the
harness with its per-layer diagnostics off (``diagnostics: {layers: false}``), which is what the
diagnostics cost per step.

    python benchmarks/overhead.py                            # digits, offline
    python benchmarks/overhead.py --dataset mnist --data-root DIR   # DIR holds MNIST/raw
    python benchmarks/overhead.py --model transformer        # the byte-level LM on the stdlib's source
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

from harness.data import load, make_loader
from harness.engine import evaluate, run_trial
from harness.spec import TrialSpec
from harness.suite import resolve_trial


def _mlp(data, width: int, depth: int) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    fan_in = data.train[0][0].numel()
    for _ in range(depth):
        layers += [nn.Linear(fan_in, width), nn.ReLU()]
        fan_in = width
    model = nn.Sequential(*layers, nn.Linear(fan_in, data.num_classes))
    for m in model.modules():  # the same init as the harness trial (kaiming_normal, zero bias)
        if isinstance(m, nn.Linear):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            nn.init.zeros_(m.bias)
    return model


def _transformer(data, width: int, depth: int) -> nn.Module:
    from harness.models.gpt import Transformer

    return Transformer(data.num_classes, data.in_shape[0], width, depth, 4, 0.0, 0.0, True, True, 0.0)


def hand_loop(data, width: int, depth: int, batch_size: int, lr: float, epochs: int, seed: int, device,
              make=_mlp) -> float:
    """The loop a researcher would write by hand; returns seconds per optimizer step.

    Like the harness (and any real training script) it evaluates on the validation and test sets
    after every epoch, outside the timed region: that keeps the cache state the steps see the same
    on both sides, which matters for a dataset of 9 steps per epoch."""
    torch.manual_seed(seed)
    x, y = data.inputs("train").to(device), data.train[1].to(device)  # normalized once, as by hand
    model = make(data, width, depth).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    g = torch.Generator().manual_seed(seed)
    steps, elapsed = 0, 0.0
    for _ in range(epochs):
        model.train()
        start = _sync(device)
        order = torch.randperm(len(y), generator=g).to(device)
        for i in range(0, len(y), batch_size):
            idx = order[i : i + batch_size]
            loss = F.cross_entropy(model(x.index_select(0, idx)), y.index_select(0, idx))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            steps += 1
        elapsed += _sync(device) - start
        for split in ("val", "test"):
            evaluate(model, make_loader(data, split, 1000, "device", device))
    return elapsed / steps


def _sync(device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--dataset", default="digits", choices=["digits", "mnist"])
    p.add_argument("--model", default="mlp", choices=["mlp", "transformer"],
                   help="transformer: the text dataset (context 64, 400 kB of the stdlib), 4 heads")
    p.add_argument("--data-root")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--width", type=int, default=256)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--epochs", type=int, default=0, help="per measurement (default: ~2000 steps)")
    p.add_argument("--repeats", type=int, default=15)
    args = p.parse_args()
    if args.data_root:
        os.environ["HARNESS_DATA_ROOT"] = args.data_root

    lm = args.model == "transformer"
    raw = {
        "dataset": {"name": "text", "max_bytes": 400_000} if lm else {"name": args.dataset},
        "model": ({"name": "transformer", "depth": args.depth, "width": args.width, "heads": 4} if lm else
                  {"name": "mlp", "depth": args.depth, "width": args.width, "activation": "relu"}),
        "init": "kaiming_normal", "norm": "none", "schedule": "constant",
        "optimizer": {"name": "momentum", "lr": 0.01, "momentum": 0.9},
        "batch_size": args.batch_size,
    }
    data_cpu = load(resolve_trial(raw, "bench")["dataset"])
    steps_per_epoch = -(-len(data_cpu.train[1]) // args.batch_size)
    epochs = args.epochs or max(1, round(2000 / steps_per_epoch))
    raw["budget"] = {"epochs": epochs}
    spec = TrialSpec.make("overhead", resolve_trial(raw, "bench"), seed=0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_flush_denormal(True)  # as the engine does on CPU, so both loops run alike
    data = data_cpu.to(device)

    # Warm-up both paths (allocator, kernels, imports), then alternate.
    make = _transformer if lm else _mlp
    hand_loop(data, args.width, args.depth, args.batch_size, 0.01, 1, 0, device, make)
    run_trial(TrialSpec.make("overhead", {**spec.config, "budget": {"epochs": 1, "max_steps": None}}, 0))
    hand, harness, plain = [], [], []
    no_layers = {**spec.config, "diagnostics": {**spec.config["diagnostics"], "layers": False}}

    def measure_harness(config: dict, seed: int) -> float:
        record = run_trial(TrialSpec.make("overhead", config, seed))
        assert record.status == "completed", record.reason
        return record.timing["train_s"] / record.timing["steps"]

    for r in range(args.repeats):
        # Rotate which goes first, so drift in machine speed does not favour one side.
        runs = [lambda: hand.append(hand_loop(data, args.width, args.depth, args.batch_size, 0.01, epochs, r, device,
                                              make)),
                lambda: harness.append(measure_harness(spec.config, r)),
                lambda: plain.append(measure_harness(no_layers, r))]
        for i in range(3):
            runs[(r + i) % 3]()
    ratios = sorted(a / b for a, b in zip(hand, harness))
    plain_ratios = sorted(a / b for a, b in zip(hand, plain))
    h, m = statistics.median(hand), statistics.median(harness)
    print(f"device={device} dataset={raw['dataset']['name']} batch={args.batch_size} {args.model} {args.depth}x{args.width} "
          f"threads={torch.get_num_threads()} steps/measurement={epochs * steps_per_epoch} repeats={args.repeats}")
    print(f"hand loop   : {1000 * h:.4f} ms/step  (runs: {', '.join(f'{1000 * t:.4f}' for t in hand)})")
    print(f"harness     : {1000 * m:.4f} ms/step  (runs: {', '.join(f'{1000 * t:.4f}' for t in harness)})")
    print(f"no layers   : {1000 * statistics.median(plain):.4f} ms/step  (diagnostics.layers false)")
    print(f"ratio hand/harness without the per-layer diagnostics = {statistics.median(plain_ratios):.3f} "
          f"(range {plain_ratios[0]:.3f}..{plain_ratios[-1]:.3f})")
    print(f"ratio hand/harness, median of {len(ratios)} paired runs = {statistics.median(ratios):.3f} "
          f"(range {ratios[0]:.3f}..{ratios[-1]:.3f}; target >= 0.97)")


if __name__ == "__main__":
    main()
