"""Record storage: atomic writes, scans, the plan of a sweep."""
from harness.store.records import (
    Scan, atomic_write, clean_temp, read_plan, record_path, scan, write_plan, write_record,
)

__all__ = ["Scan", "atomic_write", "clean_temp", "read_plan", "record_path", "scan", "write_plan", "write_record"]
