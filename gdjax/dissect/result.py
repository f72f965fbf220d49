"""What dissection measures for one layer: :class:`Levels` (each unit's threshold) and
:class:`LayerResult` (everything the report is made from), saved as ``<layer>/stats.npz``."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from gdjax import rundir

__all__ = ["IQR_FIELDS", "LayerResult", "Levels"]

IQR_FIELDS = ("max_iqr", "max_iqr_level", "max_iqr_quantile", "max_iqr_iou")


class Levels(NamedTuple):
    """Each unit's threshold, found on the threshold set.

    levels: float32 ``[C]``.
    label: int64 ``[C]``, the best-IQR label that chose the level (IQR mode), else ``None``
      (a fixed quantile: the label is then the IoU argmax on the main set).
    search: in IQR mode ``{name: [L, C]}`` for :data:`IQR_FIELDS` (the search's best IQR per
      label and unit, and its level, top fraction and IoU there), else ``None``.
    """

    levels: np.ndarray
    label: np.ndarray | None = None
    search: dict[str, np.ndarray] | None = None


class LayerResult(NamedTuple):
    """One layer's dissection (``C`` units, ``L`` labels, ``G`` categories, ``k`` top images).

    levels: float32 ``[C]`` each unit's threshold; label: int64 ``[C]`` each unit's label.
    iou, iqr: float64 ``[L, C]`` IoU and information quality ratio of every (label, unit).
    top_values, top_indices: ``[k, C]`` the units' largest spatial maxima and their images.
    intersection ``[L, C]``, active ``[G, C]``, label_size ``[L]``, domain ``[G]``: the counts
      the IoU is made of (:class:`gdjax.dissect.scores.Overlap`).
    search: :attr:`Levels.search` (IQR mode) or ``None``.
    """

    levels: np.ndarray
    label: np.ndarray
    iou: np.ndarray
    iqr: np.ndarray
    top_values: np.ndarray
    top_indices: np.ndarray
    intersection: np.ndarray
    active: np.ndarray
    label_size: np.ndarray
    domain: np.ndarray
    search: dict[str, np.ndarray] | None = None

    def save(self, path: str) -> str:
        """Write ``path`` (``.npz``, one array per field, ``search`` fields by their names)
        through a temporary file, so the file exists only when complete."""
        arrays = {k: v for k, v in self._asdict().items() if k != "search"}
        return rundir.write_npz(path, arrays | (self.search or {}))

    @classmethod
    def load(cls, path: str) -> LayerResult:
        with np.load(path) as f:
            arrays = dict(f)
        search = {k: arrays.pop(k) for k in IQR_FIELDS if k in arrays}
        return cls(**arrays, search=search or None)
