"""Photometric corruptions used to train and evaluate the refiner, and the classical baselines it is compared to.

Corruptions act on float images in [0, 1], shape (B, 3, H, W), and follow torchvision's definitions:
brightness multiplies by a factor, contrast blends with the image's mean grey level, hue rotates the HSV hue by
a fraction of a full turn; each result is clipped to [0, 1]. ``EVAL_CORRUPTIONS`` are the deterministic test
settings of the refiner paper (D4.2 §2.1): contrast +30/40 %, brightness +-30/40 %, hue +-10 %, and "combined"
(contrast +20 %, brightness -20 %, hue +5 %). ``random_corruption`` draws one transformation per image for training.

Baselines (``autocontrast``, ``equalize_hist``, ``clahe``) take and return uint8 RGB images (H, W, 3) and use
OpenCV; equalisation and CLAHE act on the luma/lightness channel so that colours are not shifted.
"""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import Tensor


def adjust_brightness(x: Tensor, factor: Tensor | float) -> Tensor:
    return (x * _per_image(factor, x)).clamp(0.0, 1.0)


def adjust_contrast(x: Tensor, factor: Tensor | float) -> Tensor:
    grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))[:, None, None, None]
    f = _per_image(factor, x)
    return (f * x + (1.0 - f) * grey).clamp(0.0, 1.0)


def adjust_hue(x: Tensor, shift: Tensor | float) -> Tensor:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]); value and saturation are kept."""
    r, g, b = x[:, 0], x[:, 1], x[:, 2]
    maxc, _ = x.max(dim=1)
    minc, _ = x.min(dim=1)
    delta = maxc - minc
    sat = torch.where(maxc > 0, delta / maxc.clamp(min=1e-12), torch.zeros_like(maxc))
    safe = delta.clamp(min=1e-12)
    rc, gc, bc = (maxc - r) / safe, (maxc - g) / safe, (maxc - b) / safe
    hue = torch.where(maxc == r, bc - gc, torch.where(maxc == g, 2.0 + rc - bc, 4.0 + gc - rc))
    hue = torch.where(delta > 0, (hue / 6.0) % 1.0, torch.zeros_like(hue))
    hue = (hue + _per_image(shift, x)[:, 0]) % 1.0
    # HSV -> RGB with the continuous formulation: channel n takes v - v*s*clamp(min(k, 4-k), 0, 1).
    n = torch.tensor([5.0, 3.0, 1.0], device=x.device, dtype=x.dtype)[None, :, None, None]
    k = (n + hue[:, None] * 6.0) % 6.0
    out = maxc[:, None] - maxc[:, None] * sat[:, None] * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)
    return out.clamp(0.0, 1.0)


def _per_image(value: Tensor | float, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(x.dtype).reshape(-1, 1, 1, 1)
    return torch.full((x.shape[0], 1, 1, 1), float(value), dtype=x.dtype, device=x.device)


EVAL_CORRUPTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "contrast+": lambda x: adjust_contrast(x, 1.3),
    "contrast++": lambda x: adjust_contrast(x, 1.4),
    "brightness+": lambda x: adjust_brightness(x, 1.3),
    "brightness++": lambda x: adjust_brightness(x, 1.4),
    "brightness-": lambda x: adjust_brightness(x, 0.7),
    "brightness--": lambda x: adjust_brightness(x, 0.6),
    "hue+": lambda x: adjust_hue(x, 0.1),
    "hue-": lambda x: adjust_hue(x, -0.1),
    "combined": lambda x: adjust_hue(adjust_brightness(adjust_contrast(x, 1.2), 0.8), 0.05),
}


def random_corruption(x: Tensor, gen: torch.Generator, max_brightness: float = 0.5, max_contrast: float = 0.5,
                      max_hue: float = 0.15) -> Tensor:
    """One randomly chosen transformation (brightness, contrast or hue) per image, random strength."""
    b = x.shape[0]
    kind = torch.randint(0, 3, (b,), generator=gen)
    u = torch.rand(b, generator=gen) * 2.0 - 1.0                                 # (B,) in [-1, 1]
    out = x.clone()
    for k, fn, amount, neutral in ((0, adjust_brightness, max_brightness, 1.0),
                                   (1, adjust_contrast, max_contrast, 1.0),
                                   (2, adjust_hue, max_hue, 0.0)):
        sel = kind == k
        if sel.any():
            out[sel] = fn(x[sel], neutral + amount * u[sel])
    return out


# ---- classical baselines on uint8 RGB (H, W, 3) ----

def autocontrast(img: np.ndarray) -> np.ndarray:
    """Stretch each channel linearly so that its minimum maps to 0 and its maximum to 255 (PIL's autocontrast)."""
    lo = img.min(axis=(0, 1), keepdims=True).astype(np.float32)
    hi = img.max(axis=(0, 1), keepdims=True).astype(np.float32)
    scale = np.where(hi > lo, 255.0 / np.maximum(hi - lo, 1e-6), 1.0)
    out = np.where(hi > lo, (img.astype(np.float32) - lo) * scale, img.astype(np.float32))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of the luma (Y of YCrCb)."""
    ycc = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the L channel of CIELAB."""
    lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "autocontrast": autocontrast,
    "equalize_hist": equalize_hist,
    "clahe": clahe,
}
