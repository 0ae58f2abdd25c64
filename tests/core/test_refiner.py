"""Refiner: exact identity at initialisation, parameter count, stage algebra (including the exact min-max stretch
stage 2 can express), low-resolution prediction, gradients, corruptions."""
import numpy as np
import pytest
import torch

from glassbox.vision.corruptions import (EVAL_CORRUPTIONS, adjust_brightness, adjust_cast, adjust_contrast,
                                         adjust_hue, add_glare, add_noise, add_offset, apply_ops, random_corruption)
from glassbox.vision.refiner import Refiner, RefinerConfig, RefinerError, SoftHistogram, count_parameters


def test_identity_at_init_any_size():
    torch.manual_seed(0)
    model = Refiner().eval()
    for shape in [(2, 3, 37, 53), (1, 3, 64, 64), (1, 3, 5, 7)]:
        x = torch.rand(shape)
        y = model(x).refined
        assert y.shape == x.shape and y.dtype == x.dtype
        assert torch.max(torch.abs(y - x)).item() <= 1e-6


def test_parameter_count_near_seed():
    n = count_parameters(Refiner())
    # Seed: ~14.3k (14,343 derived without bin biases); this implementation adds 300 bin biases and the range
    # statistics' weights and tanh head (+1,820), and halves N_P (-1,900).
    assert n == 14_563
    assert abs(n - 14_300) / 14_300 < 0.05


def test_histogram_is_spatial_mean_of_sigmoid_memberships():
    torch.manual_seed(1)
    hist = SoftHistogram(3, 10, sharpness=5.0, seed=0)
    x = torch.rand(2, 3, 6, 5)
    expected = torch.sigmoid(torch.einsum("kc,bchw->bkhw", hist.codebook, x) + hist.bias[None, :, None, None])
    got = hist(x)
    assert got.shape == (2, 10)
    torch.testing.assert_close(got, expected.mean(dim=(2, 3)))
    assert bool(((got > 0) & (got < 1)).all())


def test_one_channel_histogram_tracks_brightness():
    hist = SoftHistogram(1, 100, sharpness=10.0, seed=1)
    dark, bright = torch.full((1, 1, 8, 8), 0.2), torch.full((1, 1, 8, 8), 0.8)
    # Bins are soft steps at increasing intensities: a brighter image has more bins switched on.
    assert hist(bright).sum() > hist(dark).sum() + 30


def test_stage1_is_global_affine_and_stage2_per_channel_affine():
    torch.manual_seed(2)
    model = Refiner(RefinerConfig(stages=(1, 2)))
    with torch.no_grad():
        for p in (model.w11, model.w12, model.w21, model.w22, model.a21, model.a22, model.wo1, model.wo2):
            p.normal_(std=0.1)
    x = torch.rand(1, 3, 16, 16)
    feats = model.forward_features(x)
    x1, x2 = feats["stage1"], feats["stage2"]
    # x1 = a x + b with one (a, b) for all channels and pixels.
    a = (x1[0, 0, 0, 1] - x1[0, 0, 0, 0]) / (x[0, 0, 0, 1] - x[0, 0, 0, 0])
    b = x1[0, 0, 0, 0] - a * x[0, 0, 0, 0]
    torch.testing.assert_close(x1, a * x + b, atol=1e-5, rtol=1e-5)
    # x2 = a_k x1 + b_k per channel, with different slopes across channels.
    slopes = []
    for k in range(3):
        ak = (x2[0, k, 0, 1] - x2[0, k, 0, 0]) / (x1[0, k, 0, 1] - x1[0, k, 0, 0])
        bk = x2[0, k, 0, 0] - ak * x1[0, k, 0, 0]
        torch.testing.assert_close(x2[0, k], ak * x1[0, k] + bk, atol=1e-5, rtol=1e-5)
        slopes.append(float(ak.detach()))
    assert max(slopes) - min(slopes) > 1e-3


def test_stage2_expresses_the_exact_min_max_stretch():
    """shift = min, scale = max - min per channel (a21 = [1, 0, 0, 0], a22 = [-1, 1, 0, -1]): every channel's
    minimum maps to 0 and maximum to 1, at any resolution, and a darkened full-range image is restored."""
    model = Refiner(RefinerConfig(stages=(1, 2)))
    with torch.no_grad():
        model.a21.copy_(torch.tensor([1.0, 0.0, 0.0, 0.0]))
        model.a22.copy_(torch.tensor([-1.0, 1.0, 0.0, -1.0]))
    for shape in [(2, 3, 40, 52), (1, 3, 300, 451)]:
        x = 0.2 + 0.5 * torch.rand(shape)
        y = model(x).refined
        torch.testing.assert_close(y.amin(dim=(2, 3)), torch.zeros(shape[:2]), atol=1e-5, rtol=0)
        torch.testing.assert_close(y.amax(dim=(2, 3)), torch.ones(shape[:2]), atol=1e-5, rtol=0)
    clean = torch.rand(1, 3, 64, 80)
    clean[..., 0, 0], clean[..., 0, 1] = 0.0, 1.0
    torch.testing.assert_close(model(adjust_brightness(clean, 0.6)).refined, clean, atol=1e-5, rtol=0)


def test_low_resolution_prediction_is_a_smooth_full_resolution_correction():
    """With ``grid`` > 0 the gate is predicted on a grid x grid resample: the output at full size is
    ``stage2 * (1 + upsampled gate)``, and the network's cost hardly depends on the input size."""
    torch.manual_seed(5)
    model = Refiner(RefinerConfig(grid=16))
    with torch.no_grad():
        model.g["deconv2"].weight.normal_(std=0.2)
    x = torch.rand(1, 3, 70, 90)
    feats = model.forward_features(x)
    assert feats["gate"].shape == (1, 3, 16, 16)
    up = torch.nn.functional.interpolate(feats["gate"], size=(70, 90), mode="bilinear", align_corners=False)
    torch.testing.assert_close(feats["stage3"], feats["stage2"] * (1 + up))
    assert feats["g_conv1"].shape[2:] == (8, 8)


def test_stage3_gate_is_bounded_and_gradients_reach_every_parameter():
    torch.manual_seed(3)
    model = Refiner()
    with torch.no_grad():   # move off the identity start (where the zero weights block the histogram gradients)
        for p in (model.w11, model.w12, model.w21, model.w22, model.a21, model.a22, model.wo1, model.wo2,
                  model.g["deconv2"].weight, model.g["deconv2"].bias):
            p.normal_(std=0.05)
    x = torch.rand(2, 3, 24, 20) + 0.05
    feats = model.forward_features(x)
    ratio = feats["stage3"] / feats["stage2"]
    assert bool(((ratio > 0) & (ratio < 2)).all())
    assert model.g["conv1"].in_channels == 3 + 4
    loss = ((model(x).refined - x) ** 2).mean()
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.count_nonzero(p.grad) > 0, name


def test_denominator_is_guarded():
    model = Refiner(RefinerConfig(stages=(1,), min_denominator=0.05))
    with torch.no_grad():
        model.w12.fill_(-10.0)          # 1 + h^T W12 far below zero without the guard
    y = model(torch.rand(1, 3, 8, 8)).refined
    assert torch.isfinite(y).all() and y.abs().max() <= 1.0 / 0.05 + 1e-4


def test_bad_input_raises():
    with pytest.raises(RefinerError):
        Refiner()(torch.rand(1, 4, 8, 8))
    with pytest.raises(ValueError):
        RefinerConfig(stages=(2, 3))


def test_corruptions_match_closed_forms():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(adjust_brightness(x, 0.7), (x * 0.7).clamp(0, 1))
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))[:, None, None, None]
    torch.testing.assert_close(adjust_contrast(x, 1.4), (1.4 * x + (1 - 1.4) * grey).clamp(0, 1))
    # Hue rotation agrees with scikit-image's HSV conversion.
    from skimage.color import hsv2rgb, rgb2hsv
    img = x[0].permute(1, 2, 0).numpy().astype(np.float64)
    hsv = rgb2hsv(img)
    hsv[..., 0] = (hsv[..., 0] + 0.1) % 1.0
    np.testing.assert_allclose(adjust_hue(x[:1], 0.1)[0].permute(1, 2, 0).numpy(), hsv2rgb(hsv), atol=1e-5)
    torch.testing.assert_close(adjust_hue(x, 0.0), x, atol=1e-6, rtol=0)
    torch.testing.assert_close(adjust_hue(adjust_hue(x, 0.3), -0.3), x, atol=1e-5, rtol=0)


def test_random_corruption_changes_images_reproducibly():
    x = torch.rand(8, 3, 16, 16)
    a = random_corruption(x, torch.Generator().manual_seed(0))
    b = random_corruption(x, torch.Generator().manual_seed(0))
    torch.testing.assert_close(a, b)
    assert float((a - x).abs().mean()) > 1e-3
    assert len(EVAL_CORRUPTIONS) == 18
    # with clean_fraction = 1 every image stays clean
    c = random_corruption(x, torch.Generator().manual_seed(1), clean_fraction=1.0)
    torch.testing.assert_close(c, x)


def test_new_corruptions_closed_forms_and_seeds():
    x = torch.rand(2, 3, 20, 30)
    torch.testing.assert_close(adjust_cast(x, (1.2, 1.0, 0.5)), (x * torch.tensor([1.2, 1.0, 0.5])[:, None, None])
                               .clamp(0, 1))
    torch.testing.assert_close(add_offset(x, 0.1), (x + 0.1).clamp(0, 1))
    g = torch.Generator().manual_seed(3)
    n = add_noise(torch.full((1, 3, 100, 100), 0.5), 0.05, gen=g) - 0.5
    assert abs(float(n.std()) - 0.05) < 0.002 and abs(float(n.mean())) < 0.002
    # glare: a blob of peak `amount` at its centre, falling off as a Gaussian of radius 0.3 x the shorter side
    blob = add_glare(torch.zeros(1, 1, 41, 41), 0.5, gen=torch.Generator().manual_seed(0))[0, 0]
    iy, ix = divmod(int(blob.argmax()), 41)
    assert 0.45 < float(blob.max()) <= 0.5 and 8 <= iy <= 32 and 8 <= ix <= 32
    # deterministic per seed, different across seeds
    ops = (("noise", 0.05), ("glare", 0.3))
    torch.testing.assert_close(apply_ops(x, ops, seed=4), apply_ops(x, ops, seed=4))
    assert float((apply_ops(x, ops, seed=4) - apply_ops(x, ops, seed=5)).abs().max()) > 0.01
