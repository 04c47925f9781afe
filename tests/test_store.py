"""Records on disk: atomic writes, unreadable files, plans."""
import os

import pytest

from harness.spec import COMPLETED, FAILED, Record, trial_id_of
from harness.store import atomic_write, clean_temp, record_path, scan, write_record


def _record(x="abc", status=COMPLETED):
    """A record whose id is its config's and seed's, as every record the harness writes."""
    return Record(trial_id_of({"x": x}, 0), "s", 0, status, {"x": x}, {"optimizer": "sgd"}, final={"test_acc": 0.5})


def test_write_and_scan_round_trip(tmp_path):
    a, b = _record("a"), _record("b", FAILED)
    write_record(tmp_path, a)
    write_record(tmp_path, b)
    found = scan(tmp_path)
    assert set(found.records) == {a.trial_id, b.trial_id}
    assert found.done(a.trial_id) and not found.done(b.trial_id)  # failed trials run again
    assert found.records[a.trial_id].final == {"test_acc": 0.5}


def test_unreadable_record_is_reported_not_used(tmp_path):
    write_record(tmp_path, a := _record("a"))
    record_path(tmp_path, "bad").write_text('{"trial_id": "bad", "status": "compl')
    found = scan(tmp_path)
    assert set(found.records) == {a.trial_id}
    assert [p.name for p in found.corrupt] == ["bad.json"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "trials" / "a.json"
    atomic_write(path, "old")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError):
        atomic_write(path, "new")
    assert path.read_text() == "old"
    assert [p.name for p in path.parent.iterdir()] == ["a.json"]


def test_stale_temp_files_are_cleaned(tmp_path):
    (tmp_path / "trials").mkdir()
    (tmp_path / "trials" / ".tmp-123").write_text("partial")
    clean_temp(tmp_path)
    assert not list((tmp_path / "trials").iterdir())


def test_records_reject_unknown_status_and_nan_is_stored_as_null():
    with pytest.raises(ValueError):
        _record(status="done")
    r = _record()
    r.final["train_loss"] = float("nan")
    assert '"train_loss": null' in r.to_json()
