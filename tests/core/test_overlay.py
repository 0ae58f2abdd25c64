"""The segmentation overlay against its definition: (1 - alpha) * image + alpha * class colour, as BGR."""
from __future__ import annotations

import numpy as np
import pytest

from glassbox.stages.camera import label_colors, segmentation_overlay

NAMES = ("unlabeled", "road", "sidewalk", "building", "vegetation", "pole", "car", "pedestrian", "cyclist")


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_overlay_is_the_weighted_sum_of_image_and_class_colour(alpha):
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
    labels = rng.integers(0, len(NAMES), (37, 53))
    labels[0, :5] = [len(NAMES), 200, 255, -1, 0]          # out of range: clipped to the last / first class
    clipped = np.clip(labels, 0, len(NAMES) - 1)
    expected = (1 - alpha) * rgb.astype(np.float64) + alpha * label_colors(NAMES)[clipped].astype(np.float64)
    out = segmentation_overlay(rgb, labels, NAMES, alpha)
    assert out.dtype == np.uint8 and out.shape == rgb.shape and out.flags.c_contiguous
    np.testing.assert_allclose(out.astype(np.float64), expected[:, :, ::-1], atol=0.5 + 1e-9)
