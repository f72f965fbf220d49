"""GANPaint in the browser: paint a concept's units on or off inside a brushed region of a
generated scene (reference §6).

* :mod:`gdjax.app.api` — the original server's request format (pydantic) and its decoding into
  composed edit planes;
* :mod:`gdjax.app.engine` — the generator split at the edited layer, activations cached per
  image, the edited rest compiled once per batch size;
* :mod:`gdjax.app.upload` — an uploaded picture inverted into the layer (the demo encoder plus
  Adam steps, :mod:`gdjax.invert`), painted on like a seed;
* :mod:`gdjax.app.server` — the FastAPI app (needs the ``[app]`` extra) and its single page in
  ``static/index.html``.

``python examples/paint.py`` serves it on the main job's dissection.
"""

from gdjax.app import api, engine, upload

__all__ = ["api", "engine", "upload"]
