"""Photometric corruptions used to train and evaluate the refiner, and the classical baselines it is compared to.

One implementation for every caller: brightness, contrast and hue act on torch images (B, C, H, W) with values in
[0, ``peak``] (1 for float images; 255 for the uint8 scale, kept exact in float64) and follow torchvision's
definitions: brightness multiplies by a factor, contrast blends with the image's mean grey level (ITU-R 601
weights; a one-channel image is its own grey), hue rotates the HSV hue by a fraction of a full turn (RGB only);
each result is clipped to [0, peak]. Factors may be one number or one per image (the training draw).

``SEED_CORRUPTIONS`` are the deterministic test settings of the refiner paper (D4.2 §2.1), which names them
"+30% contrast", "-40% brightness", "+10% hue" without formulas; here they are factors 1.3 and 0.6 and a shift of
0.1 of the circle: contrast +30/40 %, brightness +-30/40 %, hue +-10 %, and "combined" (contrast +20 %,
brightness -20 %, hue +5 %). ``EVAL_CORRUPTIONS`` are the same settings as tensor functions, ``corrupt_image`` applies
them (or any list of operations) to numpy images (uint8 or float, (H, W) or (H, W, C)) such as bag frames, and
``random_corruption`` draws one transformation per image for training.

Baselines (``autocontrast``, ``equalize_hist``, ``clahe``) take and return uint8 RGB images (H, W, 3) and use
OpenCV; equalisation and CLAHE act on the luma/lightness channel so that colours are not shifted.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import partial

import cv2
import numpy as np
import torch
from torch import Tensor


class CorruptionError(ValueError):
    """An unknown corruption or an invalid parameter."""


def adjust_brightness(x: Tensor, factor: Tensor | float, peak: float = 1.0) -> Tensor:
    """``clip(x * factor, 0, peak)``."""
    return (x * _per_image(factor, x)).clamp(0.0, peak)


def adjust_contrast(x: Tensor, factor: Tensor | float, peak: float = 1.0) -> Tensor:
    """``clip(factor * x + (1 - factor) * mean(grey(x)), 0, peak)``, the mean taken per image."""
    if x.shape[1] == 1:
        grey = x[:, 0].mean(dim=(1, 2))[:, None, None, None]
    else:
        grey = (0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]).mean(dim=(1, 2))[:, None, None, None]
    f = _per_image(factor, x)
    return (f * x + (1.0 - f) * grey).clamp(0.0, peak)


def adjust_hue(x: Tensor, shift: Tensor | float, peak: float = 1.0) -> Tensor:
    """Rotate hue by ``shift`` turns (in [-0.5, 0.5]) of RGB images; value and saturation are kept."""
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
    return out.clamp(0.0, peak)


def _per_image(value: Tensor | float, x: Tensor) -> Tensor:
    if isinstance(value, Tensor):
        return value.to(x.dtype).reshape(-1, 1, 1, 1)
    return torch.full((x.shape[0], 1, 1, 1), float(value), dtype=x.dtype, device=x.device)


_OPS: dict[str, Callable[..., Tensor]] = {"brightness": adjust_brightness, "contrast": adjust_contrast,
                                          "hue": adjust_hue}
Ops = tuple[tuple[str, float], ...]

# The refiner seed's deterministic test corruptions (name -> operations applied in order).
SEED_CORRUPTIONS: dict[str, Ops] = {
    "clean": (),
    "contrast+": (("contrast", 1.3),),
    "contrast++": (("contrast", 1.4),),
    "brightness+": (("brightness", 1.3),),
    "brightness++": (("brightness", 1.4),),
    "brightness-": (("brightness", 0.7),),
    "brightness--": (("brightness", 0.6),),
    "hue+": (("hue", 0.1),),
    "hue-": (("hue", -0.1),),
    "combined": (("contrast", 1.2), ("brightness", 0.8), ("hue", 0.05)),
}


def _check_op(kind: str, value: float, channels: int) -> None:
    if kind not in _OPS:
        raise CorruptionError(f"unknown corruption kind '{kind}' (known: {', '.join(_OPS)})")
    if kind == "hue":
        if not -0.5 <= value <= 0.5:
            raise CorruptionError(f"hue shift must lie in [-0.5, 0.5], got {value}")
        if channels != 3:
            raise CorruptionError(f"hue needs RGB images (3 channels), got {channels}")
    elif value < 0:
        raise CorruptionError(f"{kind} factor must be >= 0, got {value}")


def apply_ops(x: Tensor, ops: Ops, peak: float = 1.0) -> Tensor:
    """Apply (kind, parameter) operations in order to images (B, C, H, W) in [0, peak]."""
    for kind, value in ops:
        _check_op(kind, value, x.shape[1])
        x = _OPS[kind](x, value, peak)
    return x


EVAL_CORRUPTIONS: dict[str, Callable[[Tensor], Tensor]] = {
    name: partial(apply_ops, ops=ops) for name, ops in SEED_CORRUPTIONS.items() if ops}


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


# ---- numpy images (uint8 or float in [0, 1]; (H, W) or (H, W, C)) ----

def to_working_float(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """Working copy: uint8 images stay on their 0..255 scale in float64 (exact products), floats in float32;
    and whether the image was uint8."""
    if img.dtype == np.uint8:
        return img.astype(np.float64), True
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32), False
    raise CorruptionError(f"images must be uint8 or float in [0, 1], got {img.dtype}")


def from_working_float(x: np.ndarray, was_uint8: bool, dtype: np.dtype) -> np.ndarray:
    """Back to the input type: clipped to the valid range; uint8 rounds half up."""
    if was_uint8:
        return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)
    return np.clip(x, 0.0, 1.0).astype(dtype)


def corrupt_image(img: np.ndarray, ops: Ops | str) -> np.ndarray:
    """Apply operations (or the ``SEED_CORRUPTIONS`` entry named ``ops``) to one numpy image; same dtype and shape."""
    if isinstance(ops, str):
        if ops not in SEED_CORRUPTIONS:
            raise CorruptionError(f"unknown corruption '{ops}' (known: {', '.join(SEED_CORRUPTIONS)})")
        ops = SEED_CORRUPTIONS[ops]
    x, u8 = to_working_float(img)
    planes = x[None, None] if x.ndim == 2 else np.moveaxis(x, -1, 0)[None]           # (1, C, H, W)
    y = apply_ops(torch.from_numpy(np.ascontiguousarray(planes)), ops, 255.0 if u8 else 1.0)[0].numpy()
    return from_working_float(y[0] if x.ndim == 2 else np.moveaxis(y, 0, -1), u8, img.dtype)


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
