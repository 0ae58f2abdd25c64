"""Classical baselines: closed forms (grey world equalises channel means, min-max stretch maps min/max to 0/255,
gamma inverts a known gamma), settings grid and the tuning's choice on a set where the answer is known."""
import numpy as np
import pytest

from glassbox.vision import baselines
from glassbox.vision.baselines import (BaselineError, auto_gamma, autocontrast, clahe, equalize_hist, gamma,
                                       gray_world, tune)


@pytest.fixture
def img():
    rng = np.random.default_rng(0)
    return rng.integers(60, 180, size=(48, 64, 3), dtype=np.uint8)


def test_gray_world_makes_channel_means_equal(img):
    cast = np.clip(img.astype(float) * [1.2, 1.0, 0.7], 0, 255).astype(np.uint8)
    out = gray_world(cast)
    means = out.reshape(-1, 3).astype(float).mean(axis=0)
    assert np.ptp(cast.reshape(-1, 3).mean(axis=0)) > 20
    assert np.ptp(means) < 0.6                       # equal up to the rounding to integers
    np.testing.assert_allclose(means.mean(), cast.reshape(-1, 3).mean(), atol=0.6)   # grey level kept


def test_autocontrast_maps_min_to_0_and_max_to_255(img):
    out = autocontrast(img)
    assert out.shape == img.shape and out.dtype == np.uint8
    assert (out.reshape(-1, 3).min(axis=0) == 0).all() and (out.reshape(-1, 3).max(axis=0) == 255).all()
    # a linear darkening of a full-range image is undone to within one grey level
    full = autocontrast(img)
    dark = np.floor(full * 0.6 + 0.5).astype(np.uint8)
    assert np.abs(autocontrast(dark).astype(int) - full).max() <= 1
    # with clipping, the percentiles go to the ends: about clip % of each channel saturates on each side
    clipped = autocontrast(img, clip=5.0)
    frac = (clipped.reshape(-1, 3) == 0).mean(axis=0)
    assert ((frac > 0.03) & (frac < 0.07)).all()


def test_gamma_closed_form_and_inverse():
    x = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    np.testing.assert_array_equal(gamma(x, 2.2), np.floor(255 * (x / 255.0) ** 2.2 + 0.5).astype(np.uint8))
    np.testing.assert_array_equal(gamma(x, 1.0), x)
    # a known gamma 0.5 (a brightening whose slope is >= 1 below 64) is inverted exactly by gamma 2 there,
    # and to one grey level everywhere
    back = gamma(gamma(x, 0.5), 2.0).astype(int)
    np.testing.assert_array_equal(back[x < 64], x[x < 64])
    assert np.abs(back - x).max() <= 1


def test_auto_gamma_maps_the_mean_to_the_target():
    flat = np.full((8, 8, 3), 40, np.uint8)
    assert (auto_gamma(flat, target=0.5) == 128).all()          # 255 * 0.5 rounded half up
    np.testing.assert_array_equal(auto_gamma(np.zeros((8, 8, 3), np.uint8)), 0)


def test_histogram_methods_spread_a_narrow_histogram(img):
    for out in (equalize_hist(img), clahe(img, 2.0, 4)):
        assert out.shape == img.shape and out.dtype == np.uint8 and out.std() > img.std()


def test_bad_inputs_and_settings_raise(img):
    with pytest.raises(BaselineError):
        autocontrast(img.astype(np.float32))
    with pytest.raises(BaselineError):
        autocontrast(img, clip=60)
    with pytest.raises(BaselineError):
        gamma(img, 0.0)
    with pytest.raises(BaselineError):
        baselines.apply("sharpen", img)


def test_every_best_setting_is_in_its_grid():
    for name, best in baselines.BEST.items():
        assert best in baselines.settings(name), name


def test_tune_picks_the_inverse_of_a_known_corruption(img):
    """On pairs darkened by a gamma of 1.25, the tuned fixed gamma is the grid's inverse (0.8)."""
    full = autocontrast(img)
    pairs = [(full, gamma(full, 1.25))]
    best = tune(pairs, names=("gamma", "autocontrast"))
    assert best["gamma"]["setting"] == {"gamma": 0.8}
    assert best["gamma"]["psnr_db"] > 40
