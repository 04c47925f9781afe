"""Records on disk: atomic writes, unreadable files, plans."""
import os

import pytest

from harness.spec import COMPLETED, FAILED, Record
from harness.store import atomic_write, clean_temp, record_path, scan, write_record


def _record(tid="abc", status=COMPLETED):
    return Record(tid, "s", 0, status, {"x": 1}, {"optimizer": "sgd"}, final={"test_acc": 0.5})


def test_write_and_scan_round_trip(tmp_path):
    write_record(tmp_path, _record("a"))
    write_record(tmp_path, _record("b", FAILED))
    found = scan(tmp_path)
    assert set(found.records) == {"a", "b"}
    assert found.done("a") and not found.done("b")  # failed trials run again
    assert found.records["a"].final == {"test_acc": 0.5}


def test_unreadable_record_is_reported_not_used(tmp_path):
    write_record(tmp_path, _record("a"))
    record_path(tmp_path, "bad").write_text('{"trial_id": "bad", "status": "compl')
    found = scan(tmp_path)
    assert set(found.records) == {"a"}
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
