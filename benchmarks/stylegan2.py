"""Forward speed of the Flax StyleGAN2 against our PyTorch reference, same weights, same batch.

    python -m benchmarks.stylegan2 [--config demo|256] [--batch 16] [--repeats 5]

``demo``: the demo StyleGAN2's shape (64x64, z = w = 128, channels 128…16, 2 mapping layers);
``256``: 256x256 with channels 128,128,128,64,32,16,8. Random weights are made in the reference
(tests/torch_stylegan2.py, stylegan2-ada-pytorch names) and converted with converters.stylegan2,
the outputs are checked to agree, then each side is timed over ``--repeats`` calls (JAX jitted,
after its compile; torch in ``no_grad`` with as many threads as JAX may use).
"""

import argparse
import os
import time

import jax
import numpy as np
import torch

from converters import stylegan2 as conv
from tests import torch_stylegan2 as ref

CONFIGS = {
    "demo": dict(z=128, res=64, channels=(128, 128, 64, 32, 16), mapping=2),
    "256": dict(z=128, res=256, channels=(128, 128, 128, 64, 32, 16, 8), mapping=2),
}


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args(argv)
    c = CONFIGS[a.config]
    torch.set_num_threads(os.cpu_count() or 1)
    g = ref.randomize(ref.Generator(c["z"], c["z"], c["res"], c["channels"], c["mapping"])).eval()
    sd = {k: v.detach().numpy() for k, v in g.state_dict().items()}
    module, params, _ = conv.convert_state_dict(sd)
    z = np.random.RandomState(0).standard_normal((a.batch, c["z"])).astype(np.float32)
    run = jax.jit(lambda p, z: module.apply({"params": p}, z)[0])
    zj = jax.device_put(z)
    t = time.perf_counter()
    out = np.asarray(run(params, zj))
    compile_s = time.perf_counter() - t
    with torch.no_grad():
        want = g(torch.from_numpy(z))[0].numpy().transpose(0, 2, 3, 1)
    diff = float(np.abs(out - want).max())
    print(f"{a.config}: {c['res']}x{c['res']}, batch {a.batch}, backend {jax.default_backend()}, "
          f"{os.cpu_count()} CPUs; max |JAX - torch| = {diff:.2e}")  # fmt: skip

    def timed(fn):
        fn()
        t = time.perf_counter()
        for _ in range(a.repeats):
            fn()
        return (time.perf_counter() - t) / a.repeats

    jax_s = timed(lambda: run(params, zj).block_until_ready())
    with torch.no_grad():
        torch_s = timed(lambda: g(torch.from_numpy(z)))
    print(f"JAX (jit):       {a.batch / jax_s:8.1f} images/s ({jax_s * 1e3:.0f} ms/batch; "
          f"first call {compile_s:.1f} s)")  # fmt: skip
    print(f"torch reference: {a.batch / torch_s:8.1f} images/s ({torch_s * 1e3:.0f} ms/batch)")
    print(f"JAX / torch speed: {torch_s / jax_s:.2f}x")


if __name__ == "__main__":
    main()
