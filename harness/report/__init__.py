"""Reports: records → tidy tables → statistics over seeds → Markdown, HTML, LaTeX, CSV and plots."""
from harness.report.aggregate import collect, summarize
from harness.report.stats import t_interval
from harness.report.write import FORMATS, write_report

__all__ = ["FORMATS", "collect", "summarize", "t_interval", "write_report"]
