"""Behaviour of the shipped camera models on held-out data (synthetic validation scenes, held-out photographs).

These use the models committed under ``models/`` and frames rendered on the fly from validation scene seeds
that training never saw.
"""
from pathlib import Path

import numpy as np
import pytest
import torch

from glassbox.entropy import ProbeConfig

MODELS = Path(__file__).resolve().parents[2] / "models"
OFF = ProbeConfig(enabled=False)


@pytest.fixture(scope="module")
def frames():
    from glassbox.sim import make_scene, render_cameras, rgb_camera, thermal_camera
    out = []
    for seed, light in ((100_003, "day"), (100_011, "night")):
        scene = make_scene(seed)
        f = render_cameras(scene, rgb_camera(width=320, height=256), thermal_camera(width=320, height=256),
                           scene.ego_pose(3.0), light, seed=seed, t=3.0)
        out.append(f)
    return out


def test_refiner_improves_psnr_on_held_out_photos():
    from glassbox.metrics.image_quality import psnr
    from glassbox.pipelines import RefinerPipeline
    from glassbox.vision.corruptions import EVAL_CORRUPTIONS
    from skimage.data import astronaut

    pipe = RefinerPipeline.from_card(MODELS / "refiner.card.yaml", probe=OFF)
    clean = astronaut()[::2, ::2]
    x = torch.from_numpy(clean).permute(2, 0, 1)[None].float() / 255
    for name in ("brightness--", "brightness++"):
        bad = (EVAL_CORRUPTIONS[name](x)[0].permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        assert psnr(clean, pipe(bad).refined, 255) > psnr(clean, bad, 255) + 0.5, name


def test_segmentation_entropy_higher_on_boundaries(frames):
    from scipy.ndimage import binary_dilation

    from glassbox.classes import TRAVERSABLE_SEMANTIC_IDS
    from glassbox.pipelines import SegmentationPipeline

    pipe = SegmentationPipeline.from_card(MODELS / "bisenet_binary.card.yaml", probe=OFF)
    boundary_means, interior_means = [], []
    for f in frames:
        res = pipe(f.rgb)
        label = np.isin(f.semantic, TRAVERSABLE_SEMANTIC_IDS)
        edge = (np.diff(label, axis=0, prepend=label[:1]) != 0) | (np.diff(label, axis=1, prepend=label[:, :1]) != 0)
        near = binary_dilation(edge, iterations=2)
        far = ~binary_dilation(edge, iterations=12)
        boundary_means.append(res.uncertainty[near].mean())
        interior_means.append(res.uncertainty[far].mean())
        assert (res.labels == label).mean() > 0.85
    assert np.mean(boundary_means) > 2.0 * np.mean(interior_means)


def test_gem_weights_respond_to_a_dead_rgb_sensor(frames):
    from glassbox.metrics.detection2d import box_iou
    from glassbox.pipelines import FusionPipeline

    pipe = FusionPipeline.from_card(MODELS / "gem.card.yaml", probe=OFF)
    for f in frames:
        normal = pipe(f.rgb, f.thermal8)
        dead = pipe(np.zeros_like(f.rgb), f.thermal8)
        assert dead.w_rgb < normal.w_rgb
        assert dead.rgb_share < normal.rgb_share
        # detection continues on the thermal stream: a large ground-truth object is still found
        big = np.minimum(f.boxes2d[:, 2] - f.boxes2d[:, 0], f.boxes2d[:, 3] - f.boxes2d[:, 1]) >= 20
        assert big.any() and len(dead.boxes) > 0
        assert box_iou(dead.boxes, f.boxes2d[big]).max() >= 0.3


def test_gem_falls_back_to_the_rgb_only_card_without_thermal(frames):
    """With thermal absent the shipped fusion card runs its RGB-only fallback, whose detections are exactly those
    of ``gem_rgb`` on its own (the card's ``report.thermal_absent`` shows why: the fused network with a black
    thermal frame is weaker); with thermal present the fusion network runs."""
    from glassbox.pipelines import FusionPipeline

    pipe = FusionPipeline.from_card(MODELS / "gem.card.yaml", probe=OFF, score_threshold=0.2)
    alone = FusionPipeline.from_card(MODELS / "gem_rgb.card.yaml", probe=OFF, score_threshold=0.2)
    assert pipe.fallback is not None and pipe.fallback.cfg.model.fusion == "rgb"
    for f in frames:
        fell_back, reference, fused = pipe(f.rgb, None), alone(f.rgb, None), pipe(f.rgb, f.thermal8)
        assert (fell_back.model, fused.model) == ("gem_rgb", "gem")
        assert len(reference.boxes) > 0
        np.testing.assert_array_equal(fell_back.boxes, reference.boxes)
        np.testing.assert_array_equal(fell_back.scores, reference.scores)
    no_fallback = FusionPipeline.from_card(MODELS / "gem.card.yaml", probe=OFF, rgb_fallback_card="")
    assert no_fallback.fallback is None and no_fallback(frames[0].rgb, None).model == "gem"


def test_gem_fallback_card_must_be_rgb_only(tmp_path):
    from glassbox.pipelines import FusionPipeline
    from glassbox.pipelines.fusion import FusionPipelineError

    with pytest.raises(FusionPipelineError, match="not an RGB-only one"):
        FusionPipeline.from_card(MODELS / "gem.card.yaml", probe=OFF, rgb_fallback_card="gem_thermal.card.yaml")
    with pytest.raises(FusionPipelineError, match="does not exist"):
        FusionPipeline.from_card(MODELS / "gem.card.yaml", probe=OFF, rgb_fallback_card="missing.card.yaml")
