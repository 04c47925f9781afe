"""Reports: records → tidy tables → statistics over seeds → Markdown, HTML, LaTeX, CSV and plots.

These names load on first use: they bring in pandas, scipy and matplotlib (about a second), which
``harness verify``, importing only ``harness.report.claims``, does not need."""
from __future__ import annotations

__all__ = ["FORMATS", "collect", "summarize", "t_interval", "write_report"]


def __getattr__(name: str):
    if name in ("collect", "summarize"):
        from harness.report import aggregate as module
    elif name == "t_interval":
        from harness.report import stats as module
    elif name in ("FORMATS", "write_report"):
        from harness.report import write as module
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(module, name)
