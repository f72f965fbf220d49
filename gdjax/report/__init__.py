"""Dissection results as files a person can open: ``record`` (the one owner of
``dissect.json``), ``strips`` (unit image strips), ``page`` (``report.html``), ``chart`` (concept
bar chart), ``write`` (the whole report), ``plots`` (ablation curves), ``bars`` (bar charts with
intervals), ``compare`` (layers and models side by side, from their ``dissect.json``) and
``draw`` (pictures, grids, the label palette)."""

from gdjax.report.record import (
    add_ranking,
    eligible,
    layer,
    layer_record,
    ranking,
    read,
    report_record,
    unit_records,
    write_json,
)
from gdjax.report.strips import save_strip, seg_strip, unit_strip, write_strips
from gdjax.report.write import write_report

__all__ = [
    "add_ranking",
    "eligible",
    "layer",
    "layer_record",
    "ranking",
    "read",
    "report_record",
    "save_strip",
    "seg_strip",
    "unit_records",
    "unit_strip",
    "write_json",
    "write_report",
    "write_strips",
]
