"""Reports: records → tables with confidence intervals and learning-curve plots."""
from harness.report.aggregate import collect, summarize, t_interval
from harness.report.write import write_report

__all__ = ["collect", "summarize", "t_interval", "write_report"]
