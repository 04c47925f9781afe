"""TrialSpec and Record: the plain data that crosses every arrow of the flow.

A TrialSpec is fully resolved (every default filled in) and canonical, so its ``trial_id``, a
hash of the canonical JSON plus the seed, is the same on every machine: finished trials are
skipped and a sweep resumes by running the same command again. A Record holds everything
needed to report on a trial without the code that made it.
"""
from __future__ import annotations

import copy
import functools
import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

SCHEMA_VERSION = 1

COMPLETED, DIVERGED, FAILED, INTERRUPTED = "completed", "diverged", "failed", "interrupted"
# Trained to ``budget.stop_after`` epochs of a longer run (a rung of successive halving) and
# stopped there, its checkpoint kept so that a promotion resumes it: its metrics are its last epoch's.
STOPPED = "stopped"
STATUSES = (COMPLETED, DIVERGED, FAILED, INTERRUPTED, STOPPED)
# A rerun would give the same outcome for these; failed and interrupted trials run again.
FINAL_STATUSES = (COMPLETED, DIVERGED, STOPPED)
# Head of the warning in the record of a trial resumed from a checkpoint written under another intra-op
# thread count (harness.engine.checkpoint.threads_note); the launchers print it as the trial ends.
THREADS_CHANGED = "resumed under another thread count"
WORKLOAD_KEYS = ("dataset", "model", "budget")  # what a trial trains on and for how long: never "the technique"

# Where the data lives, how batches reach the device and where curves are logged differ between
# machines and do not change the trial (both loader paths give identical batches: tests/test_pipeline.py).
# So do the process count of a data-parallel trial and the compile / memory-format switches (the
# same numbers up to float rounding). Mixed precision changes the numbers: it is part of the trial,
# but fp32 (the default, and the only precision before the switch existed) is left out of the hash
# so that results recorded before it keep their trial ids.
_NOT_IDENTITY = (("dataset", "root"), ("dataset", "download"), ("dataset", "checksum"), ("loader", None),
                 ("trackers", None), ("resources", None), ("compile", None), ("channels_last", None),
                 ("save_weights", None), ("diagnostics", None))


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def identity(config: dict[str, Any]) -> dict[str, Any]:
    """The part of a resolved config that makes the trial: what its id hashes and what regress matches."""
    ident = copy.deepcopy(config)
    for section, key in _NOT_IDENTITY:
        if key is None:
            ident.pop(section, None)
        elif isinstance(ident.get(section), dict):
            ident[section].pop(key, None)
    if ident.get("precision") == "fp32":
        ident.pop("precision")
    if isinstance(ident.get("budget"), dict) and ident["budget"].get("stop_after") is None:
        ident["budget"].pop("stop_after", None)  # as before the key existed: older ids stay
    return ident


def run_id_of(config: dict[str, Any], seed: int) -> str:
    """The trial id of the whole run a trial is a prefix of: the same as its own id, except for a
    trial stopped early by ``budget.stop_after`` (a rung of successive halving), whose run goes
    on to ``budget.epochs``. Checkpoints are kept by run, so that a promoted trial resumes."""
    budget = config.get("budget")
    if not isinstance(budget, dict) or budget.get("stop_after") is None:
        return trial_id_of(config, seed)
    return trial_id_of({**config, "budget": {**budget, "stop_after": None}}, seed)


def trial_id_of(config: dict[str, Any], seed: int) -> str:
    digest = hashlib.sha256(f"{canonical_json(identity(config))}|seed={seed}".encode())
    return digest.hexdigest()[:12]


@dataclass(frozen=True)
class TrialSpec:
    """One trial: a resolved config and a seed. ``axes`` names what varies in its suite."""

    suite: str
    config_json: str
    seed: int
    axes: tuple[tuple[str, Any], ...] = ()

    @classmethod
    def make(cls, suite: str, config: dict[str, Any], seed: int, axes: dict[str, Any] | None = None) -> "TrialSpec":
        return cls(suite, canonical_json(config), seed, tuple((axes or {}).items()))

    @property
    def config(self) -> dict[str, Any]:
        """A fresh copy each time: the spec itself never changes."""
        return json.loads(self.config_json)

    @functools.cached_property
    def trial_id(self) -> str:
        """Derived from the config and seed; cached, as sweeps look it up for every trial often."""
        return trial_id_of(self.config, self.seed)

    @functools.cached_property
    def run_id(self) -> str:
        """See ``run_id_of``: what its checkpoint is kept under."""
        return run_id_of(self.config, self.seed)

    def label(self) -> str:
        parts = [f"{k}={v}" for k, v in self.axes if v is not None]  # a setting another technique's space draws
        return " ".join(parts + [f"seed={self.seed}"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "trial_id": self.trial_id,
            "suite": self.suite,
            "seed": self.seed,
            "axes": dict(self.axes),
            "config": self.config,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "TrialSpec":
        spec = cls.make(d["suite"], d["config"], d["seed"], d.get("axes"))
        if "trial_id" in d and d["trial_id"] != spec.trial_id:
            raise ValueError(f"trial {d['trial_id']}: id does not match its config (edited by hand?)")
        return spec


@dataclass
class Record:
    """The outcome of one trial, as stored in ``results/<suite>/trials/<trial_id>.json``."""

    trial_id: str
    suite: str
    seed: int
    status: str
    config: dict[str, Any]
    axes: dict[str, Any]
    reason: str | None = None  # why a trial diverged or failed
    diverged_step: int | None = None
    history: list[dict[str, Any]] = field(default_factory=list)  # one dict per epoch
    steps: list[list[float]] = field(default_factory=list)  # [step, mean train loss of the window ending there]
    final: dict[str, Any] = field(default_factory=dict)
    best: dict[str, Any] = field(default_factory=dict)  # metrics at the epoch of best val_acc
    diagnostics: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    timing: dict[str, float] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    started_at: str | None = None
    finished_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"status {self.status!r} is not one of {STATUSES}")

    def to_json(self) -> str:
        return json.dumps(json_safe(asdict(self)), indent=1, sort_keys=True, allow_nan=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> "Record":
        data = orjson.loads(text)  # 3x the json module's speed; a report reads every record
        check_record_shape(data)
        return cls(**data)


def _kind(value: Any) -> str:
    return "null" if value is None else {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean"}.get(
        type(value), "a number" if isinstance(value, (int, float)) else type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# What a reader may rely on without looking: the type of every field, and numbers (or null, for a
# diverged loss) wherever the report does arithmetic. Axes and config values stay free-form JSON.
_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "trial_id": (str,), "suite": (str,), "seed": (int,), "status": (str,), "config": (dict,), "axes": (dict,),
    "reason": (str, type(None)), "diverged_step": (int, type(None)), "history": (list,), "steps": (list,),
    "final": (dict,), "best": (dict,), "diagnostics": (dict,), "dataset": (dict,), "timing": (dict,),
    "environment": (dict,), "started_at": (str, type(None)), "finished_at": (str, type(None)),
}
_REQUIRED = ("trial_id", "suite", "seed", "status", "config", "axes")


def check_record_shape(data: Any) -> None:
    """A record as read from disk, before it is trusted: a ``ValueError`` naming the first key path
    whose value has the wrong shape (``final.test_acc: expected a number or null, got a string``).
    One hand-edited or foreign file must cost its own trial, not every report of the folder."""
    def wrong(path: str, expected: str, value: Any) -> ValueError:
        return ValueError(f"{path}: expected {expected}, got {_kind(value)}")

    if not isinstance(data, dict):
        raise wrong("the record", "a mapping", data)
    if data.get("schema_version") != SCHEMA_VERSION:
        raise ValueError(f"schema_version {data.get('schema_version')!r}, expected {SCHEMA_VERSION}")
    unknown = sorted(set(data) - set(_FIELD_TYPES) - {"schema_version"})
    if unknown:
        raise ValueError(f"unknown field {unknown[0]!r}")
    for key in _REQUIRED:
        if key not in data:
            raise ValueError(f"{key}: missing")
    for key, value in data.items():
        types = _FIELD_TYPES.get(key, (int,))
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            raise wrong(key, " or ".join(_kind(t()) if t is not type(None) else "null" for t in types), value)
    if data["status"] not in STATUSES:
        raise ValueError(f"status: {data['status']!r} is not one of {', '.join(STATUSES)}")
    for key in ("model", "dataset", "budget"):
        if data["config"].get(key) is not None and not isinstance(data["config"][key], dict):
            raise wrong(f"config.{key}", "a mapping", data["config"][key])
    metrics = [("final", data.get("final", {})), ("best", data.get("best", {})), ("timing", data.get("timing", {}))]
    for i, row in enumerate(data.get("history", [])):
        if not isinstance(row, dict):
            raise wrong(f"history[{i}]", "a mapping", row)
        metrics.append((f"history[{i}]", row))
    for path, row in metrics:
        for k, v in row.items():
            if v is not None and not _is_number(v):
                raise wrong(f"{path}.{k}", "a number or null", v)
    for i, window in enumerate(data.get("steps", [])):
        if not (isinstance(window, list) and len(window) == 2 and _is_number(window[0])
                and (window[1] is None or _is_number(window[1]))):
            raise wrong(f"steps[{i}]", "a pair [step, loss]", window)


def json_safe(obj: Any) -> Any:
    """JSON has no NaN/Inf; a diverged loss is stored as null with the reason saying why."""
    if isinstance(obj, float) and (obj != obj or obj in (float("inf"), float("-inf"))):
        return None
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    return obj


def summarize_history(record: Record, final_epoch: int, train_s: float, eval_s: float, steps: int) -> None:
    """Fill ``final`` (metrics of ``final_epoch``), ``best`` (the best-validation epoch) and ``timing``."""
    final = record.history[final_epoch - 1]
    record.final = {k: v for k, v in final.items() if k not in ("train_time", "eval_time")}
    best = max(record.history, key=lambda h: (h["val_acc"], -h["epoch"]))
    record.best = {k: best[k] for k in ("epoch", "val_acc", "val_loss", "test_acc", "test_loss")}
    record.timing = {"train_s": train_s, "eval_s": eval_s, "steps": steps,
                     "train_step_ms": 1000 * train_s / max(steps, 1)}


def get_dotted(d: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        if isinstance(d, str):  # a component given by name only has no parameters set
            d = {"name": d}
        if not isinstance(d, dict) or part not in d:
            raise KeyError(dotted)
        d = d[part]
    return d


def component_name(value: Any) -> str | None:
    """How reports name a component: ``adam`` for ``adam`` or ``{name: adam, ...}``; a class named by import
    path by the class alone (``AdamWScheduleFree`` for ``{class: schedulefree.AdamWScheduleFree}`` or its
    resolved ``{name: schedulefree.AdamWScheduleFree}``). None for a value that names no component. A bare
    string is kept whole: an axis of plain strings (file names, ``optimizer.class`` paths) stays as written."""
    if isinstance(value, str):
        return value
    name = value.get("class", value.get("name")) if isinstance(value, dict) else None
    return name.rpartition(".")[2] if isinstance(name, str) else None
