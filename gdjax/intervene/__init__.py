"""Interventions on generator units: edits as values (:mod:`gdjax.intervene.edits`, re-exported
here), average causal effects (``ace``), ablation experiments (``ablate``), the ACE-vs-IoU
comparison over classes (``causal``), artifact units (``artifacts``) and where a class can be
inserted (``context``)."""

from gdjax.intervene import ablate, ace, artifacts, causal, context  # noqa: E402, I001
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
    "artifacts",
    "causal",
    "compose",
    "context",
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
