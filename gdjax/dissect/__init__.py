"""Dissection: label every unit of some generator layers with the concept it matches best.

:func:`dissect` runs it; the pieces are the generate-once ``cache``, the counting ``passes``
over it with ``quantiles``, ``counts`` and ``topk``, and ``scores`` (IoU, IQR, labels).
"""

from gdjax.dissect.run import dissect

__all__ = ["dissect"]
