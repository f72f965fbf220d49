"""What a dissection computes: one frozen :class:`Settings`, written to ``settings.json``.

A run directory records its settings when it starts; a rerun with equal settings resumes, other
settings are refused (or, with ``overwrite``, replace the old run). Every field is checked when
the settings are made, and :meth:`Settings.check_models` checks them against the networks, so
bad input stops with one :class:`gdjax.errors.InputError` line before anything is written.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

from gdjax.errors import InputError

__all__ = ["PRESET", "PRESETS", "Settings"]


PRESET = "preset"  # a field left to the preset

# What each original computes (reference §3, §12); Settings fields left at PRESET take these.
PRESETS: dict[str, dict[str, Any]] = {
    "gandissect": dict(
        threshold="iqr", quantile_of="raw", padding="edge", downsample=2, iou="category",
        iou_threshold=0.05, iqr_threshold=0.01,
    ),
    "pnas": dict(
        threshold=0.01, quantile_of="upsampled", padding="zeros", downsample=4, iou="all",
        iou_threshold=0.04, iqr_threshold=None,
    ),
}  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything that decides a dissection's results.

    preset: ``'gandissect'`` (the ICLR original, the default) or ``'pnas'`` (its PNAS
      successor): the values of the fields below that are left at ``PRESET`` (see
      ``PRESETS``); a field given explicitly overrides the preset. The resolved values are
      what is recorded.
    layers: generator layers to dissect (empty names, as from ``layer4,``, are dropped).
    samples: latents dissected, ``sample_z(samples, seed)``; in IQR mode as many latents of
      ``train_seed`` choose the thresholds.
    threshold: ``'iqr'`` (each unit's threshold maximises the information quality ratio with
      its best label, reference §3.4) or a top fraction ``q`` in (0, 1) (level = the unit's
      ``1 - q`` quantile; the unit's label is then its IoU argmax).
    quantile_of: where a fixed threshold's quantile is taken: ``'raw'`` feature-map values at
      the layer's own resolution (gandissect, §3.1) or the ``'upsampled'`` values (PNAS, §12.7).
    padding: how activations are upsampled to the segmentation grid (half-pixel bilinear):
      ``'edge'`` clamps at the border (gandissect, §3.3), ``'zeros'`` fades to 0 there (PNAS,
      §12.3).
    downsample: the segmentation (and the statistics) grid is image size / ``downsample``
      (PNAS: 4, a 64x64 grid at 256 px).
    iou: IoU denominators, ``'category'`` (gandissect, §3.5) or ``'all'`` pixels (PNAS, §12.8).
    iou_threshold, iqr_threshold: a unit is interpretable when its label's IoU and IQR exceed
      them (gandissect 0.05 and 0.01, §3.6; PNAS 0.04 and no IQR condition: ``None``, §12.9).
    batch_size: images per network step (any positive number; rounded up to a multiple of
      ``micro`` x devices, the last batch padded); micro: images per device program.
    topk: top images kept per unit; strips: images shown per unit in the report.
    label0_quirk, ties_quirk: reproduce two quirks of the reference (§0.4, §9b.19).
    netname, generator, segmenter: what was dissected (names or paths, for the record).
    """

    layers: tuple[str, ...] = ("layer4",)
    preset: str = "gandissect"
    samples: int = 1000
    seed: int = 1
    train_seed: int = 2
    threshold: str | float = PRESET
    quantile_of: str = PRESET
    padding: str = PRESET
    downsample: int | str = PRESET
    iou: str = PRESET
    iou_threshold: float | str = PRESET
    iqr_threshold: float | str | None = PRESET
    batch_size: int = 32
    micro: int = 8
    topk: int = 8
    strips: int = 5
    label0_quirk: bool = False
    ties_quirk: bool = False
    netname: str = "generator"
    generator: str = ""
    segmenter: str = ""

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise InputError(f"preset must be one of {', '.join(PRESETS)}, got {self.preset!r}")
        for name, value in PRESETS[self.preset].items():
            if getattr(self, name) == PRESET:
                object.__setattr__(self, name, value)
        layers = (self.layers,) if isinstance(self.layers, str) else tuple(self.layers)
        layers = tuple(str(x).strip() for x in layers if str(x).strip())
        if not layers:
            raise InputError("no layer to dissect: give at least one, e.g. layer4")
        if len(set(layers)) != len(layers):
            raise InputError(f"layer listed twice: {', '.join(layers)}")
        object.__setattr__(self, "layers", layers)
        for name in ("samples", "batch_size", "micro", "topk", "downsample"):
            _positive_int(name, getattr(self, name))
        _int("strips", self.strips, 0)
        if self.strips > self.topk:
            raise InputError(f"strips {self.strips} exceeds topk {self.topk}")
        for name in ("seed", "train_seed"):
            _int(name, getattr(self, name), 0)
        object.__setattr__(self, "threshold", _threshold(self.threshold))
        for name, allowed in (("iou", ("category", "all")), ("quantile_of", ("raw", "upsampled")),
                              ("padding", ("edge", "zeros"))):  # fmt: skip
            if getattr(self, name) not in allowed:
                want = " or ".join(repr(a) for a in allowed)
                raise InputError(f"{name} must be {want}, got {getattr(self, name)!r}")
        for name in ("iou_threshold", "iqr_threshold"):
            value = getattr(self, name)
            if value is None and name == "iqr_threshold":
                continue  # no IQR condition
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{name} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a number >= 0, got {value!r}")
            object.__setattr__(self, name, float(value))

    @property
    def iqr_mode(self) -> bool:
        """Thresholds from the IQR search on a second latent set (else a fixed quantile)."""
        return self.threshold == "iqr"

    def check_models(self, layer_names: Sequence[str], image_size: int) -> None:
        """Raises :class:`InputError` if a layer is not one of ``layer_names`` or
        ``downsample`` does not divide the generator's ``image_size``."""
        bad = [name for name in self.layers if name not in layer_names]
        if bad:
            raise InputError(f"unknown layer {bad[0]!r}; valid layers: {', '.join(layer_names)}")
        if image_size % self.downsample:
            raise InputError(
                f"downsample {self.downsample} does not divide the image size {image_size}"
            )

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (``layers`` as a list); :meth:`from_json` inverts it."""
        out = dataclasses.asdict(self)
        out["layers"] = list(self.layers)
        return out

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Settings:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(record) - names)
        if unknown:
            raise InputError(f"unknown dissection setting {unknown[0]!r}")
        return cls(**record)


def _int(name: str, value, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{name} must be an integer, got {value!r}")
    if value < low:
        raise InputError(f"{name} must be >= {low}, got {value}")


def _positive_int(name: str, value) -> None:
    _int(name, value, 1)


def _threshold(value) -> str | float:
    """``'iqr'`` or a float in (0, 1), from a string or a number."""
    if isinstance(value, str):
        if value.strip().lower() == "iqr":
            return "iqr"
        try:
            value = float(value)
        except ValueError:
            raise InputError(
                f"threshold must be 'iqr' or a fraction in (0, 1), got {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value < 1:
        raise InputError(f"threshold must be 'iqr' or a fraction in (0, 1), got {value!r}")
    return float(value)
