"""The whole report of a dissection as files: each layer's ``bargraph.png``, ``dissect.json``
and ``report.html`` (the strips are written as the results come, :mod:`.strips`)."""

from __future__ import annotations

import os

from gdjax.report import chart, page, record

__all__ = ["write_report"]


def write_report(outdir: str, rec: dict) -> str:
    """Write the files for ``rec`` (:func:`gdjax.report.record.report_record`); returns the
    path of ``report.html``."""
    categories = sorted({s["cat"] for layer in rec["layers"] for s in layer["labels"]})
    for layer in rec["layers"]:
        path = os.path.join(outdir, layer["dirname"], layer["bargraph"])
        chart.bar_chart(layer["labels"], categories, path)
    record.write_json(outdir, rec)
    return page.write_html(outdir, rec)
