"""Invert a picture into the generator, and optionally paint units of a class onto it.

    python examples/invert.py --scene 3                        # a held-out rendered scene
    python examples/invert.py --image photo.png                # any RGB picture (resized)
    python examples/invert.py --scene 3 --edit                 # + door units in the wall
    python examples/invert.py --image photo.png --edit --classname door --region 24,32,40,48

Writes under ``--outdir/<scene-N or image name>/``: ``target.png``, ``reconstruction.png``
(encoder start, then --steps of optimization), ``quality.json`` (PSNR and the share of pixels
whose segmenter label matches the target's, for the encoder alone and after optimization),
``representation.npz`` (the inverted layer, ``gdjax.invert.Representation.load``); with
``--edit`` also ``edited.png`` (the original picture with the class's top --units units
inserted in --region, blended) and ``edit.png`` (target / reconstruction / edited).
Optimization resumes where it stopped (Ctrl-C); another picture or other settings in the same
directory are refused unless --overwrite.
"""

import os
import shutil
import sys

import numpy as np
from absl import flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from examples import cli  # noqa: E402
from gdjax import compile_cache, demo, invert, report, rundir, scenes  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.invert import evaluate, image  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("image", None, "an RGB picture file (PNG, JPEG, ...)")
flags.DEFINE_integer(
    "scene", None, f"a held-out rendered scene: index N of seed {evaluate.EVAL_SEED}"
)
flags.DEFINE_enum("fit", "crop", image.FITS, "non-square pictures: centre crop, squash, or refuse")
flags.DEFINE_string("generator", "demo", "'demo' or a gdjax generator directory")
flags.DEFINE_string("segmenter", "demo", "'demo' or a gdjax segmenter checkpoint directory")
flags.DEFINE_string("encoder", "auto", "'auto' (the demo encoder where it fits), 'demo', "
                    "'none' or an encoder checkpoint directory")  # fmt: skip
flags.DEFINE_string("layer", "layer4", "generator layer to invert into")
flags.DEFINE_integer("steps", invert.Config().steps, "optimization steps (0: encoder only)")
flags.DEFINE_float("lr", invert.Config().lr, "Adam learning rate")
flags.DEFINE_float(
    "feature_weight", invert.Config().feature_weight, "segmenter-feature loss weight"
)
flags.DEFINE_list("residuals", [], "later layers that also get a small residual")
flags.DEFINE_bool("edit", False, "insert --classname units in --region")
flags.DEFINE_string("classname", "door", "class whose top units are inserted")
flags.DEFINE_list("region", [], "x0,y0,x1,y1 in pixels of the picture at the generator's "
                  "size (--scene: default the lowest 16 px wall square with no door)")  # fmt: skip
flags.DEFINE_integer("units", 20, "number of top units of the class inserted")
flags.DEFINE_string("rank", "ace,iou", "rankings <class>-<rank> to use, first found")
flags.DEFINE_string("dissect", cli.DISSECT_JSON, "dissect.json with the rankings")
flags.DEFINE_float("quantile", 0.99, "insertion value: this quantile of each unit's activations")
flags.DEFINE_string("outdir", os.path.join(cli.OUT, "invert"), "output directory")
flags.DEFINE_bool("overwrite", False, "replace an inversion of another picture or settings")
flags.DEFINE_string("xla_cache", compile_cache.DEFAULT,
                    "keep compiled programs here so reruns skip compiling ('' = off)")  # fmt: skip


def target(resolution):
    """``(name, image [R, R, 3], true labels [R, R] or None)`` from --image or --scene."""
    if (FLAGS.image is None) == (FLAGS.scene is None):
        raise InputError("give one of --image PATH or --scene N")
    if FLAGS.image is not None:
        name = os.path.splitext(os.path.basename(FLAGS.image))[0] or "image"
        return name, image.load(FLAGS.image, resolution, FLAGS.fit), None
    if FLAGS.scene < 0:
        raise InputError(f"--scene must be a scene index >= 0, got {FLAGS.scene}")
    imgs, labels = scenes.render(evaluate.EVAL_SEED, 1, size=resolution, start=FLAGS.scene)
    return f"scene-{FLAGS.scene}", imgs[0], labels[0]


def region(resolution, truth):
    """``[R, R]`` bool painted region from --region (or the wall square of a scene)."""
    if not FLAGS.region:
        if truth is None:
            raise InputError("--edit on an --image needs --region x0,y0,x1,y1")
        facade = np.isin(truth[None], (scenes.BUILDING, scenes.WINDOW))
        return evaluate.paint_square(facade, truth[None] == scenes.DOOR)[0]
    try:
        x0, y0, x1, y1 = (int(v) for v in FLAGS.region)
    except ValueError:
        raise InputError(f"--region: {','.join(FLAGS.region)} is not x0,y0,x1,y1") from None
    if not 0 <= x0 < x1 <= resolution or not 0 <= y0 < y1 <= resolution:
        raise InputError(
            f"--region: needs 0 <= x0 < x1 <= {resolution}, 0 <= y0 < y1 <= {resolution}"
        )
    out = np.zeros((resolution, resolution), bool)
    out[y0:y1, x0:x1] = True
    return out


def units(seg, module, params):
    """``(label, units, rank name)`` of --classname from --dissect (first of --rank found)."""
    names = [n for n, _ in seg.labels]
    label = cli.label(FLAGS.classname, names)
    rec = report.read(FLAGS.dissect)
    report.layer(rec, FLAGS.layer, FLAGS.dissect)
    for rank in [r.strip() for r in FLAGS.rank.split(",") if r.strip()]:
        score = report.ranking(rec, FLAGS.layer, f"{FLAGS.classname}-{rank}")
        if score is not None:
            return label, evaluate.top_units(score, FLAGS.units), f"{FLAGS.classname}-{rank}"
    raise InputError(f"{FLAGS.dissect} has no ranking {FLAGS.classname}-{{{FLAGS.rank}}} "
                     f"for {FLAGS.layer}")  # fmt: skip


def main(argv):
    del argv
    cli.positive(units=FLAGS.units)
    if FLAGS.steps < 0:
        raise InputError(f"--steps must be >= 0, got {FLAGS.steps}")
    (module, params), seg = demo.load_models(FLAGS.generator, FLAGS.segmenter)
    cli.layer(FLAGS.layer, module)
    enc_spec = None if FLAGS.encoder == "none" else FLAGS.encoder
    enc = invert.resolve_encoder(module, FLAGS.layer, enc_spec)
    name, picture, truth = target(module.resolution)
    painted = region(module.resolution, truth) if FLAGS.edit else None
    chosen = units(seg, module, params) if FLAGS.edit else None
    cfg = invert.Config(steps=FLAGS.steps, lr=FLAGS.lr, feature_weight=FLAGS.feature_weight,
                        residuals=tuple(FLAGS.residuals))  # fmt: skip
    outdir = os.path.join(FLAGS.outdir, name)
    if FLAGS.overwrite and os.path.isdir(outdir):
        shutil.rmtree(outdir)
    compile_cache.enable(FLAGS.xla_cache)

    start = invert.encode(picture, module, params, FLAGS.layer, enc)
    rep = start
    if cfg.steps or cfg.residuals:
        rep, _ = invert.optimize.optimize(module, params, seg, picture[None], start, cfg,
                                          workdir=os.path.join(outdir, "optimize"))  # fmt: skip
    recons = {"encoder": invert.generate(module, params, start),
              "optimized": invert.generate(module, params, rep)}  # fmt: skip
    quality = {"target": FLAGS.image or f"scene {FLAGS.scene} of seed {evaluate.EVAL_SEED}",
               "layer": FLAGS.layer, "steps": cfg.steps, "encoder": enc is not None}  # fmt: skip
    for key, x in recons.items():
        psnr = evaluate.psnr(x, picture[None])[0]
        agree = evaluate.agreement(seg, x, picture[None])[0]
        quality[key] = {"psnr": float(psnr), "agreement": float(agree)}
        if truth is not None:
            agree = evaluate.labels(seg, x)[0] == truth
            quality[key]["agreement_truth"] = float(agree.mean())
    paths = [
        image.save(os.path.join(outdir, "target.png"), picture),
        image.save(os.path.join(outdir, "reconstruction.png"), recons["optimized"][0]),
        rep.save(os.path.join(outdir, "representation.npz")),
    ]
    if FLAGS.edit:
        label, top, rank = chosen
        value = evaluate.insertion_value(module, params, FLAGS.layer, q=FLAGS.quantile)
        res = invert.edit(module, params, rep, invert.insertion(rep, top, value, painted),
                          picture, painted)  # fmt: skip
        effect = evaluate.edit_effect(seg, label, picture[None], res.blended, painted[None],
                                      res.mask)  # fmt: skip
        quality["edit"] = {"classname": FLAGS.classname, "ranking": rank, "units": top,
                           "region": np.argwhere(painted)[[0, -1]][:, ::-1].tolist(),
                           **{k: float(v[0]) for k, v in effect.items()}}  # fmt: skip
        paths.append(image.save(os.path.join(outdir, "edited.png"), res.blended[0]))
        rows = [("target", image.to_uint8(picture[None])),
                ("reconstruction", image.to_uint8(res.reconstruction)),
                (f"{FLAGS.classname} painted", evaluate.outline(image.to_uint8(res.blended),
                                                                painted[None]))]  # fmt: skip
        paths.append(evaluate.picture(os.path.join(outdir, "edit.png"), rows, 4, columns=True))
    paths.append(rundir.write_json(os.path.join(outdir, "quality.json"), quality))
    for key in recons:
        q = quality[key]
        print(f"{key}: PSNR {q['psnr']:.2f} dB, segmentation agreement {q['agreement']:.3f}")
    if FLAGS.edit:
        e = quality["edit"]
        print(f"{FLAGS.classname} in the region: {e['inside_before']:.3f} -> "
              f"{e['inside_after']:.3f}; outside it {e['outside_same']:.3f} of the pixels are "
              "the original's")  # fmt: skip
    print("wrote " + ", ".join(paths))


if __name__ == "__main__":
    cli.run(main)
