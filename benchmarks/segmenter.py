"""Images/s of the full-size upp segmenter (random weights) at 256x256 on the default backend.

    python -m benchmarks.segmenter [--batch 1 2 4] [--downsample 2] [--repeats 3]

Times ``segment`` (quad included, as dissection calls it) after one compile per batch size.
"""

import argparse
import time

import jax
import jax.numpy as jnp

from gdjax import segmenter as S
from gdjax.models.labels import Vocab

OBJECTS = ("-",) + tuple(f"o{i}" for i in range(1, 336))
UPP = {
    "kind": "segmenter",
    "model": {"n_object": 336, "n_material": 26, "n_part": 41, "n_scene": 0},
    "vocab": {
        "objects": OBJECTS,
        "materials": ("-",) + tuple(f"m{i}" for i in range(1, 26)),
        "part_owners": (
            (2, ("-", "p1")),
            (5, ("-",) + tuple(f"b{i}" for i in range(23))),
            (6, ("-",) + tuple(f"q{i}" for i in range(14))),
        ),  # fmt: skip
        "n_owners_used": 3,
        "quad": True,
    },
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--downsample", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    seg = S.create(UPP)
    assert isinstance(seg.vocab, Vocab)
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind})")
    for n in a.batch:
        x = jax.random.uniform(jax.random.key(n), (n, 256, 256, 3), minval=-1, maxval=1)
        t = time.perf_counter()
        S.segment(seg, x, downsample=a.downsample).block_until_ready()
        compile_s = time.perf_counter() - t
        t = time.perf_counter()
        for _ in range(a.repeats):
            out = S.segment(seg, x, downsample=a.downsample)
        jnp.asarray(out).block_until_ready()
        dt = (time.perf_counter() - t) / a.repeats
        print(
            f"batch {n:3d}: {n / dt:8.2f} images/s ({dt:.3f} s/batch, first call {compile_s:.1f} s)"
        )


if __name__ == "__main__":
    main()
