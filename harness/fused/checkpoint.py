"""A fused pack's checkpoint: one file for the pack (``harness.fused.pack``), written every epoch and when
the pack is asked to stop. It holds the stacked model and optimizer, the trial id of every slice, and per
slice its record so far, callbacks, schedule and random streams. Slices are put back by trial id, never by
position; a file that is not this pack's is ignored (each record says why), and one whose contents do not
fit raises, so that the pack starts over."""
from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import torch
from torch import Tensor, nn

from harness.engine import checkpoint as ckpt
from harness.fused.optim import FusedOptimizer
from harness.spec import Record
from harness.store.records import atomic_write
from harness.technique import Cursor

if TYPE_CHECKING:
    from harness.fused.pack import _Slice

FORMAT = 3  # 2: random states as plain data, read weights-only; 3: each slice's trial id


def pack_state(slices: list[_Slice], pid: str, cursor: Cursor, stacked: nn.Module, optimizer: FusedOptimizer,
               orders: list[Tensor]) -> dict[str, Any]:
    return {"format": FORMAT, "pack": pid, "trials": [s.spec.trial_id for s in slices], "cursor": vars(cursor),
            "model": stacked.state_dict(), "threads": torch.get_num_threads(),
            "optimizer": optimizer.state_dict(), "global": ckpt.global_rng_state(),
            # orjson writes the dataclass as Record.to_json's content (NaN as null) 150x faster: 4 ms a slice
            # an epoch was a third of a K=64 pack's checkpoint time
            "slices": [{"record": orjson.dumps(s.record).decode(), "live": s.live, "final_epoch": s.run.final_epoch,
                        "callbacks": s.hooks.state_dict(), "schedule": s.trial.schedule_state, "order": order,
                        "rng": s.run.rng.state(), "dropout": s.dropout.get_state()}
                       for s, order in zip(slices, orders)]}


def save_pack(path: Path, state: dict[str, Any]) -> None:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write(path, buffer.getvalue())  # a kill mid-write leaves the previous checkpoint whole


def restore_pack(path: Path, pid: str, slices: list[_Slice], stacked: nn.Module, optimizer: FusedOptimizer
                 ) -> Cursor | None:
    """Put a pack back from its checkpoint; None (and each record says why) when there is none usable. The
    saved slices are matched to these by trial id, never by position; one whose contents do not fit (a
    damaged cursor, tensors of another shape) raises, and ``_train`` starts the pack over."""
    if not path.exists():
        return None
    state, why = ckpt.load_file(path, "pack checkpoint")
    ids = [s.spec.trial_id for s in slices]
    ok = (isinstance(state, dict) and state.get("format") == FORMAT and state.get("pack") == pid
          and state.get("trials") == ids and len(state.get("slices", ())) == len(slices))
    why = why or f"pack checkpoint {path.name} is not this pack's, or not of its trials in this order; started over"
    if not ok:
        for s in slices:
            s.record.diagnostics["checkpoint"] = why
        return None
    stacked.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    cursor = ckpt.saved_cursor(state["cursor"])
    note = ckpt.threads_note(state.get("threads"), cursor.step)
    for s, saved in zip(slices, state["slices"]):
        record = Record.from_json(saved["record"])
        if record.trial_id != s.spec.trial_id:
            raise ValueError(f"slice of trial {s.spec.trial_id} holds the record of {record.trial_id}")
        record.environment = s.record.environment  # where it runs now (its threads too), as a trial alone's says
        s.record = s.run.record = record
        s.live, s.run.final_epoch, s.run.cursor = saved["live"], saved["final_epoch"], cursor
        if s.live:
            s.record.diagnostics["resumed_at_step"] = s.record.diagnostics.get("resumed_at_step", []) + [cursor.step]
            if note:
                s.record.diagnostics.setdefault("warnings", []).append(note)
        s.hooks.load_state_dict(saved["callbacks"])
        if s.trial.schedule_state is not None:
            s.trial.schedule_state.clear()
            s.trial.schedule_state.update(saved["schedule"])
        s.run.order.set_state(saved["order"])
        s.pending = {"rng": saved["rng"], "dropout": saved["dropout"], "global": state["global"]}
    return cursor
