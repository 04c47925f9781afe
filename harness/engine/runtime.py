"""Process-wide settings a trial runs under on the CPU, and keeping ``torch._dynamo`` out of fused packs.

``tune_cpu`` (every CPU trial and pack, ``harness.engine.loop`` and ``harness.fused.pack``):

- Denormal floats (below ~1e-38) slow x86 arithmetic several-fold; gradients of a trained net produce
  them, and which seed hits them is luck. Flushed to zero, they change no outcome and make CPU step
  times comparable across trials (measured: up to 25% per step on an MNIST MLP).
- glibc serves each allocation over its mmap threshold (128 KiB at first) with fresh pages from the
  kernel and gives them back when the tensor is freed, so a layer's output of a few MB costs a page
  fault per 4 KiB every time it is computed. A fixed threshold of 32 MiB, and trimming only above
  1 GiB free, keep freed memory in the heap for the next step. Measured here: a stacked MLP's forward
  at K=64 on 300 samples 28-34 ms before, 13-17 ms after; a backward ``bmm`` of 1 MB output 832 µs
  against 350 µs.
  (PyTorch's CPU tuning guide makes the same point by recommending jemalloc or tcmalloc.)

``defer_dynamo`` (fused packs): ``torch.optim`` wraps ``Optimizer.add_param_group``, ``zero_grad``,
``state_dict``, ``load_state_dict`` and its functional updates in ``torch._disable_dynamo``, which
imports ``torch._dynamo`` (1.7 s here) at the wrapped function's first call and then runs it through
``torch._dynamo.disable``. A pack builds each trial's torch optimizer but steps its own fused one, so
it needs none of this; the wrapper caches the disabled function on the wrapped one, and
``defer_dynamo`` fills that cache with the plain function. (A trial alone still imports dynamo: the
built-in optimizers' ``step`` imports it unconditionally.) ``restore_dynamo`` empties the cache again
before a ``torch.compile``. On a torch whose wrapper this module does not recognize, nothing changes.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import sys
from types import FunctionType
from typing import Any, Iterator

import torch

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (glibc malloc.h)
MMAP_THRESHOLD = 32 * 2**20  # glibc's largest (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 2**30
_tuned: dict[str, Any] | None = None


def tune_cpu() -> dict[str, Any]:
    """Flush denormals and keep freed memory in the heap (glibc); what was set, for the record's environment."""
    global _tuned
    torch.set_flush_denormal(True)
    if _tuned is None:
        _tuned = {"flush_denormal": True, "malloc": None}
        name = ctypes.util.find_library("c") if sys.platform.startswith("linux") else None
        try:
            libc = ctypes.CDLL(name) if name else None
            if libc is not None and hasattr(libc, "mallopt") and \
                    libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and \
                    libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1:
                _tuned["malloc"] = (f"glibc mmap threshold {MMAP_THRESHOLD >> 20} MiB, "
                                    f"trimmed above {TRIM_THRESHOLD >> 20} MiB free")
        except OSError:  # no glibc (musl, macOS): the allocator stays as it is
            pass
    return dict(_tuned)


_CACHE = "__dynamo_disable"  # torch._compile._disable_dynamo's attribute on the wrapped function
_deferred: list[FunctionType] = []


def _closure(fn: FunctionType) -> dict[str, object]:
    out = {}
    for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or ()):
        try:
            out[name] = cell.cell_contents
        except ValueError:  # an empty cell
            pass
    return out


def _plain(candidate: object, code: object) -> Iterator[FunctionType]:
    """The functions behind ``candidate`` where it is, or closes over, a ``_disable_dynamo`` wrapper."""
    if not isinstance(candidate, FunctionType):
        return
    for fn in (candidate, *(v for v in _closure(candidate).values() if isinstance(v, FunctionType))):
        if fn.__code__ is code:
            plain = _closure(fn).get("fn")
            if isinstance(plain, FunctionType):
                yield plain


def defer_dynamo() -> None:
    """torch.optim's dynamo-disabling wrappers call straight through, importing nothing (unless
    ``torch._dynamo`` is imported already)."""
    if _deferred or "torch._dynamo" in sys.modules:
        return
    try:
        code = torch._compile._disable_dynamo(lambda: None).__code__  # a wrapper; calling it would import
    except Exception:  # noqa: BLE001 - another torch: leave it be
        return
    places: list[Any] = [torch.optim.Optimizer]
    places += [m for name, m in sorted(sys.modules.items()) if name.startswith("torch.optim.") and m is not None]
    for place in places:
        for _, member in inspect.getmembers(place, inspect.isfunction):
            for plain in _plain(member, code):
                if _CACHE not in plain.__dict__:
                    setattr(plain, _CACHE, plain)
                    _deferred.append(plain)


def restore_dynamo() -> None:
    """torch's own behaviour back: the wrappers import ``torch._dynamo`` and disable it from their next call."""
    while _deferred:
        plain = _deferred.pop()
        if plain.__dict__.get(_CACHE) is plain:
            delattr(plain, _CACHE)
