"""How well a generator draws the demo world, measured with a segmenter.

Three measurements, each comparing generated images with rendered scenes:

* per-class pixel frequency and per-class presence rate (share of images that contain the
  class), both read from the segmenter's labels of each image;
* a Fréchet distance between Gaussian fits of the segmenter's pooled encoder features (the
  deepest encoder stage, averaged over space) — FID's recipe with the demo segmenter in the
  role of Inception, so it needs no downloaded network.

The floor of the Fréchet distance is the same number between two independent rendered sets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from gdjax.models import segmenter as seglib


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussian fits of two feature sets ``[N, D]`` and ``[M, D]``.

    ``|mu_a - mu_b|^2 + tr(Sa + Sb - 2 (Sa^1/2 Sb Sa^1/2)^1/2)``, computed in float64 with
    symmetric eigendecompositions only (no scipy).
    """
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    mu_a, mu_b = a.mean(0), b.mean(0)
    sa, sb = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    w, v = np.linalg.eigh(sa)
    root_a = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    cross = np.linalg.eigvalsh(root_a @ sb @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(sa) + np.trace(sb) - 2 * trace_root)


def _features_and_labels(seg: seglib.Segmenter):
    @jax.jit
    def run(images):
        (x,) = seglib.preprocess(seg, images)[:1]
        size = (images.shape[1], images.shape[2])
        out, acts = seg.module.apply(seg.variables, x, size)
        labels = jnp.argmax(out["object"], axis=-1) + seg.vocab.offset
        return acts["layer4"].mean(axis=(1, 2)), labels

    return run


def measure(
    seg: seglib.Segmenter, batches: Iterator[np.ndarray], num_labels: int
) -> dict[str, np.ndarray]:
    """Pooled features ``[N, D]``, pixel frequency ``[L]`` and presence rate ``[L]`` of images."""
    run = _features_and_labels(seg)
    feats, counts, present, n = [], np.zeros(num_labels), np.zeros(num_labels), 0
    for images in batches:
        f, labels = run(jnp.asarray(images))
        labels = np.asarray(labels).reshape(labels.shape[0], -1)
        feats.append(np.asarray(f))
        onehot = labels[..., None] == np.arange(num_labels)  # [B, P, L]
        counts += onehot.sum((0, 1))
        present += onehot.any(1).sum(0)
        n += labels.shape[0]
    return {
        "features": np.concatenate(feats),
        "frequency": counts / counts.sum(),
        "presence": present / n,
    }


def compare(
    seg: seglib.Segmenter,
    generated: Callable[[int, int], np.ndarray],
    rendered: Callable[[int, int], np.ndarray],
    rendered_other: Callable[[int, int], np.ndarray],
    n: int = 1000,
    batch_size: int = 100,
) -> dict:
    """Quality report of ``generated`` against ``rendered`` (``fn(start, count) -> images``).

    Returns per-class ``frequency_generated/rendered``, ``relative_error`` (of frequencies),
    ``presence_generated``, and ``fd`` with its floor ``fd_floor`` (``rendered`` vs
    ``rendered_other``) and ``fd_ratio = fd / fd_floor``.
    """
    names = [name for name, _ in seg.labels]

    def stream(fn):
        return (fn(s, min(batch_size, n - s)) for s in range(0, n, batch_size))

    gen = measure(seg, stream(generated), len(names))
    ren = measure(seg, stream(rendered), len(names))
    other = measure(seg, stream(rendered_other), len(names))
    fd = frechet_distance(gen["features"], ren["features"])
    floor = frechet_distance(other["features"], ren["features"])
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = (gen["frequency"] - ren["frequency"]) / ren["frequency"]
    return {
        "labels": names,
        "frequency_generated": gen["frequency"].tolist(),
        "frequency_rendered": ren["frequency"].tolist(),
        "relative_error": rel.tolist(),
        "presence_generated": gen["presence"].tolist(),
        "presence_rendered": ren["presence"].tolist(),
        "fd": fd,
        "fd_floor": floor,
        "fd_ratio": fd / floor,
        "n": n,
    }


def write_world_grid(path: str, generator, seg: seglib.Segmenter, n: int = 8, seed: int = 1):
    """PNG of four captioned rows: generated scenes, their segmentation, rendered scenes,
    theirs; below them a key of the label colours present in either segmentation.

    ``generator = (module, params)``; latents are ``sample_z(n, seed)``, rendered scenes are
    ``scenes.render(seed, n)``. Images are enlarged x2 so the 64x64 world reads on screen.
    """
    from gdjax.models import proggan
    from gdjax.report import draw
    from gdjax.world import scenes

    module, params = generator
    z = proggan.sample_z(n, seed, module.sizes[0])
    fake = np.asarray(module.apply({"params": params}, z)[0])
    real = scenes.render(seed, n, size=fake.shape[1])[0]
    rows, present = [], set()
    for images in (fake, real):
        labels = np.asarray(seglib.segment(seg, jnp.asarray(images)))[..., 0]
        present.update(np.unique(labels).tolist())
        rows += [draw.to_uint8(images), draw.colorize(labels)]
    tiles = np.concatenate(rows)
    image = draw.enlarge(draw.grid(tiles, n), 2)  # grid gaps of 2 px become 4
    captions = ["generated", "segmentation of generated", "rendered", "segmentation of rendered"]
    image = draw.caption_rows(image, captions, 2 * tiles.shape[1], pad=4, max_width=120)
    # colorize's default palette is prefix-stable, so palette(max + 1) holds every row's colours.
    present = sorted(i for i in present if i >= 0)
    names = [seg.labels[i][0] if seg.labels[i][0] != "-" else "unlabelled" for i in present]
    key = draw.legend(names, draw.palette(max(present) + 1)[present], width=image.shape[1])
    return draw.save_png(path, draw.vstack([image, key], gap=6))
