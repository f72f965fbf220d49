"""Cost of a dissection relative to just running the networks over the same images.

    python -m benchmarks.dissect --setup demo --samples 1000
    python -m benchmarks.dissect --setup full --samples 200      # PGGAN-256 + upp, random weights

Times, in one process: (a) the bare generator + segmenter passes over the dissection's latent
sets (seed 1 and, for IQR, seed 2), jitted and compiled beforehand, in the same batches (the
last one padded, as the dissection's cache pads it); (b) a complete :func:`gdjax.dissect.dissect`
into a fresh directory (its own compilations, the cache, every statistics pass, strips and the
report). Prints both and the ratio b / a (target <= 1.25); and, since (b) pays the networks'
compilation that (a) leaves out, also b / (a + that compilation time).
"""

import argparse
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
    ap.add_argument("--setup", choices=["demo", "full"], default="demo")
    ap.add_argument("--samples", type=int, default=1000)
    ap.add_argument("--layers", default="layer4")
    ap.add_argument("--batch_size", type=int, default=32)
    ap.add_argument("--micro", type=int, default=8)
    ap.add_argument("--warm", action="store_true", help="also time a rerun (see above)")
    a = ap.parse_args(argv)
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
    if xla_dir is not None:
        xla_dir.cleanup()


if __name__ == "__main__":
    main()
