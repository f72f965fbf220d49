"""Dissection results as files a person can open: ``record`` (the one owner of
``dissect.json``), ``strips`` (unit image strips), ``page`` (``report.html``), ``chart`` (concept
bar chart), ``plots`` (ablation curves) and ``draw`` (pictures, grids, the label palette)."""

from gdjax.report.record import (
    layer_record,
    report_record,
    save_stats,
    unit_records,
    write_json,
    write_report,
)
from gdjax.report.strips import save_strip, seg_strip, unit_strip

__all__ = [
    "layer_record",
    "report_record",
    "save_stats",
    "save_strip",
    "seg_strip",
    "unit_records",
    "unit_strip",
    "write_json",
    "write_report",
]
