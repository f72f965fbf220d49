"""Uploaded pictures for the paint server: invert one into the painted layer (issue 16).

:class:`Inverter` runs :func:`gdjax.invert.invert` on one picture: the encoder's prediction of
the layer, refined by ``steps`` Adam steps (pixel loss plus the segmenter's feature loss, or
the pixel loss alone without a segmenter). The server stores the result with
:meth:`gdjax.app.engine.Engine.put` beside the picture, so edits of it are shown on the picture.
Only a generator layer with a fitting encoder (the demo's ``layer4``) can take uploads:
:meth:`Inverter.find` answers ``None`` otherwise.
"""

from __future__ import annotations

import numpy as np

from gdjax import invert

__all__ = ["DEFAULT_STEPS", "Inverter"]

DEFAULT_STEPS = invert.Config().steps  # 200: ~2 s an upload on 2 busy cores, 27 dB on scenes


class Inverter:
    """``picture [R, R, 3]`` in ``[-1, 1]`` -> the layer's activation ``[H, W, C]``.

    ``enc``: ``(encoder module, params)`` for ``layer`` (see
    :func:`gdjax.invert.resolve_encoder`); ``seg``: the segmenter giving the feature loss, or
    ``None``; ``steps``: Adam steps after the encoder (0: its prediction alone).
    """

    def __init__(self, module, params, seg, layer: str, enc, steps: int = DEFAULT_STEPS):
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        self.module, self.params, self.seg, self.layer, self.enc = module, params, seg, layer, enc
        weight = invert.Config().feature_weight if seg is not None else 0.0
        self.cfg = invert.Config(steps=steps, feature_weight=weight)

    @classmethod
    def find(cls, module, params, seg, layer: str, steps: int = DEFAULT_STEPS):
        """An inverter with the shipped encoder when it fits ``layer`` of this generator,
        else ``None`` (uploads then are refused)."""
        enc = invert.resolve_encoder(module, layer, "auto")
        return None if enc is None else cls(module, params, seg, layer, enc, steps)

    def __call__(self, picture) -> np.ndarray:
        rep = invert.invert(picture, self.module, self.params, self.seg, self.layer, self.enc,
                            self.cfg)  # fmt: skip
        return np.asarray(rep.h)[0]

    def warmup(self) -> None:
        """Compile the inversion now (a few seconds), so the first upload does not wait."""
        r = self.module.resolution
        self(np.zeros((r, r, 3), np.float32))
