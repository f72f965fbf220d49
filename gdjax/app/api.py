"""The paint server's requests: pydantic models of the original GANPaint ``/api/generate`` body
and their decoding into one composed edit of the served layer (reference §6).

A generate request is ``{project, ids | zs, interventions, return_urls}``; each intervention is
``{ablations: [{layer, unit, alpha=1, value=0}], mask: {shape, bitbounds, bitstring},
maskpooling: 'max' | 'mean'}``. Decoding follows the reference:

* an intervention sets, per listed unit, ``alpha`` and ``value`` over the whole map (entries
  with ``alpha == value == 0`` are skipped, a unit listed twice keeps its last entry);
* its mask, an image-space ``[h, w]`` array, is max- (default) or mean-pooled to the layer's
  ``H x W`` with adaptive bins and multiplies the alpha plane; no mask means the whole map;
* a mask's ``bitstring`` is a PNG data URL (painted = alpha > 0 with an alpha channel, else
  red < 255) or a string of ``'0'``/``'1'`` filling ``bitbounds [y0, x0, y1, x1]`` row by row
  inside a zero canvas of ``shape [h, w]``; ``shape`` defaults to the PNG's size (256 x 256
  for bit strings) and ``bitbounds`` to the whole canvas;
* interventions are composited alpha-over in order, as :func:`gdjax.intervene.compose`.

Ours: ``POST /api/upload`` (:class:`UploadRequest`, a PNG or JPEG data URL read by
:func:`decode_picture` with :mod:`gdjax.invert.image`'s checks) registers an uploaded picture
under an id from :data:`UPLOAD_ID0` up, which ``ids`` then accept like a latent id; an edit of it
is shown on the picture itself outside :func:`region`, the painted pixels.

Everything here is NumPy on small arrays (``[H, W, C]``), so a request of any number of strokes
and units becomes two planes of one fixed shape and the compiled generator never retraces.
Differences from the reference, all on malformed input: a bit string holds only ``'0'`` and
``'1'`` and must fill its box exactly, alphas lie in ``[0, 1]``, values are finite, and any
problem is a 4xx naming the field instead of a server error.
"""

from __future__ import annotations

import base64
import binascii
import functools
import io
import math
import re
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from gdjax.errors import InputError
from gdjax.invert import image as imagelib

__all__ = [
    "MAX_IDS",
    "Ablation",
    "GenerateRequest",
    "Intervention",
    "Mask",
    "Spec",
    "UploadRequest",
    "decode_mask",
    "decode_picture",
    "intervention_planes",
    "planes",
    "pool",
    "region",
]

MAX_IDS = 16  # images per generate request
MAX_ID = 10_000  # latent ids index the seed-1 latent set (kept in memory: 20 MB at 512-d)
UPLOAD_ID0 = MAX_ID  # uploaded pictures get ids from here up
MAX_UPLOAD = 16 * 2**20  # characters of an uploaded picture's data URL
MAX_SIDE = 4096  # largest mask canvas side
MAX_INTERVENTIONS = 256
MAX_ABLATIONS = 4096
DEFAULT_CANVAS = (256, 256)  # the reference's mask canvas when nothing says otherwise
_DATA_URL = re.compile(r"^(?:data:)?image/\w+;base64,")
_PICTURE_URL = re.compile(r"^data:image/(png|jpeg|jpg);base64,", re.IGNORECASE)


class Spec(NamedTuple):
    """What a request is checked against: the served layer, its units, its ``(H, W)`` and the
    generator's latent size."""

    layer: str
    num_units: int
    size: tuple[int, int]
    zdim: int


class _Model(BaseModel):
    # The reference's clients send fields we do not use; accept and ignore them.
    model_config = ConfigDict(extra="ignore")


class Ablation(_Model):
    """One unit's edit: ``x -> x (1 - alpha) + value alpha`` (``None`` means the default)."""

    layer: str
    unit: int = Field(ge=0)
    alpha: float | None = Field(default=1.0, ge=0.0, le=1.0)
    value: float | None = 0.0

    @field_validator("value")
    @classmethod
    def _finite(cls, v):
        if v is not None and not math.isfinite(v):
            raise ValueError("value must be finite")
        return v


class Mask(_Model):
    """An image-space mask: a PNG data URL or a ``'0'/'1'`` string placed at ``bitbounds``."""

    shape: list[int] | None = Field(default=None, min_length=0, max_length=2)
    bitbounds: list[int] | None = Field(default=None, min_length=0, max_length=4)
    bitstring: str = Field(max_length=MAX_SIDE * MAX_SIDE)

    @field_validator("shape")
    @classmethod
    def _shape(cls, v):
        if v and (len(v) != 2 or not all(1 <= s <= MAX_SIDE for s in v)):
            raise ValueError(f"shape must be [h, w] with sides in 1..{MAX_SIDE}")
        return v or None

    @field_validator("bitbounds")
    @classmethod
    def _bounds(cls, v):
        if v and (len(v) != 4 or v[0] < 0 or v[1] < 0 or v[2] <= v[0] or v[3] <= v[1]):
            raise ValueError("bitbounds must be [y0, x0, y1, x1] with 0 <= y0 < y1, 0 <= x0 < x1")
        return v or None


class Intervention(_Model):
    """Units set over a masked region (the whole map without a mask)."""

    ablations: list[Ablation] = Field(default_factory=list, max_length=MAX_ABLATIONS)
    mask: Mask | None = None
    maskpooling: Literal["max", "mean"] = "max"


class GenerateRequest(_Model):
    """``POST /api/generate``: images for latent ``ids`` (the seed-1 set, as the dissection;
    ids from :data:`UPLOAD_ID0` up are uploaded pictures) or explicit latents ``zs``, under
    ``interventions``. ``segmentation`` (ours) also returns
    each image's segmentation; ``return_urls`` is accepted and ignored (images always come as
    data URLs)."""

    project: str
    ids: list[int] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    zs: list[list[float]] | None = Field(default=None, min_length=1, max_length=MAX_IDS)
    interventions: list[Intervention] | None = Field(default=None, max_length=MAX_INTERVENTIONS)
    return_urls: bool | int | None = False
    segmentation: bool = False

    @field_validator("ids")
    @classmethod
    def _ids(cls, v):
        if v is not None and not all(i >= 0 for i in v):
            raise ValueError(
                f"ids must lie in 0..{MAX_ID - 1} (latents) or be uploaded pictures' ids "
                f"({UPLOAD_ID0} up)"
            )
        return v

    @model_validator(mode="after")
    def _one_source(self):
        if (self.ids is None) == (self.zs is None):
            raise ValueError("give exactly one of 'ids' and 'zs'")
        return self


class UploadRequest(_Model):
    """``POST /api/upload`` (ours): ``image``, a PNG or JPEG data URL of an RGB picture (any
    size from 8 px; centre-cropped to a square and resized to the generator's resolution)."""

    project: str
    image: str = Field(max_length=MAX_UPLOAD)


def decode_picture(url: str, resolution: int) -> np.ndarray:
    """``[R, R, 3]`` float32 in ``[-1, 1]`` from a PNG or JPEG data URL, with the checks of
    :func:`gdjax.invert.image.from_pil` (RGB only: no grayscale, no alpha, at least 8 px);
    :class:`InputError` naming ``image`` otherwise."""
    m = _PICTURE_URL.match(url)
    if m is None:
        head = url[:30] + ("..." if len(url) > 30 else "")
        raise InputError(f"image: expected a PNG or JPEG data URL (data:image/png;base64,...), "
                         f"got {head!r}")  # fmt: skip
    try:
        data = base64.b64decode(url[m.end() :], validate=True)
        picture = Image.open(io.BytesIO(data))
    except (binascii.Error, ValueError):
        raise InputError("image: the data URL's base64 is malformed") from None
    except (OSError, Image.DecompressionBombError):
        raise InputError("image: not a PNG or JPEG picture PIL can read") from None
    if picture.format not in ("PNG", "JPEG"):
        raise InputError(f"image: a {picture.format} file; give a PNG or JPEG")
    if max(picture.size) > MAX_SIDE:
        raise InputError(f"image: {picture.size[0]}x{picture.size[1]} is larger than {MAX_SIDE} px")
    try:
        picture.load()
    except (OSError, Image.DecompressionBombError) as e:
        raise InputError(f"image: cannot read the picture ({str(e).splitlines()[0]})") from None
    return imagelib.from_pil(picture, resolution, "crop", name="image")


# ------------------------------------------------------------------------------------ masks


def _png(bitstring: str) -> np.ndarray:
    """Painted pixels of a PNG data URL: alpha > 0 with an alpha channel, else red < 255."""
    data = _DATA_URL.sub("", bitstring, count=1)
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=True)))
        image.load()
    except (binascii.Error, ValueError, OSError) as e:
        raise InputError(f"mask.bitstring: not a readable PNG data URL ({e})") from None
    if max(image.size) > MAX_SIDE:
        raise InputError(f"mask.bitstring: PNG of {image.size} is larger than {MAX_SIDE} px")
    if "A" in image.getbands() or "transparency" in image.info:
        return np.asarray(image.convert("RGBA"))[..., 3] > 0
    return np.asarray(image.convert("RGB"))[..., 0] < 255


@functools.lru_cache(maxsize=512)
def _decode(bitstring: str, shape, bounds) -> np.ndarray:
    is_png = bitstring.startswith("data:") or _DATA_URL.match(bitstring) is not None
    bits = _png(bitstring) if is_png else None
    canvas = shape or (bits.shape if bits is not None else DEFAULT_CANVAS)
    y0, x0, y1, x1 = bounds or (0, 0, *canvas)
    if y1 > canvas[0] or x1 > canvas[1]:
        raise InputError(f"mask.bitbounds {list(bounds)} lie outside mask.shape {list(canvas)}")
    box = (y1 - y0, x1 - x0)
    if bits is None:
        if len(bitstring) != box[0] * box[1] or bitstring.strip("01"):
            raise InputError(
                f"mask.bitstring: expected a PNG data URL or {box[0] * box[1]} characters "
                f"'0'/'1' filling bitbounds {[y0, x0, y1, x1]}, got {len(bitstring)} characters"
            )
        bits = np.frombuffer(bitstring.encode("ascii"), np.uint8).reshape(box) == ord("1")
    elif bits.shape != box:
        raise InputError(f"mask: PNG of {bits.shape[1]}x{bits.shape[0]} does not fill bitbounds "
                         f"{[y0, x0, y1, x1]} ({box[1]}x{box[0]})")  # fmt: skip
    out = np.zeros(canvas, np.float32)
    out[y0:y1, x0:x1] = bits
    out.setflags(write=False)
    return out


def decode_mask(mask: Mask) -> np.ndarray:
    """float32 ``[h, w]`` in ``{0, 1}``, 1 where painted; :class:`InputError` on bad masks.

    Decoded masks are memoised (a client resends every stroke with each request)."""
    shape = tuple(mask.shape) if mask.shape else None
    bounds = tuple(mask.bitbounds) if mask.bitbounds else None
    return _decode(mask.bitstring, shape, bounds)


def _pool_axis(x: np.ndarray, axis: int, n: int, op) -> np.ndarray:
    size = x.shape[axis]
    if size % n == 0:  # equal bins: one reshape
        shape = x.shape[:axis] + (n, size // n) + x.shape[axis + 1 :]
        return op(x.reshape(shape), axis=axis + 1)
    bins = [(i * size // n, -(-(i + 1) * size // n)) for i in range(n)]  # as adaptive pooling
    return np.stack([op(np.take(x, range(s, e), axis=axis), axis=axis) for s, e in bins], axis)


def pool(mask: np.ndarray, size: tuple[int, int], mode: str = "max") -> np.ndarray:
    """``[h, w]`` -> ``[H, W]`` by adaptive max or mean pooling (torch's adaptive bins; equals
    :func:`gdjax.intervene.pool_mask`)."""
    op = {"max": np.max, "mean": np.mean}[mode]
    return _pool_axis(_pool_axis(np.asarray(mask, np.float32), 0, size[0], op), 1, size[1], op)


# ----------------------------------------------------------------------------------- planes


def _pooled(mask: Mask, size: tuple[int, int], mode: str) -> np.ndarray:
    shape = tuple(mask.shape) if mask.shape else None
    bounds = tuple(mask.bitbounds) if mask.bitbounds else None
    return _pool_cached(mask.bitstring, shape, bounds, tuple(size), mode)


@functools.lru_cache(maxsize=512)
def _pool_cached(bitstring: str, shape, bounds, size, mode) -> np.ndarray:
    out = pool(_decode(bitstring, shape, bounds), size, mode)
    out.setflags(write=False)
    return out


def intervention_planes(iv: Intervention, spec: Spec):
    """One intervention at the served layer as ``(units [k], alpha [H, W, k], value [k])``:
    the units it sets, their alpha planes (mask folded in) and values; ``None`` when it sets
    no unit."""
    alpha = np.zeros(spec.num_units, np.float32)
    value = np.zeros(spec.num_units, np.float32)
    used = np.zeros(spec.num_units, bool)
    for ab in iv.ablations:
        if ab.layer != spec.layer:
            raise InputError(f"ablations.layer {ab.layer!r}: this server edits {spec.layer!r}")
        if ab.unit >= spec.num_units:
            raise InputError(
                f"ablations.unit {ab.unit} is out of range 0..{spec.num_units - 1} of {spec.layer}"
            )
        a = 1.0 if ab.alpha is None else ab.alpha
        v = 0.0 if ab.value is None else ab.value
        if a != 0.0 or v != 0.0:
            alpha[ab.unit], value[ab.unit], used[ab.unit] = a, v, True
    units = np.flatnonzero(used)
    if not len(units):
        return None
    m = np.ones(spec.size, np.float32)
    if iv.mask is not None:
        m = _pooled(iv.mask, spec.size, iv.maskpooling)
    return units, m[:, :, None] * alpha[units], value[units]


def planes(interventions, spec: Spec) -> tuple[np.ndarray, np.ndarray]:
    """The ``(alpha, value)`` planes ``[H, W, C]`` of a request's interventions composited
    alpha-over in order (zeros, the identity edit, when there are none); :class:`InputError`
    on bad ones.

    ``a = 1 - (1 - a_acc)(1 - a_new)``, ``v = (v_acc a_acc (1 - a_new) + v_new a_new) / a``
    (0 where ``a = 0``): the formula of :func:`gdjax.intervene.compose`, evaluated only on the
    units each intervention sets (on the others ``a_new = 0`` leaves both planes as they are).
    """
    a = np.zeros((*spec.size, spec.num_units), np.float32)
    v = np.zeros_like(a)
    for iv in interventions or ():
        p = intervention_planes(iv, spec)
        if p is None:
            continue
        units, a_new, v_new = p
        a_acc, v_acc = a[..., units], v[..., units]
        a_out = 1 - (1 - a_acc) * (1 - a_new)
        num = v_acc * a_acc * (1 - a_new) + v_new * a_new
        pos = a_out > 0
        v[..., units] = np.where(pos, num / np.where(pos, a_out, 1.0), 0.0)
        a[..., units] = a_out
    return a, v


def region(interventions, resolution: int) -> np.ndarray | None:
    """The painted pixels ``[R, R]`` (``{0, 1}``) of the interventions that set units: their
    masks max-pooled to the image's ``R x R`` and united; ``None`` when one of them has no
    mask (it acts on the whole map) or none sets a unit."""
    out = None
    for iv in interventions or ():
        if not any((1.0 if a.alpha is None else a.alpha) != 0.0 or (a.value or 0.0) != 0.0
                   for a in iv.ablations):  # fmt: skip
            continue
        if iv.mask is None:
            return None
        m = _pooled(iv.mask, (resolution, resolution), "max")
        out = m if out is None else np.maximum(out, m)
    return out
