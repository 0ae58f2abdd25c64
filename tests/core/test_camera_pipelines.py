"""Camera pipelines: torch vs ONNX Runtime parity (outputs and entropy profiles) for the refiner, BiSeNet and
GEM, plus the pipelines' output contracts (shapes, identity refiner, dead thermal sensor, probes)."""
import cv2
import numpy as np
import pytest
import torch

from glassbox.config import to_dict
from glassbox.entropy import ProbeConfig
from glassbox.export import export_with_features
from glassbox.pipelines.fusion import FusionPipeline, FusionPipelineConfig
from glassbox.pipelines.refiner import RefinerPipeline, RefinerPipelineConfig
from glassbox.pipelines.segmentation import SegmentationPipeline, SegmentationPipelineConfig
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig
from glassbox.vision.gem import Gem, GemConfig
from glassbox.vision.refiner import Refiner

PROBE = ProbeConfig(estimator="gaussian", max_samples=32, max_dim=64)


def _image(h, w, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
    return np.clip(base * 0.7 + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _save(model, path):
    torch.save({"config": to_dict(model.cfg), "state_dict": model.state_dict()}, path)


def _perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=g))
    return model


def _same_profile(a, b, rtol):
    assert a.layer_names == b.layer_names
    np.testing.assert_allclose(a.entropy_nats, b.entropy_nats, rtol=rtol, atol=1e-3)


def test_refiner_parity_and_identity(tmp_path):
    img = _image(96, 128)
    identity = RefinerPipeline(RefinerPipelineConfig(probe=PROBE))
    assert np.array_equal(identity(img).refined, img)            # untrained refiner = identity
    model = _perturb(Refiner(), 1).eval()
    _save(model, tmp_path / "r.pt")
    feats = [n for n in model.forward_features(torch.rand(1, 3, 32, 32)) if n != "stage3"]
    export_with_features(model, {"image": torch.rand(1, 3, 64, 80)}, tmp_path / "r.onnx", feature_names=feats,
                         dynamic_spatial=True)
    pt = RefinerPipeline(RefinerPipelineConfig(model_path=str(tmp_path / "r.pt"), probe=PROBE))
    ort = RefinerPipeline(RefinerPipelineConfig(backend="onnxruntime", model_path=str(tmp_path / "r.onnx"),
                                                probe=PROBE))
    x = (img.astype(np.float32) / 255).transpose(2, 0, 1)[None]
    a, _ = pt.refine_float(x)
    b, _ = ort.refine_float(x)                                   # another size than the export example
    assert a.shape == b.shape == x.shape
    np.testing.assert_allclose(a, b, atol=1e-4)
    ra, rb = pt(img), ort(img)
    assert np.abs(ra.refined.astype(int) - rb.refined.astype(int)).max() <= 1
    assert not np.array_equal(ra.refined, img)
    _same_profile(ra.entropy, rb.entropy, rtol=1e-3)


def test_segmentation_parity(tmp_path):
    cfg = BiSeNetConfig(num_classes=3)
    model = BiSeNet(cfg).eval()
    _save(model, tmp_path / "s.pt")
    export_with_features(model, {"image": torch.rand(1, 3, 64, 96)}, tmp_path / "s.onnx", dynamic_spatial=True,
                         feature_names=["spatial", "context3", "context4", "context5", "fused"])
    common = dict(input_size=(96, 64), model=cfg, probe=PROBE)
    pt = SegmentationPipeline(SegmentationPipelineConfig(model_path=str(tmp_path / "s.pt"), **common))
    ort = SegmentationPipeline(SegmentationPipelineConfig(backend="onnxruntime",
                                                          model_path=str(tmp_path / "s.onnx"), **common))
    img = _image(120, 150, seed=2)
    a, b = pt(img), ort(img)
    assert a.labels.shape == img.shape[:2] and a.labels.dtype == np.uint8
    assert (a.labels == b.labels).mean() > 0.999
    np.testing.assert_allclose(a.uncertainty, b.uncertainty, atol=1e-4)
    assert 0 <= a.uncertainty.min() and a.uncertainty.max() <= np.log(3) + 1e-6
    _same_profile(a.entropy, b.entropy, rtol=1e-3)
    assert a.class_names[:3] == ("unlabeled", "road", "sidewalk")
    # the card's decision bias moves the labels only: argmax(logits + b); the entropy map is the model's (the
    # untrained network's labels may be all one class, so the offset goes to the class it uses least)
    logits = pt.runtime.run({"image": (cv2.resize(img, (96, 64), interpolation=cv2.INTER_AREA)
                                       .astype(np.float32) / 255.0).transpose(2, 0, 1)[None]}).outputs["logits"][0]
    rare = int(np.bincount(logits.argmax(0).ravel(), minlength=len(logits)).argmin())   # the least-used class
    bias = np.zeros(len(logits), np.float32)
    bias[rare] = float(np.percentile(logits.max(0) - logits[rare], 80)) + 1e-3  # 80% of the pixels go to it
    biased = SegmentationPipeline(SegmentationPipelineConfig(model_path=str(tmp_path / "s.pt"),
                                                             decision_bias=tuple(bias.tolist()), **common))
    c = biased(img)
    want = cv2.resize((logits + bias[:, None, None]).argmax(0).astype(np.uint8), img.shape[1::-1],
                      interpolation=cv2.INTER_NEAREST)
    np.testing.assert_array_equal(c.labels, want)
    assert (c.labels == rare).mean() >= 0.75 and not np.array_equal(c.labels, a.labels)
    np.testing.assert_array_equal(c.uncertainty, a.uncertainty)


@pytest.mark.parametrize("stride", [8, 4])
def test_fusion_parity_and_missing_thermal(tmp_path, stride):
    cfg = GemConfig(width_mult=0.25, stride=stride)
    model = Gem(cfg).eval()
    _save(model, tmp_path / "g.pt")
    example = {"rgb": torch.rand(1, 3, 64, 96), "thermal": torch.rand(1, 1, 64, 96)}
    spec = export_with_features(model, example, tmp_path / "g.onnx", dynamic_spatial=True,
                                feature_names=["feat_rgb", "feat_thermal", "fused", "neck"])
    assert spec["outputs"] == ["heatmap", "size", "offset", "w_rgb", "w_thermal"]
    common = dict(input_size=(96, 64), model=cfg, probe=PROBE, score_threshold=0.0, max_detections=20)
    pt = FusionPipeline(FusionPipelineConfig(model_path=str(tmp_path / "g.pt"), **common))
    ort = FusionPipeline(FusionPipelineConfig(backend="onnxruntime", model_path=str(tmp_path / "g.onnx"), **common))
    rgb, th = _image(128, 192, seed=3), _image(100, 120, seed=4)[..., 0]
    x_rgb, x_th = pt.prepare(rgb, th)
    oa = pt.runtime.run({"rgb": x_rgb, "thermal": x_th}).outputs
    ob = ort.runtime.run({"rgb": x_rgb, "thermal": x_th}).outputs
    for k in oa:
        np.testing.assert_allclose(oa[k], ob[k], atol=1e-4, rtol=1e-4)
    a, b = pt(rgb, th), ort(rgb, th)
    np.testing.assert_allclose(a.scores, b.scores, atol=1e-4)
    assert a.boxes.shape == (20, 4) and np.all(a.boxes[:, 2] >= a.boxes[:, 0])
    # the stride is read off the output: the best box's centre is its peak cell plus offset, in RGB pixels
    heat = oa["heatmap"][0]
    assert x_rgb.shape[2] // heat.shape[1] == stride
    k, y, x = np.unravel_index(np.argmax(heat), heat.shape)
    cx, cy = (a.boxes[0, 0] + a.boxes[0, 2]) / 2, (a.boxes[0, 1] + a.boxes[0, 3]) / 2
    sx, sy = stride * rgb.shape[1] / 96, stride * rgb.shape[0] / 64
    assert a.classes[0] == k
    assert cx == pytest.approx((x + oa["offset"][0, 0, y, x]) * sx, abs=1e-3)
    assert cy == pytest.approx((y + oa["offset"][0, 1, y, x]) * sy, abs=1e-3)
    assert a.w_rgb == pytest.approx(b.w_rgb, rel=1e-4, abs=1e-7)
    _same_profile(a.entropy, b.entropy, rtol=1e-3)
    dead = pt(rgb, None)
    assert dead.w_thermal < a.w_thermal and dead.rgb_share > a.rgb_share


def test_thermal_is_warped_with_the_homography():
    cfg = FusionPipelineConfig(input_size=(64, 32), homography_thermal_to_rgb=(1, 0, 16, 0, 1, 0, 0, 0, 1),
                               model=GemConfig(width_mult=0.25))
    pipe = FusionPipeline(cfg)
    th = np.zeros((32, 64), np.uint8)
    th[:, :8] = 200
    _, x_th = pipe.prepare(np.zeros((32, 64, 3), np.uint8), th)
    cols = np.nonzero(x_th[0, 0].mean(axis=0) > 0.5)[0]
    assert cols.min() == 16 and cols.max() == 23                  # shifted by 16 px, as the homography says
