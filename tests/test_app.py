"""The paint app's API: mask decoding, composition, generate against gdjax.intervene, malformed
requests, the GET routes, and the demo world's ground truth (doors on walls, not in the sky)."""

import base64
import io
import threading
import types

import jax
import jax.numpy as jnp
import numpy as np
import paint_world as W
import pytest
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from gdjax import intervene, proggan  # noqa: E402
from gdjax.app import api  # noqa: E402
from gdjax.errors import InputError  # noqa: E402
from gdjax.intervene import ace  # noqa: E402
from gdjax.report import draw  # noqa: E402

SPEC = api.Spec("layer4", 6, (4, 4), 8)


@pytest.fixture(scope="module")
def world():
    return W.world()


@pytest.fixture(scope="module")
def client(world):
    return TestClient(world.app)


def png_url(rgba: np.ndarray) -> str:
    buf = io.BytesIO()
    Image.fromarray(rgba).save(buf, "png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def decode_png(url: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))).convert("RGB"))


def box_mask(y0, x0, y1, x1, side=256) -> str:
    """A transparent ``side`` x ``side`` PNG painted opaque in the box (the browser's strokes)."""
    m = np.zeros((side, side, 4), np.uint8)
    m[y0:y1, x0:x1] = (0, 0, 0, 255)
    return png_url(m)


# ------------------------------------------------------------------------------ decoding


def test_bitstring_mask_fills_bitbounds_row_by_row():
    bits = "100101"  # 2 rows x 3 columns at rows 1..2, columns 2..4 of a 4 x 6 canvas
    got = api.decode_mask(api.Mask(shape=[4, 6], bitbounds=[1, 2, 3, 5], bitstring=bits))
    want = np.zeros((4, 6), np.float32)
    want[1, 2:5] = [1, 0, 0]
    want[2, 2:5] = [1, 0, 1]
    np.testing.assert_array_equal(got, want)
    # No shape: the 256 x 256 default canvas; no bounds: the whole canvas.
    full = api.decode_mask(api.Mask(shape=[2, 2], bitstring="0110"))
    np.testing.assert_array_equal(full, [[0, 1], [1, 0]])
    assert api.decode_mask(api.Mask(bitbounds=[0, 0, 1, 1], bitstring="1")).shape == (256, 256)


def test_png_mask_alpha_or_red_channel():
    rgba = np.zeros((5, 7, 4), np.uint8)
    rgba[1:3, 2:6, 3] = 10  # any alpha > 0 is painted
    rgba[4, 0] = (255, 0, 0, 0)  # opaque colour without alpha is not
    got = api.decode_mask(api.Mask(bitstring=png_url(rgba)))
    np.testing.assert_array_equal(got, rgba[..., 3] > 0)
    rgb = np.full((5, 7, 3), 255, np.uint8)
    rgb[0, :3, 0] = 254  # no alpha channel: red < 255 is painted
    rgb[2, 2] = (255, 0, 0)  # red 255 is not, whatever the rest
    got = api.decode_mask(api.Mask(bitstring=png_url(rgb)))
    np.testing.assert_array_equal(got, rgb[..., 0] < 255)
    # A PNG placed at bitbounds inside a larger canvas.
    placed = api.decode_mask(
        api.Mask(shape=[9, 9], bitbounds=[2, 1, 7, 8], bitstring=png_url(rgba))
    )
    want = np.zeros((9, 9), np.float32)
    want[2:7, 1:8] = rgba[..., 3] > 0
    np.testing.assert_array_equal(placed, want)


@pytest.mark.parametrize("shape", [(256, 256), (37, 53), (8, 8), (5, 3)])
@pytest.mark.parametrize("mode", ["max", "mean"])
def test_pool_equals_intervene_pool_mask(shape, mode):
    m = (np.random.RandomState(sum(shape)).rand(*shape) > 0.8).astype(np.float32)
    want = np.asarray(intervene.pool_mask(m, (4, 4), mode))
    np.testing.assert_allclose(api.pool(m, (4, 4), mode), want, rtol=1e-6)


def _iv(units, alphas, values, mask=None, pooling="max"):
    abl = [{"layer": "layer4", "unit": u, "alpha": a, "value": v}
           for u, a, v in zip(units, alphas, values, strict=True)]  # fmt: skip
    return api.Intervention(ablations=abl, mask=mask, maskpooling=pooling)


def test_planes_equal_intervene_compose():
    rs = np.random.RandomState(0)
    masks = [(rs.rand(16, 16) > 0.6).astype(np.float32) for _ in range(3)]
    ivs = [
        _iv([0, 2, 5], [1.0, 0.5, 1.0], [3.0, 2.0, 1.5],
            api.Mask(shape=[16, 16], bitstring=_bits(masks[0]))),
        _iv([2, 3], [1.0, 0.25], [0.0, 4.0]),  # no mask: the whole map
        _iv([5, 1, 5], [0.3, 1.0, 0.7], [9.0, 1.0, 2.5],  # unit 5 twice: the last entry counts
            api.Mask(shape=[16, 16], bitstring=_bits(masks[2])), "mean"),
        _iv([4], [0.0], [0.0]),  # alpha = value = 0 sets nothing
    ]  # fmt: skip
    a, v = api.planes(ivs, SPEC)
    edits = [
        intervene.make("layer4", [1, 0, 0.5, 0, 0, 1], [3, 0, 2, 0, 0, 1.5],
                       intervene.pool_mask(masks[0], (4, 4))),
        intervene.make("layer4", [0, 0, 1, 0.25, 0, 0], [0, 0, 0, 4, 0, 0]),
        intervene.make("layer4", [0, 1, 0, 0, 0, 0.7], [0, 1, 0, 0, 0, 2.5],
                       intervene.pool_mask(masks[2], (4, 4), "mean")),
    ]  # fmt: skip
    want = intervene.compose(edits)
    np.testing.assert_allclose(a, np.broadcast_to(want.alpha, a.shape), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(v, np.broadcast_to(want.value, v.shape), rtol=1e-5, atol=1e-6)
    assert (a[..., 4] == 0).all()
    # The edit they make equals applying the edits one after another.
    x = np.random.RandomState(1).rand(1, 4, 4, 6).astype(np.float32)
    seq = x
    for e in edits:
        seq = intervene.apply_edit(seq, e)
    np.testing.assert_allclose(x * (1 - a) + v * a, seq, rtol=1e-5, atol=1e-6)
    # No interventions: the identity planes.
    a0, v0 = api.planes([], SPEC)
    assert a0.shape == (4, 4, 6) and not a0.any() and not v0.any()


def _bits(m: np.ndarray) -> str:
    return "".join("1" if b else "0" for b in m.reshape(-1))


# ------------------------------------------------------------------------------ generate


def test_generate_equals_intervene_tail(world, client):
    eng, module, params = world.eng, world.module, world.params
    vals = eng.levels.at([0.99])[:, 0]
    door = W.order(world.record, "door-iou")[:10]
    sky = W.order(world.record, "sky-iou")[:4]
    body = {
        "project": W.PROJECT,
        "ids": [3, 7],
        "interventions": [
            {"ablations": [{"layer": "layer4", "unit": int(u), "value": float(vals[u])}
                           for u in door],
             "mask": {"bitstring": box_mask(96, 64, 192, 128)}},
            {"ablations": [{"layer": "layer4", "unit": int(u)} for u in sky],
             "mask": {"shape": [64, 64], "bitbounds": [0, 0, 16, 64], "bitstring": "1" * 1024}},
        ],
    }  # fmt: skip
    r = client.post("/api/generate", json=body)
    assert r.status_code == 200, r.text
    assert r.headers["server-timing"].startswith("generate;dur=")
    got = np.stack([decode_png(x["d"]) for x in r.json()["res"]])
    z = proggan.sample_z(8, 1, module.sizes[0])[[3, 7]]
    h = jax.jit(lambda z: intervene.prefix(module, params, z, "layer4"))(jax.device_put(z))
    m1 = np.zeros((256, 256), np.float32)
    m1[96:192, 64:128] = 1
    m2 = np.zeros((64, 64), np.float32)
    m2[:16] = 1
    edits = [
        intervene.insertion("layer4", door, vals, intervene.pool_mask(m1, (8, 8))),
        intervene.ablation("layer4", sky, 128, intervene.pool_mask(m2, (8, 8))),
    ]
    tail = jax.jit(lambda h, e: intervene.tail(module, params, h, "layer4", e))
    want = draw.to_uint8(tail(h, edits))
    assert np.abs(got.astype(int) - want.astype(int)).max() <= 1
    plain = client.post("/api/generate", json={"project": W.PROJECT, "ids": [3, 7]}).json()
    assert (got != np.stack([decode_png(x["d"]) for x in plain["res"]])).mean() > 0.05
    # The same latents given as zs, with the same edit: the same images.
    r2 = client.post("/api/generate", json={**body, "ids": None, "zs": z.tolist()})
    assert r2.status_code == 200, r2.text
    assert [x["d"] for x in r2.json()["res"]] == [x["d"] for x in r.json()["res"]]


def test_put_activation_renders_like_its_latent(world):
    # Where an inverted real image would come in: a layer representation, not a latent.
    eng = world.eng
    h = eng.activations([5])[0]
    eng.put("upload-1", h * 1.0)
    zero = np.zeros(h.shape, np.float32)
    a, _ = eng.render([eng.activation("upload-1")], zero, zero)
    b, _ = eng.generate([5])
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match="no activation stored"):
        eng.activation("nope")


def test_concurrent_strokes_give_the_sequential_images(world):
    eng = world.eng
    shape = (*eng.spec.size, eng.spec.num_units)
    rs = np.random.RandomState(3)
    jobs = [(i, rs.rand(*shape).astype(np.float32) * 0.5, rs.rand(*shape).astype(np.float32) * 4)
            for i in range(8)]  # fmt: skip
    want = [eng.generate([i], None, a, v)[0] for i, a, v in jobs]
    got = [None] * len(jobs)

    def work(k):
        i, a, v = jobs[k]
        got[k] = eng.generate([i], None, a, v)[0]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _one(ablation=None, **iv):
    """A request for image 0 with one intervention (unit 1 of layer4 unless told)."""
    iv = {"ablations": [ablation or {"layer": "layer4", "unit": 1}], **iv}
    return {"project": W.PROJECT, "ids": [0], "interventions": [iv]}


P = W.PROJECT
BAD = [
    ({"ids": [0]}, 422, "project"),
    ({"project": P}, 422, "exactly one of 'ids' and 'zs'"),
    ({"project": P, "ids": [0], "zs": [[0.0] * 128]}, 422, "exactly one"),
    ({"project": P, "ids": [-1]}, 422, "ids must lie"),
    ({"project": P, "ids": [10_999]}, 400, "ids [10999]: no uploaded picture has this id"),
    ({"project": P, "ids": list(range(17))}, 422, "at most 16"),
    ({"project": P, "ids": ["a"]}, 422, "integer"),
    ({"project": "other", "ids": [0]}, 404, "unknown project 'other'"),
    ({"project": P, "zs": [[0.0] * 5]}, 400, "zs: expected finite latents of 128"),
    (_one({"layer": "layer3", "unit": 1}), 400, "this server edits 'layer4'"),
    (_one({"layer": "layer4", "unit": 128}), 400, "unit 128 is out of range 0..127"),
    (_one({"layer": "layer4", "unit": 1, "alpha": 2}), 422, "less than or equal to 1"),
    (_one(mask={"shape": [2, 2], "bitstring": "101"}), 400, "4 characters '0'/'1'"),
    (_one(mask={"shape": [2, 2], "bitstring": "10x1"}), 400, "characters '0'/'1'"),
    (
        _one(mask={"shape": [4, 4], "bitbounds": [0, 0, 5, 1], "bitstring": "11111"}),
        400,
        "outside mask.shape",
    ),
    (_one(mask={"bitstring": "data:image/png;base64,AAAA"}), 400, "not a readable PNG"),
    (_one(mask={"bitstring": "1", "bitbounds": [3, 0, 1, 1]}), 422, "bitbounds must be"),
    (_one(maskpooling="min"), 422, "'max' or 'mean'"),
]


def test_malformed_requests_never_reach_the_model(world, client, monkeypatch):
    def boom(*args, **kwargs):
        raise AssertionError("a malformed request reached the model")

    monkeypatch.setattr(world.eng, "render", boom)
    monkeypatch.setattr(world.eng, "_prefix", boom)
    for body, status, message in BAD:
        r = client.post("/api/generate", json=body)
        assert r.status_code == status, (body, r.text)
        assert message in r.text, (message, r.text)
    r = client.post(
        "/api/generate", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert r.status_code == 422


def test_get_routes(world, client):
    q = {"project": W.PROJECT, "layer": "layer4"}
    assert client.get("/api/all_projects").json() == [
        {"project": W.PROJECT, "info": {"layers": ["layer4"], "upload": False}}]  # fmt: skip
    layers = client.get("/api/layers", params={"project": W.PROJECT}).json()["res"]
    assert layers == [{"layer": "layer4", "channels": 128, "shape": [8, 8]}]
    units = client.get("/api/units", params=q).json()["res"]
    assert len(units) == 128 and units[7] == {"unit": 7, "img": None, "label": "-"}
    rankings = client.get("/api/rankings", params=q).json()["res"]
    assert [r["name"] for r in rankings] == ["door-iou", "sky-iou", "building-iou", "grass-iou"]
    assert rankings[0]["scores"] == world.record["layers"][0]["rankings"][0]["score"]
    # Levels: the exact hazen quantiles of the layer over the first 50 latents of seed 1.
    levels = client.get("/api/levels", params={**q, "quantiles": "0.99,0.5"}).json()
    z = proggan.sample_z(50, 1, 128)
    brute = ace.unit_quantiles(world.module, world.params, z, "layer4", [0.99, 0.5], 50)
    assert levels["request"]["quantiles"] == [0.99, 0.5]
    np.testing.assert_allclose(levels["res"], brute.T, rtol=1e-5)
    labels = client.get("/api/labels", params={"project": W.PROJECT}).json()["res"]
    assert labels[W.DOOR]["label"] == "door" and labels[W.DOOR]["color"] == [140, 70, 20]
    assert client.get("/api/levels", params={**q, "quantiles": "1.5"}).status_code == 400
    assert client.get("/api/units", params={**q, "layer": "layer3"}).status_code == 404
    assert "/api/generate" in client.get("/api/openapi.json").json()["paths"]
    assert client.get("/api/docs").status_code == 404  # its page would load a CDN
    page = client.get("/")
    assert page.status_code == 200 and '<canvas id="paint"' in page.text
    assert "http" not in page.text.split("<script>")[1]  # no CDN: everything inline


# ------------------------------------------------------------------------- ground truth


def _cells(labels, label):
    n = len(labels)
    return (labels == label).reshape(n, 8, 8, 8, 8).mean(axis=(2, 4))


def _paint_door(client, world, seed, rows, col):
    """Paint 'door' (top 10 units at their 0.99 level) over cells ``rows x [col]`` of
    ``seed`` through the API as the browser does (a 256 x 256 PNG stroke); returns (door
    fraction in the stroke before, after, mean |change| inside, mean |change| 16+ px away)."""
    vals = world.eng.levels.at([0.99])[:, 0]
    units = W.order(world.record, "door-iou")[:10]
    y0, y1, x0, x1 = rows[0] * 8, (rows[-1] + 1) * 8, col * 8, (col + 1) * 8
    stroke = {"ablations": [{"layer": "layer4", "unit": int(u), "value": float(vals[u])}
                            for u in units],
              "mask": {"bitstring": box_mask(4 * y0, 4 * x0, 4 * y1, 4 * x1)}}  # fmt: skip
    body = {"project": W.PROJECT, "ids": [seed]}
    before = decode_png(client.post("/api/generate", json=body).json()["res"][0]["d"])
    r = client.post("/api/generate", json={**body, "interventions": [stroke]})
    after = decode_png(r.json()["res"][0]["d"]).astype(np.float32)
    before = before.astype(np.float32)
    x = jnp.asarray(after[None] / 255.0 * 2 - 1)
    labels = np.asarray(world.eng._segment(x))[0]
    yy, xx = np.mgrid[:64, :64]
    dist = np.maximum(np.maximum(y0 - yy, yy - (y1 - 1)), np.maximum(x0 - xx, xx - (x1 - 1)))
    inside, far = dist < 0, dist >= 16
    diff = np.abs(after - before).mean(-1) / 255
    base = world.labels[seed]
    return ((base[inside] == W.DOOR).mean(), (labels[inside] == W.DOOR).mean(),
            diff[inside].mean(), diff[far].mean())  # fmt: skip


def test_door_grows_on_walls_not_in_the_sky(world, client):
    labels = world.labels
    building, door, sky = (_cells(labels, c) for c in (W.BUILDING, W.DOOR, W.SKY))
    ground = sum(_cells(labels, c) for c in W.GROUND)
    # A wall's ground line: a cell holding building and grass/road under a cell of wall,
    # no door in either. The stroke covers both cells (1 wide, 2 tall).
    # A patch of sky of the same shape: the first one in each image.
    walls, skies = [], {}
    for s in range(len(labels)):
        for i in range(1, 8):
            for j in range(8):
                if (
                    building[s, i, j] >= 0.4
                    and ground[s, i, j] >= 0.2
                    and building[s, i - 1, j] >= 0.75
                    and door[s, i - 1 : i + 1, j].max() < 0.02
                ):
                    walls.append((s, [i - 1, i], j))
                if (sky[s, i - 1 : i + 1, j] >= 0.98).all():
                    skies.setdefault(s, (s, [i - 1, i], j))
    walls, skies = walls[:20], list(skies.values())[:20]
    assert len(walls) == 20 and len(skies) == 20
    wall = np.array([_paint_door(client, world, *loc) for loc in walls])
    air = np.array([_paint_door(client, world, *loc) for loc in skies])
    # Measured: wall door fraction 0.000 -> 0.10 on average (6 of 20 spots over 0.1); sky 0.
    assert wall[:, 0].mean() < 0.01 and air[:, 0].mean() == 0
    assert wall[:, 1].mean() >= 0.06 and (wall[:, 1] >= 0.1).sum() >= 4
    assert air[:, 1].mean() <= 0.005
    # Pixels two layer cells (16 px) or more from the stroke do not change.
    assert wall[:, 3].max() <= 0.002 and air[:, 3].max() <= 0.002
    print(f"wall: door {wall[:, 0].mean():.3f} -> {wall[:, 1].mean():.3f}, "
          f"{(wall[:, 1] >= 0.1).sum()}/20 over 0.1, |change| inside {wall[:, 2].mean():.3f}, "
          f"far {wall[:, 3].max():.4f}; sky: door {air[:, 0].mean():.3f} -> "
          f"{air[:, 1].mean():.3f}, |change| inside {air[:, 2].mean():.3f}, "
          f"far {air[:, 3].max():.4f}")  # fmt: skip


# ---------------------------------------------------------------------------------- upload

UPLOAD_STEPS = 20  # the app's default is 200; 20 keeps the tests quick


@pytest.fixture(scope="module")
def uploads(world):
    from gdjax.app import server, upload

    inv = upload.Inverter.find(world.module, world.params, world.seg, W.LAYER, UPLOAD_STEPS)
    assert inv is not None  # the demo encoder is shipped for layer4
    assert upload.Inverter.find(world.module, world.params, world.seg, "layer3") is None
    app = server.create_app(world.eng, world.record, project=W.PROJECT, inverter=inv)
    return types.SimpleNamespace(inv=inv, client=TestClient(app))


def _scene(k: int) -> np.ndarray:
    """Held-out rendered scene ``k`` (a picture the demo GAN never made) as uint8."""
    from gdjax import scenes
    from gdjax.invert import evaluate, image

    return image.to_uint8(scenes.render(evaluate.EVAL_SEED, 1, size=64, start=k)[0][0])


def _url(picture: np.ndarray, fmt: str = "png", **save) -> str:
    buf = io.BytesIO()
    Image.fromarray(picture).save(buf, fmt, **save)
    mime = "jpeg" if fmt == "jpeg" else fmt
    return f"data:image/{mime};base64," + base64.b64encode(buf.getvalue()).decode()


def _psnr(a, b) -> float:
    mse = np.mean(np.square(a.astype(np.float64) - b.astype(np.float64)))
    return float(10 * np.log10(255.0**2 / mse))


def test_upload_inverts_a_scene_and_shows_it(world, uploads):
    from gdjax import invert

    pic = _scene(85)
    r = uploads.client.post("/api/upload", json={"project": W.PROJECT, "image": _url(pic)})
    assert r.status_code == 200, r.text
    res = r.json()["res"]
    uid = res["id"]
    assert uid >= api.UPLOAD_ID0 and r.headers["server-timing"].startswith("upload;dur=")
    recon = decode_png(res["d"])
    # Measured on this scene: 16.6 dB from the encoder alone, 20.9 dB after 20 steps (26.4
    # after the app's default 200).
    assert _psnr(recon, pic) >= 20.0 and abs(res["psnr"] - _psnr(recon, pic)) < 0.01
    # The same path as gdjax.invert: encoder + the configured Adam steps (the same floats in:
    # Adam's first steps follow the gradient's sign, so a 1-ulp change in the target moves
    # a few pixels).
    target = pic.astype(np.float32) / 127.5 - 1.0
    rep = invert.invert(target, world.module, world.params, world.seg, "layer4",
                        uploads.inv.enc, uploads.inv.cfg)  # fmt: skip
    want = draw.to_uint8(invert.generate(world.module, world.params, rep))[0]
    assert np.abs(recon.astype(int) - want.astype(int)).max() <= 1
    # Unedited, the uploaded id shows the picture itself, byte for byte.
    shown = uploads.client.post("/api/generate", json={"project": W.PROJECT, "ids": [uid]})
    np.testing.assert_array_equal(decode_png(shown.json()["res"][0]["d"]), pic)
    # A JPEG and a picture of another size are accepted too (centre crop, resize).
    big = np.asarray(Image.fromarray(pic).resize((128, 96)))
    r2 = uploads.client.post(
        "/api/upload", json={"project": W.PROJECT, "image": _url(big, "jpeg", quality=95)}
    )
    assert r2.status_code == 200, r2.text
    assert r2.json()["res"]["id"] == uid + 1


def test_stroke_on_an_upload_keeps_the_picture_away_from_it(world, uploads):
    from gdjax import invert

    pic = _scene(85)
    uid = uploads.client.post(
        "/api/upload", json={"project": W.PROJECT, "image": _url(pic)}
    ).json()["res"]["id"]
    vals = world.eng.levels.at([0.99])[:, 0]
    units = W.order(world.record, "door-iou")[:10]
    y0, y1, x0, x1 = 40, 56, 24, 40  # image pixels; the 256-px stroke canvas is 4x
    stroke = {"ablations": [{"layer": "layer4", "unit": int(u), "value": float(vals[u])}
                            for u in units],
              "mask": {"bitstring": box_mask(4 * y0, 4 * x0, 4 * y1, 4 * x1)}}  # fmt: skip
    body = {"project": W.PROJECT, "ids": [uid, 3], "interventions": [stroke]}
    r = uploads.client.post("/api/generate", json={**body, "segmentation": True})
    assert r.status_code == 200, r.text
    got = decode_png(r.json()["res"][0]["d"])
    yy, xx = np.mgrid[:64, :64]
    dist = np.maximum(np.maximum(y0 - yy, yy - (y1 - 1)), np.maximum(x0 - xx, xx - (x1 - 1)))
    far, inside = dist > 8, dist < 0  # blend: at most 8 px beyond the painted pixels
    np.testing.assert_array_equal(got[far], pic[far])
    change = np.abs(got.astype(float) - pic).mean(-1) / 255
    assert change[inside].mean() > 0.05  # the edit shows inside the stroke
    # Against gdjax.invert.edit on the same representation: the same blended picture.
    h = world.eng.activation(uid)[None]
    rep = invert.Representation("layer4", h)
    m = np.zeros((256, 256), np.float32)
    m[4 * y0 : 4 * y1, 4 * x0 : 4 * x1] = 1
    edit = intervene.insertion("layer4", units, vals, intervene.pool_mask(m, (8, 8)))
    region = np.zeros((64, 64), np.float32)
    region[y0:y1, x0:x1] = 1
    want = invert.edit(world.module, world.params, rep, edit, pic / 127.5 - 1.0, region).blended
    close = np.abs(got.astype(int) - draw.to_uint8(want[0]).astype(int)).max(-1) <= 1
    assert close.mean() >= 0.99
    # The latent in the same request is the plain GAN edit.
    plain = uploads.client.post("/api/generate", json={**body, "ids": [3]}).json()["res"][0]
    lat = decode_png(r.json()["res"][1]["d"]).astype(int)
    assert np.abs(lat - decode_png(plain["d"]).astype(int)).max() <= 1
    print(
        f"upload edit: |change| inside {change[inside].mean():.3f}, "
        f"agreement with invert.edit {close.mean():.4f}"
    )


def _gray_png():
    buf = io.BytesIO()
    Image.fromarray(np.full((32, 32), 90, np.uint8)).save(buf, "png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_bad_uploads_never_reach_the_model(world, uploads, monkeypatch):
    from gdjax import invert

    def boom(*args, **kwargs):
        raise AssertionError("a bad upload reached the model")

    for name in ("invert", "encode", "optimize"):
        monkeypatch.setattr(invert, name, boom)
    for name in ("render", "_prefix", "_tail", "put"):
        monkeypatch.setattr(world.eng, name, boom)
    rgb = np.full((32, 32, 3), 120, np.uint8)
    text = "data:image/png;base64," + base64.b64encode(b"not a picture").decode()
    bad = [
        ({"image": text}, 400, "image: not a PNG or JPEG picture PIL can read"),
        ({"image": _gray_png()}, 400, "image: grayscale image (mode L); give an RGB image"),
        ({"image": png_url(np.full((32, 32, 4), 200, np.uint8))}, 400, "alpha channel"),
        ({"image": _url(rgb, "gif")}, 400, "expected a PNG or JPEG data URL"),
        ({"image": _url(rgb, "gif").replace("/gif", "/png")}, 400, "a GIF file; give a PNG"),
        ({"image": _url(rgb[:4])}, 400, "32x4 is too small"),
        ({"image": "hello"}, 400, "expected a PNG or JPEG data URL"),
        ({"image": "data:image/png;base64,@@@"}, 400, "base64 is malformed"),
        ({}, 422, "image"),
    ]
    for body, status, message in bad:
        r = uploads.client.post("/api/upload", json={"project": W.PROJECT, **body})
        assert r.status_code == status, (message, r.text)
        assert message in r.text, (message, r.text)
    r = uploads.client.post("/api/upload", json={"project": "other", "image": _url(rgb)})
    assert r.status_code == 404
    # No encoder for the layer (the world's own app): a 400, and the page hides the button.
    r = TestClient(world.app).post("/api/upload", json={"project": W.PROJECT, "image": _url(rgb)})
    assert r.status_code == 400 and "no encoder for this generator/layer" in r.text
    info = uploads.client.get("/api/all_projects").json()[0]["info"]
    assert info["upload"] is True
