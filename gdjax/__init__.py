"""gdjax: GAN Dissection in JAX/Flax.

Modules, one concept each: ``proggan`` (generator), ``segmenter`` (segmenters and the label
API), ``scenes`` (the built-in world), ``demo`` (its shipped models), ``dissect`` (unit
labels), ``stats`` / ``topk`` / ``iou`` / ``scores`` (streaming statistics, with the per-unit
loop of ``units``), ``report``, ``intervene`` (edits), ``ace`` (causal effects), ``ablate``
(ablation experiments), ``causal`` (ACE vs IoU for every class), ``compile_cache`` (compiled
programs kept on disk).
"""

from gdjax import (
    ablate,
    ace,
    causal,
    demo,
    dissect,
    intervene,
    proggan,
    report,
    scenes,
    scores,
    segmenter,
    stats,
)
from gdjax.intervene import Edit, apply_edit
from gdjax.proggan import Generator, sample_z
from gdjax.segmenter import Segmenter, class_score, segment

__version__ = "0.1.0"

__all__ = [
    "Edit",
    "Generator",
    "Segmenter",
    "ablate",
    "ace",
    "apply_edit",
    "causal",
    "class_score",
    "demo",
    "dissect",
    "intervene",
    "proggan",
    "report",
    "sample_z",
    "scenes",
    "scores",
    "segment",
    "segmenter",
    "stats",
]
