"""Cost of ACE α optimization (:func:`gdjax.intervene.ace.optimize`), phase by phase.

    python -m benchmarks.ace --size reference   # search 10,000, train 1,000 pairs, 10 epochs
    python -m benchmarks.ace --size small       # the same script end to end on CPU

``--setup full`` (the default with ``--size reference``): PGGAN-256 + the upp segmenter with
random weights, class ``door`` of the upp vocabulary (target on one H200: < 5 min in all);
``demo``: the shipped demo models, class ``door``; ``tiny``: tiny random networks (the default
with ``--size small``: search 40, train 20, eval 10, 2 epochs). Times the present set, the
candidate set and the training (with its evaluations) separately, each with its compilation,
and prints a last line ``json: {...}``.
"""

import argparse
import json
import tempfile
import time

import jax
import numpy as np

from gdjax import proggan, rundir
from gdjax import segmenter as seglib
from gdjax.intervene import ace
from gdjax.world import train_segmenter

SIZES = {
    "reference": dict(search_size=10000, train_size=1000, eval_size=200, train_epochs=10),
    "small": dict(search_size=40, train_size=20, eval_size=10, train_epochs=2),
}


def models(setup: str):
    """``(module, params), segmenter, the class label, a description``."""
    if setup == "tiny":
        config = train_segmenter.demo_config(
            stem=(8, 8, 8), planes=(8, 8, 8, 8), depths=(1, 1, 1, 1), dim=8
        )
        seg = seglib.from_config(config, key=jax.random.key(0))
        return proggan.init((16, 16, 16, 8, 8, 8), seed=0), seg, 1, "tiny random networks"
    if setup == "demo":
        from gdjax import demo

        seg = demo.segmenter()
        return demo.generator(), seg, list(seg.labels).index("door"), "shipped demo models"
    from benchmarks.segmenter import UPP

    seg = seglib.from_config(UPP, key=jax.random.key(0))
    door = list(seg.labels).index("door") if "door" in seg.labels else 16
    return proggan.init(proggan.SIZES[256]), seg, door, "PGGAN-256 + upp, random weights"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", choices=list(SIZES), default="reference")
    ap.add_argument("--setup", choices=["full", "demo", "tiny"])
    ap.add_argument("--layer", default="layer4")
    ap.add_argument("--downsample", type=int, default=1, help="segmentation at image / this")
    a = ap.parse_args(argv)
    setup = a.setup or ("full" if a.size == "reference" else "tiny")
    (module, params), seg, label, what = models(setup)
    cfg = ace.check_config(ace.Config(layer=a.layer, **SIZES[a.size]))
    fns = ace.segmenter_fns(seg, label, a.downsample)
    zdim = module.sizes[0]
    times = {}
    with tempfile.TemporaryDirectory() as work:
        start = t = time.perf_counter()
        zp = proggan.sample_z(cfg.search_size, cfg.present_seed, zdim)
        cov, k = ace.present_set(module, params, fns, zp, cfg)
        times["present_set"] = time.perf_counter() - t
        flat = cov.reshape(len(zp), -1)
        ptrain, _ = ace.select(flat.max(axis=1), cfg.train_size, cfg.eval_size)
        popularity = np.bincount(flat.argmax(axis=1)[ptrain], minlength=flat.shape[1])
        t = time.perf_counter()
        zc = proggan.sample_z(cfg.search_size, cfg.candidate_seed, zdim)
        score, cloc = ace.candidate_set(module, params, fns, zc, k, popularity, cfg)
        times["candidate_set"] = time.perf_counter() - t
        # optimize() finds both sets in its work directory and only trains.
        rundir.write_npz(f"{work}/present.npz", {"cov": cov, "k": k})
        rundir.write_npz(f"{work}/candidates.npz", {"score": score, "cloc": cloc})
        t = time.perf_counter()
        result = ace.optimize(module, params, fns, cfg, workdir=work)
        times["training"] = time.perf_counter() - t
        times["total"] = time.perf_counter() - start
    print(f"backend {jax.default_backend()} x{len(jax.local_devices())}; {what}; {a.layer}; "
          f"search {cfg.search_size}, train {cfg.train_size} pairs, "
          f"{cfg.train_epochs} epochs")  # fmt: skip
    for name, seconds in times.items():
        print(f"{name + ':':16s}{seconds:8.1f} s")
    print(f"eval loss per epoch: {[round(float(x), 4) for x in result.eval_loss]}")
    figures = {"backend": jax.default_backend(), "setup": what, "size": a.size, **times,
               "config": cfg._asdict()}  # fmt: skip
    print("json:", json.dumps(figures))


if __name__ == "__main__":
    main()
