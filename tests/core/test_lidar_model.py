"""SPI network, targets, decoding and NMS on hand-made scans (a small ray caster against boxes and a ground plane)."""
import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from glassbox.lidar import (MODELS, DecodeConfig, ProjectionConfig, SpiConfig, TargetConfig, build_model,
                            build_targets, decode, normalise, project_points, rotated_nms, spi_config, spi_loss)
from glassbox.heads import Detection3DHead
from glassbox.lidar.decode import DecodeError, binary_entropy
from glassbox.lidar.iou import bev_iou



@pytest.fixture(autouse=True)
def one_thread():
    """The CI machine is small and shared: one intra-op thread avoids spin-waiting between busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


CFG = ProjectionConfig(height=32, width=512, fov_up_deg=4.0, fov_down_deg=-20.0)


def cast(boxes: np.ndarray, cfg: ProjectionConfig = CFG, ground_z: float = -1.7) -> np.ndarray:
    """Points (N, 4) where rays through every pixel centre first hit a box (x, y, z, l, w, h, yaw) or the ground."""
    theta = cfg.row_elevations_rad()
    phi = cfg.col_azimuths_rad()
    t_, p_ = np.meshgrid(theta, phi, indexing="ij")
    d = np.stack([np.cos(t_) * np.cos(p_), np.cos(t_) * np.sin(p_), np.sin(t_)], -1).reshape(-1, 3)   # (R, 3)
    best = np.where(d[:, 2] < 0, ground_z / np.minimum(d[:, 2], -1e-9), np.inf)
    for b in np.asarray(boxes).reshape(-1, 7):
        c, s = math.cos(b[6]), math.sin(b[6])
        rot = np.array([[c, s, 0], [-s, c, 0], [0, 0, 1]])       # world -> box
        o = rot @ (-b[:3])
        dl = d @ rot.T
        half = b[3:6] / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            t1 = (-half - o) / dl
            t2 = (half - o) / dl
        tmin = np.nanmax(np.minimum(t1, t2), axis=1)
        tmax = np.nanmin(np.maximum(t1, t2), axis=1)
        hit = (tmax >= tmin) & (tmin > 0)
        best = np.where(hit & (tmin < best), tmin, best)
    ok = np.isfinite(best) & (best < 80)
    pts = d[ok] * best[ok, None]
    return np.column_stack([pts, np.full(len(pts), 0.5)]).astype(np.float32)


SCENE = np.array([[12.0, 3.0, -0.95, 4.2, 1.8, 1.5, 0.4],       # car, front left
                  [-15.0, -6.0, -0.85, 4.5, 1.9, 1.7, 2.0],     # car, behind right
                  [8.0, -4.0, -0.85, 0.6, 0.6, 1.7, -1.0]])     # pedestrian
CLASSES = np.array([0, 0, 1])


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("size", ["default", "teacher"])
def test_every_model_runs_forward(name, size):
    torch.manual_seed(0)
    model = build_model(name, spi_config(size)).eval()
    x = torch.randn(2, 5, 16, 64)
    with torch.no_grad():
        feats = model.forward_features(x)
        out = model.forward_head(feats)
    assert isinstance(out, Detection3DHead) and out.heatmap.shape == (2, 3, 16, 64)
    assert out.offset.shape == out.size.shape == (2, 3, 16, 64) and out.yaw.shape == (2, 3, 16, 64)
    assert all(torch.isfinite(v).all() for v in out)
    names = list(feats)
    assert names[0] == "stem" and names[-1] == "neck"
    for group in model.eloss_groups():
        assert len(group) >= 2 and all(g in feats for g in group)
        assert len({feats[g].shape for g in group}) == 1             # repeated blocks keep their shape
    with pytest.raises(ValueError):
        model(torch.randn(1, 5, 16, 66))                              # width not a multiple of the stride


def test_targets_peaks_spreads_and_empty_boxes():
    img = project_points(cast(SCENE), CFG)
    far_away = np.array([[60.0, 60.0, -0.9, 4.0, 1.8, 1.5, 0.0]])    # beyond the cast range: no points
    boxes = np.vstack([SCENE, far_away])
    t = build_targets(img, boxes[:, :3], boxes[:, 3:6], boxes[:, 6], np.array([0, 0, 1, 0]), TargetConfig())
    hm = t["heatmap"]
    assert hm.min() >= 0 and hm.max() == 1.0
    assert t["stats"] == {"objects": 4, "no_points": 1}
    assert t["centre_pixel"][3].tolist() == [-1, -1]
    for k, cls in enumerate([0, 0, 1]):
        r, c = t["centre_pixel"][k]
        assert hm[cls, r, c] == 1.0 and img.mask[r, c]
        assert t["object_id"][r, c] == k
    assert (hm == 1.0).sum() == 3
    # the same car seen from the same angle nearer spans a larger projected box: its Gaussian is wider
    spans = []
    for dist in (10.0, 30.0):
        car = np.array([[dist, 0.0, -0.95, 4.2, 1.8, 1.5, 0.3]])
        im = project_points(cast(car), CFG)
        tt = build_targets(im, car[:, :3], car[:, 3:6], car[:, 6], np.array([0]))
        spans.append(((tt["heatmap"][0] > 0.5).sum(axis=1).max(), (tt["heatmap"][0] > 0.5).sum(axis=0).max()))
    assert spans[0][0] > spans[1][0] and spans[0][1] >= spans[1][1]
    # regression targets exist exactly on object pixels
    assert ((t["reg_weight"] > 0) == (t["object_id"] >= 0)).all()


def _perfect_outputs(t: dict) -> dict:
    hm = np.clip(t["heatmap"], 1e-6, 1 - 1e-6)
    yaw = t["yaw"].copy()
    yaw[2] = np.where(yaw[2] > 0.5, 10.0, -10.0)                      # direction bit -> a confident logit
    return {"heatmap": np.log(hm / (1 - hm)), "offset": t["offset"], "size": t["size"], "yaw": yaw}


def test_decode_round_trip_reproduces_boxes():
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    det = decode(_perfect_outputs(t), img.xyz, img.mask, DecodeConfig(score_threshold=0.99))
    assert len(det) == 3
    order = np.argsort(det.pixels[:, 1])
    want = np.argsort(t["centre_pixel"][:, 1])
    np.testing.assert_allclose(det.centers[order], SCENE[want, :3], atol=1e-5)
    np.testing.assert_allclose(det.sizes[order], SCENE[want, 3:6], rtol=1e-5)
    dyaw = (det.yaw[order] - SCENE[want, 6] + np.pi) % (2 * np.pi) - np.pi
    np.testing.assert_allclose(dyaw, 0, atol=1e-5)
    np.testing.assert_array_equal(det.classes[order], CLASSES[want])
    # uncertainty: a perfect map decodes the same box at every object pixel, so the spread is ~0
    assert det.centre_spread_m.max() < 1e-4 and det.yaw_spread_rad.max() < 1e-3
    np.testing.assert_allclose(det.score_entropy, binary_entropy(det.scores), rtol=1e-6)


def test_decode_spread_grows_with_disagreeing_pixels():
    img = project_points(cast(SCENE[:1]), CFG)
    t = build_targets(img, SCENE[:1, :3], SCENE[:1, 3:6], SCENE[:1, 6], CLASSES[:1])
    out = _perfect_outputs(t)
    noisy = dict(out, offset=out["offset"] + np.random.default_rng(0).normal(0, 0.5, out["offset"].shape)
                 .astype(np.float32))
    clean = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.5))
    rough = decode(noisy, img.xyz, img.mask, DecodeConfig(score_threshold=0.5))
    assert len(clean) == len(rough) == 1
    assert rough.centre_spread_m[0] > 0.2 > clean.centre_spread_m[0]


def test_rotated_nms_by_hand():
    boxes = np.array([[0, 0, 0, 4, 2, 1.5, 0.0],
                      [0.3, 0, 0, 4, 2, 1.5, 0.1],      # overlaps box 0 heavily
                      [0, 0, 0, 4, 2, 1.5, math.pi / 2],  # IoU 1/3 with box 0
                      [20, 0, 0, 4, 2, 1.5, 0.0]])
    scores = np.array([0.9, 0.95, 0.5, 0.3])
    keep = rotated_nms(boxes, scores, iou_threshold=0.4)
    assert keep.tolist() == [1, 2, 3]
    keep = rotated_nms(boxes, scores, iou_threshold=0.2)
    assert keep.tolist() == [1, 3]
    # other classes are never suppressed
    keep = rotated_nms(boxes, scores, 0.2, classes=np.array([0, 0, 1, 0]))
    assert keep.tolist() == [1, 2, 3]
    assert bev_iou(boxes[:1], boxes[2:3])[0, 0] == pytest.approx(1 / 3)


def test_loss_falls_when_fitting_one_scan():
    torch.manual_seed(0)
    small = ProjectionConfig(height=16, width=256, fov_up_deg=4.0, fov_down_deg=-20.0)
    img = project_points(cast(SCENE, small), small)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    x = torch.from_numpy(np.stack([img.range, *img.xyz.transpose(2, 0, 1), img.intensity]))[None] / 10.0
    tgt = {k: torch.from_numpy(t[k])[None] for k in ("heatmap", "offset", "size", "yaw", "reg_weight")}
    model = build_model("spi", SpiConfig(stage_channels=(8, 16, 16), stage_blocks=(1, 2, 2), stem_channels=8,
                                         neck_channels=8, head_channels=16))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss, terms = spi_loss(model(x), tgt)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        assert set(terms) == {"heatmap", "offset", "size", "yaw", "direction"}
    assert losses[-1] < 0.5 * losses[0]


def test_balanced_regression_weights_sum_to_one_per_object():
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES, TargetConfig(balance_power=1.0))
    for k in range(len(SCENE)):
        mine = t["object_id"] == k
        assert mine.sum() > 1 and t["reg_weight"][mine].sum() == pytest.approx(1.0, rel=1e-5)
    assert (t["reg_weight"][t["object_id"] < 0] == 0).all()


def test_heatmap_class_weights_scale_each_class_map():
    from glassbox.lidar.spi import focal_heatmap_loss
    torch.manual_seed(0)
    logits, target = torch.randn(2, 3, 8, 16), torch.rand(2, 3, 8, 16) * 0.9
    target[0, 0, 2, 3] = target[1, 2, 5, 5] = 1.0
    per_class = [focal_heatmap_loss(logits, target, class_weights=torch.eye(3)[k]) for k in range(3)]
    total = focal_heatmap_loss(logits, target)
    assert float(sum(per_class)) == pytest.approx(float(total), rel=1e-6)
    weighted = focal_heatmap_loss(logits, target, class_weights=torch.tensor([1.0, 2.0, 3.0]))
    assert float(weighted) == pytest.approx(float(per_class[0] + 2 * per_class[1] + 3 * per_class[2]), rel=1e-6)


def test_box_vote_keeps_perfect_boxes_and_averages_out_pixel_noise():
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    out = _perfect_outputs(t)
    voted = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.99, box_vote_classes=(0, 1, 2)))
    peak = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.99))
    np.testing.assert_allclose(voted.centers, peak.centers, atol=1e-5)
    np.testing.assert_allclose(voted.sizes, peak.sizes, rtol=1e-5)
    np.testing.assert_allclose(np.cos(voted.yaw - peak.yaw), 1.0, atol=1e-6)      # same direction, not flipped
    # zero-mean noise on every pixel's offset: the mean of k pixels' boxes errs ~1/sqrt(k) as much as one pixel
    one = SCENE[:1]
    img = project_points(cast(one), CFG)
    t = build_targets(img, one[:, :3], one[:, 3:6], one[:, 6], CLASSES[:1])
    out = _perfect_outputs(t)
    err = {False: [], True: []}
    for seed in range(20):
        noisy = dict(out, offset=out["offset"] + np.random.default_rng(seed).normal(0, 0.3, out["offset"].shape)
                     .astype(np.float32))
        for vote in (False, True):
            det = decode(noisy, img.xyz, img.mask, DecodeConfig(score_threshold=0.5, box_vote_classes=(int(CLASSES[0]),) if vote else ()))
            assert len(det) == 1
            err[vote].append(np.linalg.norm(det.centers[0] - one[0, :3]))
    assert np.mean(err[True]) < 0.6 * np.mean(err[False])


def test_box_vote_changes_only_the_classes_it_names():
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    out = _perfect_outputs(t)
    out["offset"] = out["offset"] + np.random.default_rng(1).normal(0, 0.3, out["offset"].shape).astype(np.float32)
    plain = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.5))
    voted = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.5, box_vote_classes=(0,)))
    np.testing.assert_array_equal(plain.classes, voted.classes)
    same = plain.classes == 1
    np.testing.assert_array_equal(voted.centers[same], plain.centers[same])
    assert np.abs(voted.centers[~same] - plain.centers[~same]).max() > 1e-3


def test_box_vote_gate_keeps_out_background_pixels_that_score_for_the_class():
    """The ground and walls around a pedestrian may score for its class (a blurred heatmap); their offsets point
    elsewhere. With the gate the vote is the exact box of the object's own pixels; without it (a gate wider than
    the window) those pixels drag the box off."""
    one = SCENE[2:3]                                                         # the pedestrian
    img = project_points(cast(one), CFG)
    t = build_targets(img, one[:, :3], one[:, 3:6], one[:, 6], CLASSES[2:3])
    out = _perfect_outputs(t)
    obj = t["reg_weight"] > 0
    r0, c0 = t["centre_pixel"][0]
    window = np.zeros_like(obj)
    window[max(0, r0 - 8):r0 + 9, c0 - 16:c0 + 17] = True
    background = window & img.mask & ~obj
    assert background.sum() > obj.sum() > 10
    out["heatmap"][1][background] = 0.0                                      # score 0.5, over the vote ratio
    out["offset"][:, background] = np.array([0.0, 3.0, 0.0], np.float32)[:, None]   # 3 m sideways
    cfg = DecodeConfig(score_threshold=0.9, box_vote_classes=(1,), vote_min_ratio=0.05)
    gated = decode(out, img.xyz, img.mask, cfg)
    assert len(gated) == 1
    np.testing.assert_allclose(gated.centers[0], one[0, :3], atol=1e-5)
    np.testing.assert_allclose(gated.sizes[0], one[0, 3:6], rtol=1e-5)
    open_gate = decode(out, img.xyz, img.mask, replace(cfg, vote_gate_m=(100.0,)))
    assert np.linalg.norm(open_gate.centers[0, :2] - one[0, :2]) > 0.5


def test_box_vote_yaw_only_for_the_classes_named():
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    out = _perfect_outputs(t)
    out["yaw"][:2] = out["yaw"][:2] + np.random.default_rng(3).normal(0, 0.3, out["yaw"][:2].shape).astype(np.float32)
    peak = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.5, box_vote_classes=(0,)))
    turned = decode(out, img.xyz, img.mask, DecodeConfig(score_threshold=0.5, box_vote_classes=(0,),
                                                         vote_yaw_classes=(0,)))
    car = peak.classes == 0
    np.testing.assert_array_equal(peak.yaw[~car], turned.yaw[~car])
    true_yaw = {round(float(c), 3): y for c, y in zip(SCENE[:, 0], SCENE[:, 6])}
    err = {}
    for name, det in (("peak", peak), ("turned", turned)):
        want = np.array([true_yaw[min(true_yaw, key=lambda x: abs(x - c))] for c in det.centers[car, 0]])
        err[name] = np.abs(np.sin(det.yaw[car] - want)).mean()                # axis error
    assert err["turned"] < 0.6 * err["peak"]


def test_decode_config_rejects_bad_vote_settings():
    with pytest.raises(DecodeError):
        DecodeConfig(vote_window=(4,))
    with pytest.raises(DecodeError):
        DecodeConfig(vote_gate_m=(1.0, 0.0))


@pytest.mark.parametrize("kind", ["variational", "mc_dropout"])
def test_sampled_head_reduces_to_the_deterministic_head_and_is_fixed_by_its_index(kind):
    """The deterministic weights in the mean convs with a null noise (eps = 0, or every dropout mask kept) give
    the deterministic model's outputs and zero epistemic parts; the variational graph's moments give, at any
    pixel, the parts of its samples evaluated at every pixel (``peak_parts`` against ``head_samples``); the fixed
    index makes eval deterministic; training reaches both branches of the variational convs."""
    from glassbox.lidar.spi import Spi, peak_parts, sampled_spi_loss, spi_noise_dims
    from glassbox.vnn import bernoulli_split, gaussian_split, probit_logit
    torch.manual_seed(0)
    det = Spi(SpiConfig()).eval()
    model = Spi(SpiConfig(head=kind, head_samples=4)).eval()
    model.load_state_dict(model.variational_state(det.state_dict()))
    x = torch.randn(2, 5, 16, 64)
    d = sum(spi_noise_dims(model.cfg))
    null = torch.zeros(4, d) if kind == "variational" else torch.ones(4, d)
    noise = model.draw_noise(4, torch.Generator().manual_seed(1))
    k, r, c = np.array([0, 1, 2, 0, 2]), np.array([0, 3, 7, 15, 9]), np.array([0, 5, 63, 31, 40])
    with torch.no_grad():
        a, b = det(x), model(x, null)
        heads = {f: v[1].numpy() for f, v in b._asdict().items()}
        for f in ("offset", "size", "yaw"):
            torch.testing.assert_close(getattr(b, f), getattr(a, f), atol=1e-5, rtol=1e-5)
        if kind == "variational":      # the heat map is the Gaussian predictive of the deterministic logit
            torch.testing.assert_close(b.heatmap_mean, a.heatmap, atol=1e-5, rtol=1e-5)
            torch.testing.assert_close(b.heatmap, probit_logit(b.heatmap_mean, b.heatmap_std), atol=0, rtol=0)
            assert (b.heatmap.abs() < a.heatmap.abs()).all() and (b.heatmap * a.heatmap > 0).all()
        else:
            torch.testing.assert_close(b.heatmap, a.heatmap, atol=1e-5, rtol=1e-5)
        zero = peak_parts(model.cfg, heads, k, r, c, null.numpy())
        assert np.abs(zero["score_epistemic"]).max() < 1e-6 and zero["offset_var_epistemic"].max() < 1e-10
        assert (zero["offset_var_aleatoric"] > 0).all()                  # exp of the log-variance rows
        torch.testing.assert_close(model(x).heatmap, model(x).heatmap, atol=0, rtol=0)   # the index
        s = model.head_samples(model.forward_features(x, noise))        # every sample at every pixel
        _, p_ale, p_epi = bernoulli_split(torch.sigmoid(s["heat"]))
        _, v_ale, v_epi = gaussian_split(s["offset"], s["offset_log_var"])
        noisy = model(x, noise)
        parts = peak_parts(model.cfg, {f: v[1].numpy() for f, v in noisy._asdict().items()}, k, r, c,
                           noise.numpy())
        for name, full in (("score_aleatoric", p_ale[1][k, r, c]), ("score_epistemic", p_epi[1][k, r, c]),
                           ("offset_var_aleatoric", v_ale[1][:, r, c]), ("offset_var_epistemic", v_epi[1][:, r, c])):
            np.testing.assert_allclose(parts[name], full.numpy(), rtol=1e-4, atol=1e-7)
        assert parts["score_epistemic"].max() > 0
    model.train()
    img = project_points(cast(SCENE), CFG)
    t = build_targets(img, SCENE[:, :3], SCENE[:, 3:6], SCENE[:, 6], CLASSES)
    targets = {k: torch.from_numpy(np.ascontiguousarray(t[k]))[None] for k in ("heatmap", "offset", "size", "yaw",
                                                                                "reg_weight")}
    feats = model.forward_features(torch.from_numpy(normalise(img))[None])
    s = model.head_samples(feats)
    loss, terms = sampled_spi_loss(kind, s, model.size(s["shared"]), model.yaw(s["shared"]), targets)
    loss.backward()
    assert np.isfinite(list(terms.values())).all()
    grads = {n: p.grad for n, p in model.named_parameters() if n.startswith(("heatmap.", "offset."))}
    assert grads and all(g is not None and float(g.abs().sum()) > 0 for g in grads.values())
