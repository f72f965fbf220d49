"""Find the units whose strongest activations come with unrealistic images, and remove them
(artifact units, reference §5).

    python examples/artifacts.py                       # demo GAN, layer4, segmenter features
    python examples/artifacts.py --features inception --inception models/inception \\
        --generator models/church --real stats.npz   # FID Inception, pytorch-fid statistics

Every unit of --layer is ranked by the Fréchet distance between the features of its --top
images (by the unit's spatial maximum, over --samples latents of --seed) and real images; the
worst --ks units are then ablated and the whole generator's Fréchet distance is measured on
--repair_samples latents, against --draws random sets of as many units. Features: the demo
segmenter's pooled deepest encoder stage (``--features segmenter``, as examples/eval_gan.py)
or a converted FID Inception (``--features inception --inception DIR``; convert pytorch-fid's
weights with ``python -m converters.inception``; nothing is downloaded). Real images:
``scenes`` (rendered scenes of the built-in world), a directory of images of one size, or an
``.npz`` with pytorch-fid's ``mu`` and ``sigma`` computed with the same features.
Unit labels come from --dissect when it holds the layer (the main job's by default).

Writes under ``out/artifacts/<layer>``: artifacts.json (ranking), artifacts-worst.png,
repair.json, artifacts-repair.png. Interrupted runs resume.
"""

import os
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import ablate, compile_cache, demo, proggan, report, scenes  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.intervene import artifacts  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("generator", "demo", "'demo', 'random:R' or a gdjax generator directory")
flags.DEFINE_string("segmenter", "demo", "segmenter for --features segmenter")
flags.DEFINE_string("layer", "layer4", "generator layer whose units are ranked")
flags.DEFINE_enum("features", "segmenter", ["segmenter", "inception"], "feature extractor")
flags.DEFINE_string("inception", None, "converted FID Inception directory (--features inception)")
flags.DEFINE_string("real", "scenes", "'scenes', a directory of images or an .npz (mu, sigma)")
flags.DEFINE_integer("real_samples", 2000, "real images (scenes or the first of a directory)")
flags.DEFINE_integer("real_seed", 101, "seed of the rendered scenes")
flags.DEFINE_integer("samples", 4000, "latents scanned for each unit's top images")
flags.DEFINE_integer("seed", 1, "latent seed of the scan")
flags.DEFINE_integer("top", 200, "top images per unit (the reference: 1 in 20 of the scan)")
flags.DEFINE_integer("repair_samples", 1000, "latents of each whole-generator measurement")
flags.DEFINE_integer("repair_seed", 3, "latent seed of the repair")
flags.DEFINE_list("ks", ["10", "20"], "numbers of artifact units ablated")
flags.DEFINE_integer("draws", 8, "random unit sets per k (the control)")
flags.DEFINE_integer("worst", 8, "units shown in artifacts-worst.png")
flags.DEFINE_integer("batch_size", 50, "images per batch")
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json for unit labels (optional)")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "artifacts"), "output directory")
flags.DEFINE_bool("overwrite", False, "replace a run with other settings")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def feature_fn():
    if FLAGS.features == "segmenter":
        return artifacts.segmenter_features(demo.load_segmenter(FLAGS.segmenter))
    if not FLAGS.inception:
        raise InputError("--features inception needs --inception DIR (python -m "
                         "converters.inception converts pytorch-fid's weights)")  # fmt: skip
    from gdjax.models import inception

    if not os.path.isdir(FLAGS.inception):
        raise InputError(f"--inception {FLAGS.inception}: no such directory")
    try:
        module, variables = inception.load(FLAGS.inception)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"--inception {FLAGS.inception}: {e}") from None
    return artifacts.inception_features(module, variables)


def real_images(size: int):
    """``(batches of real images or None, moments or None, a few images to show or None)``."""
    n, bs = FLAGS.real_samples, FLAGS.batch_size
    if FLAGS.real == "scenes":
        render = lambda s, k: scenes.render(FLAGS.real_seed, k, size=size, start=s)[0]  # noqa: E731
        batches = (render(s, min(bs, n - s)) for s in range(0, n, bs))
        return batches, None, render(0, 8)
    if FLAGS.real.endswith(".npz"):
        if not os.path.isfile(FLAGS.real):
            raise InputError(f"--real {FLAGS.real}: no such file")
        with np.load(FLAGS.real) as f:
            if "mu" not in f or "sigma" not in f:
                raise InputError(f"--real {FLAGS.real}: needs arrays 'mu' and 'sigma', has "
                                 f"{sorted(f.files)}")  # fmt: skip
            return None, (f["mu"], f["sigma"]), None
    if not os.path.isdir(FLAGS.real):
        raise InputError(f"--real {FLAGS.real}: not 'scenes', an .npz or a directory")
    from PIL import Image

    names = sorted(f for f in os.listdir(FLAGS.real)
                   if f.lower().endswith((".png", ".jpg", ".jpeg")))[:n]  # fmt: skip
    if len(names) < 2:
        raise InputError(f"--real {FLAGS.real}: needs at least 2 .png/.jpg images")
    load = lambda f: np.asarray(Image.open(os.path.join(FLAGS.real, f)).convert("RGB"))  # noqa: E731
    first = load(names[0])
    shape = first.shape

    def batches():
        for s in range(0, len(names), bs):
            imgs = [load(f) for f in names[s : s + bs]]
            bad = next(
                (f for f, im in zip(names[s : s + bs], imgs, strict=True) if im.shape != shape),
                None,
            )
            if bad:
                raise InputError(f"--real: {bad} is not {shape[1]}x{shape[0]} like {names[0]}")
            yield np.stack(imgs).astype(np.float32) / 127.5 - 1.0

    return batches(), None, np.stack([load(f) for f in names[:8]]) / 127.5 - 1.0


def unit_labels(num_units: int) -> dict:
    """``{unit: label}`` of the interpretable units in --dissect, or ``{}`` with a note."""
    if not os.path.exists(FLAGS.dissect):
        print(f"no {FLAGS.dissect}: units shown without labels")
        return {}
    rec = report.read(FLAGS.dissect)
    names = [layer["layer"] for layer in rec["layers"]]
    if FLAGS.layer not in names:
        print(f"{FLAGS.dissect} has no {FLAGS.layer}: units shown without labels")
        return {}
    units = report.layer(rec, FLAGS.layer, FLAGS.dissect)["units"]
    if len(units) != num_units:
        print(f"{FLAGS.dissect}: {FLAGS.layer} has {len(units)} units, not {num_units} "
              "(another generator?): units shown without labels")  # fmt: skip
        return {}
    return {u["unit"]: u["iou_label"] for u in units if u.get("interp")}


def main(argv):
    del argv
    cli.positive(samples=FLAGS.samples, top=FLAGS.top, real_samples=FLAGS.real_samples,
                 repair_samples=FLAGS.repair_samples, draws=FLAGS.draws, worst=FLAGS.worst,
                 batch_size=FLAGS.batch_size)  # fmt: skip
    if FLAGS.top > FLAGS.samples or FLAGS.top < 2:
        raise InputError(f"--top must be in 2..--samples ({FLAGS.samples}), got {FLAGS.top}")
    module, params = demo.load_generator(FLAGS.generator)
    cli.layer(FLAGS.layer, module)
    num_units = ablate.num_units(module, params, FLAGS.layer)
    try:
        ks = [int(k) for k in FLAGS.ks if k.strip()]
    except ValueError:
        raise InputError(f"--ks: not a list of numbers: {','.join(FLAGS.ks)}") from None
    if not ks or not all(1 <= k <= num_units for k in ks):
        raise InputError(f"--ks: each k must be in 1..{num_units} (units of {FLAGS.layer})")
    fn = feature_fn()
    size = int(
        module.apply({"params": params}, proggan.sample_z(1, 0, module.sizes[0]))[0].shape[1]
    )
    batches, moments, shown = real_images(size)
    labels = unit_labels(num_units)
    keys = (
        "generator",
        "segmenter",
        "layer",
        "features",
        "inception",
        "real",
        "real_samples",
        "real_seed",
        "samples",
        "seed",
        "top",
        "repair_samples",
        "repair_seed",
        "draws",
    )
    settings = {**{k: getattr(FLAGS, k) for k in keys}, "ks": ks}
    compile_cache.enable(FLAGS.xla_cache)
    if moments is not None:
        real = artifacts.gaussian(None, *moments)
    else:
        real = artifacts.real_gaussian(fn, batches)
    z_scan = proggan.sample_z(FLAGS.samples, FLAGS.seed, module.sizes[0])
    z_repair = proggan.sample_z(FLAGS.repair_samples, FLAGS.repair_seed, module.sizes[0])
    out = artifacts.experiment(
        os.path.join(FLAGS.outdir, FLAGS.layer), module, params, FLAGS.layer, fn, real,
        z_scan, z_repair, FLAGS.top, ks, FLAGS.draws, worst=FLAGS.worst, labels=labels,
        real_images=shown, settings=settings, overwrite=FLAGS.overwrite,
        batch_size=FLAGS.batch_size,
    )  # fmt: skip
    rank, fix = out["ranking"], out["repair"]
    worst = ", ".join(f"{r['unit']} ({r['fd']:.2f})" for r in rank["ranking"][:5])
    print(f"{FLAGS.layer}: worst units by FD of their top {FLAGS.top} images: {worst}; all "
          f"{FLAGS.samples} images: {rank['fd_all']:.2f}")  # fmt: skip
    for r in fix["ks"]:
        rnd = r["random"]
        print(f"FD {fix['base']:.2f} -> {r['fd']:.2f} with the top {r['k']} artifact units off; "
              f"{rnd['mean']:.2f} [{rnd['low']:.2f}, {rnd['high']:.2f}] with {r['k']} random "
              f"units off ({fix['draws']} draws, {fix['level']:.0%} band of the mean)")  # fmt: skip
    print("results: " + ", ".join(out["paths"]))


if __name__ == "__main__":
    cli.run(main)
