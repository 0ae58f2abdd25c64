"""Full-reference image quality: PSNR and SSIM (Wang et al., 2004).

Both take two images of the same shape, (H, W) or (H, W, C), any real dtype, and a ``data_range`` (the
difference between the largest and smallest possible values: 255 for uint8, 1.0 for float images in [0, 1]).
SSIM uses the paper's settings: an 11x11 Gaussian window with sigma 1.5 (truncated at 3.5 sigma as in
scikit-image), K1 = 0.01, K2 = 0.03, population (not sample) covariances; colour images average the per-channel
SSIM maps, and the score is the mean over pixels whose window lies fully inside the image.
"""
from __future__ import annotations

import cv2
import numpy as np


class ImageQualityError(ValueError):
    """The two images cannot be compared (shape mismatch, bad data range)."""


def _pair(a: np.ndarray, b: np.ndarray, data_range: float) -> tuple[np.ndarray, np.ndarray]:
    if a.shape != b.shape:
        raise ImageQualityError(f"image shapes differ: {a.shape} vs {b.shape}")
    if a.ndim not in (2, 3):
        raise ImageQualityError(f"expected (H, W) or (H, W, C), got {a.shape}")
    if not data_range > 0:
        raise ImageQualityError(f"data_range must be > 0, got {data_range}")
    return a.astype(np.float64), b.astype(np.float64)


def psnr(reference: np.ndarray, test: np.ndarray, data_range: float) -> float:
    """Peak signal-to-noise ratio in dB; ``inf`` for identical images."""
    a, b = _pair(reference, test, data_range)
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range ** 2 / mse))


def ssim(reference: np.ndarray, test: np.ndarray, data_range: float, sigma: float = 1.5) -> float:
    """Mean structural similarity in [-1, 1] (1 for identical images)."""
    a, b = _pair(reference, test, data_range)
    if a.ndim == 2:
        a, b = a[..., None], b[..., None]
    radius = int(3.5 * sigma + 0.5)
    size = 2 * radius + 1
    if min(a.shape[:2]) < size:
        raise ImageQualityError(f"images must be at least {size}x{size} for SSIM, got {a.shape[:2]}")
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2

    def blur(x: np.ndarray) -> np.ndarray:
        out = cv2.GaussianBlur(x, (size, size), sigma, borderType=cv2.BORDER_REFLECT)
        return out if out.ndim == 3 else out[..., None]

    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a ** 2
    var_b = blur(b * b) - mu_b ** 2
    cov = blur(a * b) - mu_a * mu_b
    smap = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a ** 2 + mu_b ** 2 + c1) * (var_a + var_b + c2))
    inner = smap[radius:-radius, radius:-radius]
    return float(inner.mean())
