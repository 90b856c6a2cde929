"""Run reports: report.json, report.md, PNG figures, and the multi-run table of `hiclr report`."""

from hiclr.report.assemble import assemble
from hiclr.report.pretrain_curve import write_pretrain_curve
from hiclr.report.writer import read_report, render_markdown, write_report

__all__ = ["assemble", "read_report", "render_markdown", "write_pretrain_curve", "write_report"]
