"""gdjax: GAN Dissection in JAX/Flax.

Subpackages, one concern each:

* :mod:`gdjax.models` — the networks: ``proggan`` and ``stylegan2`` (generators), ``segmenter``
  (segmenters and the label API, with the ``upernet`` heads, ``resnet`` encoders, ``labels``
  vocabularies and ``resample`` operators), ``inception`` (FID features), ``checkpoint``
  (parameter files);
* :mod:`gdjax.dissect` — unit labels: the run (:func:`gdjax.dissect.dissect`), its settings and
  per-layer results, the generate-once ``cache``, counting ``passes`` with ``quantiles``,
  ``counts``, ``topk`` and ``scores``;
* :mod:`gdjax.report` — the one owner of ``dissect.json`` (``record``), unit ``strips``, the HTML
  ``page``, ``chart`` and ``plots``, and ``draw`` (pictures, palette);
* :mod:`gdjax.intervene` — edits as values, ``ace`` (causal effects), ``ablate`` (ablation
  experiments), ``causal`` (ACE vs IoU for every class), ``artifacts`` (units behind unrealistic
  images), ``context`` (where a class can be inserted);
* :mod:`gdjax.invert` — editing pictures the generator did not make (encoder, optimization,
  blending);
* :mod:`gdjax.app` — the paint web app (needs the ``[app]`` extra; not imported here);
* :mod:`gdjax.world` — the built-in world: ``scenes``, the shipped ``demo`` models, their
  training (``train_gan``, ``train_segmenter``) and ``quality``.

``progress`` (progress bars), ``compile_cache`` (compiled programs kept on disk) and
``distributed`` (several processes; ``python -m gdjax.launch``) serve them all.
The names a user needs most are re-exported here.
"""

from gdjax import dissect, intervene, invert, report
from gdjax.intervene import Edit, ablate, ace, apply_edit, causal
from gdjax.models import proggan, segmenter, stylegan2
from gdjax.models.proggan import Generator, sample_z
from gdjax.models.segmenter import Segmenter, class_score, segment
from gdjax.world import demo, scenes

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
    "invert",
    "proggan",
    "report",
    "sample_z",
    "scenes",
    "segment",
    "segmenter",
    "stylegan2",
]
