"""Interventions on generator units: edits as values (:mod:`gdjax.intervene.edits`, re-exported
here), average causal effects (``ace``), ablation experiments (``ablate``) and the ACE-vs-IoU
comparison over classes (``causal``)."""

from gdjax.intervene import ablate, ace, causal  # noqa: E402, I001  (after the edit names)
from gdjax.intervene.edits import (
    Edit,
    ablation,
    apply_edit,
    compose,
    generate,
    insertion,
    make,
    planes,
    pool_mask,
    prefix,
    stack,
    tail,
    unit_alpha,
)

__all__ = [
    "Edit",
    "ablate",
    "ablation",
    "ace",
    "apply_edit",
    "causal",
    "compose",
    "generate",
    "insertion",
    "make",
    "planes",
    "pool_mask",
    "prefix",
    "stack",
    "tail",
    "unit_alpha",
]
