"""Cost of a dissection relative to just running the networks over the same images.

    python -m benchmarks.dissect --setup demo --samples 1000
    python -m benchmarks.dissect --setup full --samples 200      # PGGAN-256 + upp, random weights
    python -m benchmarks.dissect --size full     # the accelerator goal: full setup, 10,000 samples
    python -m benchmarks.dissect --size small    # the same script end to end in a minute on CPU

``--size full`` is ``--setup full --samples 10000`` (target on one H200: one layer in < 60 s);
``--size small`` is tiny random networks (``--setup tiny``) and 64 samples.

Times, in one process: (a) the bare generator + segmenter passes over the dissection's latent
sets (seed 1 and, for IQR, seed 2), jitted and compiled beforehand, in the same batches (the
last one padded, as the dissection's cache pads it); (b) a complete :func:`gdjax.dissect.dissect`
into a fresh directory (its own compilations, the cache, every statistics pass, strips and the
report). Prints both and the ratio b / a (target <= 1.25); and, since (b) pays the networks'
compilation that (a) leaves out, also b / (a + that compilation time). Also the generator's
and the segmenter's images per second, each alone over the first latent set, and a last line
``json: {...}`` with every figure.
"""

import argparse
import json
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np

from gdjax import compile_cache, dissect, proggan
from gdjax import segmenter as seglib
from gdjax.dissect import cache
from gdjax.dissect.settings import Settings
from gdjax.world import train_segmenter


def models(setup: str):
    if setup == "tiny":
        seg = seglib.from_config(
            train_segmenter.demo_config(stem=(8, 8, 8), planes=(8, 8, 8, 8), depths=(1, 1, 1, 1),
                                        dim=8), key=jax.random.key(0),
        )  # fmt: skip
        return proggan.init((16, 16, 16, 8, 8, 8), seed=0), seg, "tiny random networks"
    if setup == "demo":
        try:
            from gdjax import demo

            return demo.generator(), demo.segmenter(), "shipped demo models"
        except FileNotFoundError:
            seg = seglib.from_config(train_segmenter.demo_config(), key=jax.random.key(0))
            return proggan.init((128, 128, 128, 64, 32, 16)), seg, "demo configs, random weights"
    from benchmarks.segmenter import UPP

    seg = seglib.from_config(UPP, key=jax.random.key(0))
    return proggan.init(proggan.SIZES[256]), seg, "PGGAN-256 + upp, random weights"


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--setup", choices=["demo", "full", "tiny"], default="demo")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--size", choices=["small", "full"], help="a preset of setup and samples")
    ap.add_argument("--layers", default="layer4")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--warm", action="store_true", help="also time a rerun (see above)")
    a = ap.parse_args(argv)
    if a.size:
        a.setup, a.samples = {"small": ("tiny", 64), "full": ("full", 10000)}[a.size]
    xla_dir = tempfile.TemporaryDirectory() if a.warm else None
    if xla_dir is not None:
        compile_cache.enable(xla_dir.name)
    gen, seg, what = models(a.setup)
    layers = a.layers.split(",")
    module, params = gen
    fn = cache.model_fn(module, params, seg, layers, 2)
    run = jax.jit(lambda z: jax.lax.map(fn, z.reshape(-1, a.micro, z.shape[-1])))
    sets = [proggan.sample_z(a.samples, s, module.sizes[0]) for s in (1, 2)]

    def first_call() -> float:  # trace + compile (or load) + one batch
        t = time.perf_counter()
        jax.block_until_ready(run(jnp.asarray(sets[0][: a.batch_size])))
        return time.perf_counter() - t

    firsts = [first_call()]
    t = time.perf_counter()
    for z in sets:
        for start in range(0, a.samples, a.batch_size):
            # The last batch is padded with repeated latents, as the dissection's cache does.
            idx = np.minimum(np.arange(start, start + a.batch_size), a.samples - 1)
            jax.device_get(run(jnp.asarray(z[idx])))
    bare = time.perf_counter() - t
    batches = 2 * len(range(0, a.samples, a.batch_size))
    if a.warm:
        jax.clear_caches()  # as a new process: trace again, load the program from the disk cache
        firsts.append(first_call())
    # The networks' one-time cost: the first call less one batch's share of the bare time.
    setup = [max(f - bare / batches, 0.0) for f in firsts]
    print(f"bare generator+segmenter passes: {bare:8.1f} s ({2 * a.samples / bare:.1f} img/s); "
          f"first call (trace, compile, 1 batch) {firsts[0]:.1f} s"
          + (f", with the compilation cache warm {firsts[1]:.1f} s" if a.warm else ""),
          flush=True)  # fmt: skip
    rates = networks_alone(module, params, seg, layers, sets[0], a.batch_size, a.micro)
    print(f"generator alone: {rates['generator']:.1f} img/s; segmenter alone: "
          f"{rates['segmenter']:.1f} img/s", flush=True)  # fmt: skip
    times = []
    for i in range(2 if a.warm else 1):
        if i:
            jax.clear_caches()
        with tempfile.TemporaryDirectory() as outdir:
            t = time.perf_counter()
            settings = Settings(layers=tuple(layers), samples=a.samples,
                                batch_size=a.batch_size, micro=a.micro)  # fmt: skip
            dissect.dissect(outdir, gen, seg, settings)
            times.append(time.perf_counter() - t)
    print(f"backend {jax.default_backend()} x{len(jax.local_devices())}; {what}; "
          f"layers {layers}; {a.samples} samples x 2 latent sets")  # fmt: skip
    names = ["dissection", "rerun, compilation cache warm"]
    for name, full, once in zip(names, times, setup, strict=False):
        print(f"{name + ':':33s}{full:8.1f} s")
        print(f"  ratio:                         {full / bare:8.2f}")
        print(f"  ratio, bare with its one-time cost ({once:.1f} s): {full / (bare + once):.2f}")
    figures = {
        "backend": jax.default_backend(), "devices": len(jax.local_devices()), "setup": what,
        "layers": layers, "samples": a.samples, "bare_seconds": bare,
        "bare_images_per_second": 2 * a.samples / bare, "one_time_seconds": setup[0],
        "dissection_seconds": times[0], "ratio": times[0] / bare,
        "ratio_with_one_time": times[0] / (bare + setup[0]),
        "generator_images_per_second": rates["generator"],
        "segmenter_images_per_second": rates["segmenter"],
    }  # fmt: skip
    print("json:", json.dumps(figures))
    if xla_dir is not None:
        xla_dir.cleanup()


def networks_alone(module, params, seg, layers, z, batch_size: int, micro: int) -> dict:
    """Images per second of the generator (with the dissected layers captured) and of the
    segmenter (on the generator's images, at half resolution), each jitted, compiled and
    warmed first, over ``z`` in batches of ``batch_size`` (the last padded)."""
    from gdjax.models import segmenter as segmod

    def gen(zb):
        images, acts = module.apply({"params": params}, zb, capture=tuple(layers))
        return images, acts

    g = jax.jit(lambda zz: jax.lax.map(gen, zz.reshape(-1, micro, zz.shape[-1])))
    s = jax.jit(lambda im: jax.lax.map(lambda x: segmod.segment(seg, x, 2),
                                       im.reshape(-1, micro, *im.shape[1:])))  # fmt: skip
    n = len(z)
    batches = [np.minimum(np.arange(i, i + batch_size), n - 1) for i in range(0, n, batch_size)]
    images0 = g(jnp.asarray(z[batches[0]]))[0]
    jax.block_until_ready(s(images0.reshape(-1, *images0.shape[2:])))  # both compiled
    images, t = [], time.perf_counter()
    for idx in batches:
        out = g(jnp.asarray(z[idx]))[0]
        images.append(jax.block_until_ready(out.reshape(-1, *out.shape[2:])))
    g_time, t = time.perf_counter() - t, time.perf_counter()
    for im in images:
        jax.block_until_ready(s(im))
    s_time = time.perf_counter() - t
    done = len(batches) * batch_size  # images computed, padding included
    return {"generator": done / g_time, "segmenter": done / s_time}


if __name__ == "__main__":
    main()
