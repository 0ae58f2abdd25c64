"""Photometric corruptions on numpy images (closed forms, agreement with the tensor path) and Random Shadows and
Highlights (Algorithm 1 properties)."""
import numpy as np
import pytest
import torch

from glassbox.vision.corruptions import (CORRUPTIONS, EVAL_CORRUPTIONS, SEED_CORRUPTIONS, CorruptionError,
                                         corrupt_image)
from glassbox.vision.rsh import RshConfig, RshParams, apply_rsh, random_shadows_highlights, rsh_mask, sample_rsh


def adjust_brightness(img, factor):
    return corrupt_image(img, (("brightness", factor),))


def adjust_contrast(img, factor):
    return corrupt_image(img, (("contrast", factor),))


def adjust_hue(img, shift):
    return corrupt_image(img, (("hue", shift),))


@pytest.fixture
def img():
    return np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)


def test_brightness_and_contrast_closed_forms(img):
    x = img.astype(np.float64)
    np.testing.assert_array_equal(adjust_brightness(img, 1.3), np.clip(np.floor(x * 1.3 + 0.5), 0, 255))
    grey_mean = (0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]).mean()
    exp = np.clip(np.floor(1.4 * x + (1 - 1.4) * grey_mean + 0.5), 0, 255)
    np.testing.assert_allclose(adjust_contrast(img, 1.4).astype(float), exp, atol=1)
    assert np.ptp(adjust_contrast(img, 0.0)) <= 1                           # factor 0: one grey level
    np.testing.assert_array_equal(adjust_contrast(img, 1.0), img)
    f = img.astype(np.float32) / 255
    np.testing.assert_allclose(adjust_brightness(f, 0.6), f * 0.6, atol=1e-6)
    assert adjust_brightness(f, 0.6).dtype == np.float32


def test_hue_rotation(img):
    np.testing.assert_allclose(adjust_hue(img, 0.0).astype(int), img.astype(int), atol=1)
    there_and_back = adjust_hue(adjust_hue(img, 0.25), -0.25)
    np.testing.assert_allclose(there_and_back.astype(int), img.astype(int), atol=2)
    grey = np.repeat(img[..., :1], 3, axis=2)
    np.testing.assert_allclose(adjust_hue(grey, 0.3).astype(int), grey.astype(int), atol=1)
    red = np.zeros((2, 2, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_array_equal(adjust_hue(red, 1 / 3)[0, 0], [0, 255, 0])   # 120 deg: red -> green
    with pytest.raises(CorruptionError):
        adjust_hue(img, 0.7)


def test_seed_corruptions(img):
    assert {"contrast++", "brightness--", "hue+", "combined"} <= set(SEED_CORRUPTIONS)
    assert corrupt_image(img, "brightness--").mean() < corrupt_image(img, "brightness-").mean() < img.mean()
    np.testing.assert_array_equal(corrupt_image(img, "clean"), img)
    with pytest.raises(CorruptionError):
        corrupt_image(img, "fog")
    with pytest.raises(CorruptionError):
        corrupt_image(img, (("brightness", -0.1),))
    with pytest.raises(CorruptionError):
        corrupt_image(img[..., 0], (("hue", 0.1),))                       # hue needs RGB


def test_numpy_and_tensor_paths_agree(img):
    """One implementation: a float image through corrupt_image equals the tensor EVAL_CORRUPTIONS exactly; uint8
    images agree with it to one grey level; a grey (H, W) image is its own grey for contrast."""
    f = img.astype(np.float32) / 255
    x = torch.from_numpy(f).permute(2, 0, 1)[None]
    for name, fn in EVAL_CORRUPTIONS.items():
        ref = fn(x)[0].permute(1, 2, 0).numpy()
        np.testing.assert_array_equal(corrupt_image(f, name), ref)
        diff = corrupt_image(img, name).astype(int) - np.floor(ref.astype(np.float64) * 255 + 0.5)
        assert np.abs(diff).max() <= 1, name
    assert set(EVAL_CORRUPTIONS) == set(CORRUPTIONS) - {"clean"} and set(SEED_CORRUPTIONS) <= set(CORRUPTIONS)
    grey = img[..., 0]
    exp = np.clip(np.floor(1.4 * grey + (1 - 1.4) * grey.astype(np.float64).mean() + 0.5), 0, 255)
    np.testing.assert_allclose(adjust_contrast(grey, 1.4).astype(float), exp, atol=1)
    assert adjust_contrast(grey, 1.4).shape == grey.shape


def test_rsh_probability(img):
    assert random_shadows_highlights(img, np.random.default_rng(0), RshConfig(p=0.0)).tobytes() == img.tobytes()
    rng = np.random.default_rng(5)
    draws = [sample_rsh(48, 64, rng, RshConfig(p=0.3)) is not None for _ in range(2000)]
    assert abs(np.mean(draws) - 0.3) < 0.035
    rng = np.random.default_rng(6)
    assert all(sample_rsh(48, 64, rng, RshConfig(p=1.0)) is not None for _ in range(50))


def test_rsh_mask_is_the_polygon():
    h, w = 60, 80
    poly = np.array([[0, 10.0], [w, 4.0], [w, 4.0 + 40.0], [0, 10.0 + 30.0]])
    mask = rsh_mask(h, w, poly)
    # Independent point-in-trapezoid test on pixel centres, away from the boundary.
    v, u = np.mgrid[0:h, 0:w] + 0.5
    top = 10.0 + (4.0 - 10.0) * u / w
    bottom = 40.0 + (44.0 - 40.0) * u / w
    inside = (v > top + 1) & (v < bottom - 1)
    outside = (v < top - 1) | (v > bottom + 1)
    assert mask[inside].all() and not mask[outside].any()
    assert mask[:, 0].any() and mask[:, -1].any()                   # vertical sides on both borders


def test_rsh_shadow_inside_highlight_outside(img):
    params = RshParams(np.array([[0, 5.0], [64, 12.0], [64, 40.0], [0, 30.0]]), shadow=0.4, highlight=1.5)
    out = apply_rsh(img, params)
    mask = rsh_mask(48, 64, params.polygon)
    x = img.astype(np.float64)
    np.testing.assert_array_equal(out[mask], np.clip(np.floor(x[mask] * 0.4 + 0.5), 0, 255))
    np.testing.assert_array_equal(out[~mask], np.clip(np.floor(x[~mask] * 1.5 + 0.5), 0, 255))
    rng = np.random.default_rng(9)
    for _ in range(20):
        p = sample_rsh(48, 64, rng, RshConfig(p=1.0))
        o = apply_rsh(img, p).astype(int)
        m = rsh_mask(48, 64, p.polygon)
        assert np.all(o[m] <= img.astype(int)[m]) and np.all(o[~m] >= img.astype(int)[~m])
        assert o.shape == img.shape
    grey = img[..., 0].astype(np.float32) / 255
    assert apply_rsh(grey, params).dtype == np.float32


def test_rsh_defaults_are_the_paper_values_and_validated():
    cfg = RshConfig()
    assert cfg.highlight == (1.0, 2.0) and cfg.shadow == (0.0, 1.0)
    assert cfg.left_top == cfg.right_top == (0.0, 0.3) and cfg.left_len == cfg.right_len == (0.4, 0.8)
    with pytest.raises(CorruptionError):
        RshConfig(shadow=(0.5, 1.5))
    with pytest.raises(CorruptionError):
        RshConfig(p=1.5)
