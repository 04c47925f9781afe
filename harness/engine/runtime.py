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

``torch_defaults`` (every trial and pack): torch keeps some settings per process (the default dtype and
device, grad mode, anomaly detection, deterministic algorithms, matmul precision, the thread count), and a
plugin that sets one would change every later trial of the same worker, failing or silently altering
trials that are not its own. Each trial starts from torch's defaults for dtype, device, grad mode, anomaly
detection and determinism (matmul precision and cudnn flags as the process had them, the thread count as
the launcher asks: ``execution.threads``), and what its code changed is put back after it and written in
its record's warnings.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import inspect
import contextlib
import sys
from types import FunctionType
from typing import Any, Callable, Iterator

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


def _device() -> str:
    return str(torch.get_default_device()) if hasattr(torch, "get_default_device") else "cpu"


def _set_device(device: str) -> None:
    torch.set_default_device(None if device == "cpu" else device)


def _set_anomaly(on: bool) -> None:
    torch.autograd.set_detect_anomaly(on, check_nan=torch.is_anomaly_check_nan_enabled())


def _set_anomaly_nan(on: bool) -> None:
    torch.autograd.set_detect_anomaly(torch.is_anomaly_enabled(), check_nan=on)


def _set_deterministic(on: bool) -> None:
    torch.use_deterministic_algorithms(on, warn_only=torch.is_deterministic_algorithms_warn_only_enabled())


def _set_warn_only(on: bool) -> None:
    torch.use_deterministic_algorithms(torch.are_deterministic_algorithms_enabled(), warn_only=on)


def _cudnn(name: str) -> tuple[Callable[[], Any], Callable[[Any], None]]:
    return lambda: getattr(torch.backends.cudnn, name), lambda v: setattr(torch.backends.cudnn, name, v)


# name: (read, write, torch's default); None as the default: the value the worker had set when the trial began
_SETTINGS: dict[str, tuple[Callable[[], Any], Callable[[Any], None], Any]] = {
    "default dtype": (torch.get_default_dtype, torch.set_default_dtype, torch.float32),
    "default device": (_device, _set_device, "cpu"),
    "grad mode": (torch.is_grad_enabled, torch.set_grad_enabled, True),
    "anomaly detection": (torch.is_anomaly_enabled, _set_anomaly, False),
    "anomaly detection's NaN check": (torch.is_anomaly_check_nan_enabled, _set_anomaly_nan, True),
    "deterministic algorithms": (torch.are_deterministic_algorithms_enabled, _set_deterministic, False),
    "deterministic algorithms' warn_only": (torch.is_deterministic_algorithms_warn_only_enabled, _set_warn_only,
                                            False),
    # speed settings a user may choose for the whole process (TF32, cudnn's autotuner) stay as found; what a
    # trial changes of them is put back all the same
    "float32 matmul precision": (torch.get_float32_matmul_precision, torch.set_float32_matmul_precision, None),
    "cudnn.deterministic": (*_cudnn("deterministic"), None),
    "cudnn.benchmark": (*_cudnn("benchmark"), None),
    "thread count": (torch.get_num_threads, torch.set_num_threads, None),
}


def _put_back(wanted: dict[str, Any]) -> list[str]:
    """Set each setting that differs from ``wanted``; what differed, as "name a → b" (found → set)."""
    changed = []
    for name, (read, write, _) in _SETTINGS.items():
        now = read()
        if now != wanted[name]:
            write(wanted[name])
            changed.append(f"{name} {now} → {wanted[name]}")
    return changed


@contextlib.contextmanager
def torch_defaults(threads: int | None = None) -> Iterator[list[str]]:
    """Run the block under torch's default process-wide settings and ``threads`` intra-op threads (None: the
    caller's), then give the caller its own back; the list it yields is filled, once the block ends, with a
    warning for each change found before the block and each one made inside it."""
    found = {name: read() for name, (read, _, _) in _SETTINGS.items()}
    wanted = {name: found[name] if default is None else default for name, (_, _, default) in _SETTINGS.items()}
    if threads is not None:  # the trial's execution setting, not a change found: no warning for it
        torch.set_num_threads(threads)
        wanted["thread count"] = torch.get_num_threads()
    warnings: list[str] = []
    before = _put_back(wanted)
    if before:
        warnings.append("torch's process-wide settings had been changed before the trial (by a plugin's import?) "
                        f"and were reset for it: {', '.join(before)}")
    try:
        yield warnings
    finally:
        inside = _put_back(wanted)
        if inside:
            warnings.append("the trial's code changed torch's process-wide settings, put back after it so that "
                            f"later trials run as theirs say: {', '.join(inside)}")
        _put_back(found)
