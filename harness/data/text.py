"""``text``: byte-level next-token prediction over a UTF-8 corpus, for language-model workloads.

A sample is ``context`` consecutive bytes and its target the same window shifted by one byte
(x = b[i : i+T], y = b[i+1 : i+T+1]), so the model predicts every next byte of the window (a
causal model sees only the bytes before each). The vocabulary is the 256 byte values: no tokenizer
to version, and the loss per byte in nats is ln 2 times the bits per byte that language-model papers
report (``bits_per_byte``). The corpus is cut by position, never shuffled across the cut: the first
``1 - val_fraction - test_fraction`` of its bytes train, the next slice validates, the last tests,
so no window of the held-out text was seen in training. Training windows start every ``stride``
bytes (the loader shuffles their order each epoch); held-out windows do not overlap.

The corpus is ``path`` (a UTF-8 file, or a folder whose ``*.txt``, ``*.md`` and ``*.py`` files are read
in sorted order), or by default the Python standard library's own source: the ``*.py`` files directly
under ``sysconfig``'s ``stdlib`` folder, sorted by name, read until ``max_bytes``. Every machine has it
offline, but it differs between Python versions, so the record names the version, the files, and the
corpus's sha256 (``meta``): two records that agree on those trained on the same bytes.
"""
from __future__ import annotations

import hashlib
import math
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

if TYPE_CHECKING:
    import torch

from harness.data.base import DATASETS, DataMissing, DataSplits, Normalizer
from harness.registry import Range

VOCAB = 256
SUFFIXES = (".txt", ".md", ".py")


def bits_per_byte(loss_nats: float) -> float:
    """A byte-level model's mean cross-entropy in nats as bits per byte."""
    return loss_nats / math.log(2)


def _files(path: str | None) -> tuple[list[Path], str]:
    """The corpus's files in reading order, and how the record names where they came from."""
    if path is None:
        root = Path(sysconfig.get_paths()["stdlib"])
        return sorted(root.glob("*.py")), f"python {sys.version.split()[0]} stdlib ({root})"
    p = Path(path).expanduser()
    if p.is_file():
        return [p], str(p)
    if p.is_dir():
        return sorted(f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES), str(p)
    raise DataMissing(f"dataset text: {path}: no such file or folder")


def corpus(path: str | None, max_bytes: int) -> tuple[bytes, dict[str, Any]]:
    """The corpus's first ``max_bytes`` bytes and what the record says of them."""
    files, source = _files(path)
    parts, size, used = [], 0, 0
    for f in files:
        if size >= max_bytes:
            break
        data = f.read_bytes()
        data.decode("utf-8")  # a file that is not text is bad input, named, rather than trained on
        parts.append(data[: max_bytes - size])
        size += len(parts[-1])
        used += 1
    text = b"".join(parts)
    if not text:
        raise DataMissing(f"dataset text: {source}: no text to read")
    return text, {"source": source, "files": used, "bytes": len(text),
                  "sha256": hashlib.sha256(text).hexdigest()}


def _windows(data: torch.Tensor, context: int, stride: int) -> tuple[torch.Tensor, torch.Tensor]:
    import torch
    starts = torch.arange(0, len(data) - context, stride)
    if len(starts) == 0:
        raise DataMissing(f"dataset text: a split of {len(data)} bytes holds no window of {context + 1}")
    idx = starts[:, None] + torch.arange(context + 1)[None, :]
    windows = data[idx]
    return windows[:, :-1].contiguous(), windows[:, 1:].contiguous()


def _compatible(trial: dict[str, Any]) -> str | None:
    d = trial["dataset"]
    if d["val_fraction"] + d["test_fraction"] >= 0.5:
        return f"val_fraction + test_fraction must leave most of the corpus for training, got " \
               f"{d['val_fraction'] + d['test_fraction']:g}"
    return None


Fraction = Annotated[float, Range(gt=0, lt=0.5)]


@DATASETS.register("text", compatible=_compatible, num_classes=VOCAB, train_size=None)
def text(
    *, path: str | None = None, context: Annotated[int, Range(ge=2)] = 64, stride: Annotated[int, Range(ge=1)] = 64,
    max_bytes: Annotated[int, Range(ge=1000)] = 1_000_000, val_fraction: Fraction = 0.05,
    test_fraction: Fraction = 0.05,
) -> DataSplits:
    """Byte-level next-token prediction over a UTF-8 file or folder (default: Python's stdlib source)."""
    import torch
    raw, source = corpus(path, max_bytes)
    data = torch.frombuffer(bytearray(raw), dtype=torch.uint8).long()
    n_val, n_test = round(len(data) * val_fraction), round(len(data) * test_fraction)
    n_train = len(data) - n_val - n_test
    train = _windows(data[:n_train], context, stride)
    val = _windows(data[n_train:n_train + n_val], context, context)
    test = _windows(data[n_train + n_val:], context, context)
    counts = torch.bincount(data[:n_train], minlength=VOCAB).double()
    p = counts[counts > 0] / counts.sum()
    meta = {"name": "text", "num_classes": VOCAB, "classes": [], "shape": [context], "n_train": len(train[0]),
            "n_val": len(val[0]), "n_test": len(test[0]), "preprocess": "none", "storage": "int64",
            "context": context, "unit": "byte", **source,
            # the loss a model that knows only byte frequencies would reach: a language model must beat it
            "unigram_bits_per_byte": float(-(p * p.log2()).sum())}
    return DataSplits(train, val, test, Normalizer("tokens"), meta)
