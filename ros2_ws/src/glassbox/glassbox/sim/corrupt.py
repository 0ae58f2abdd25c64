"""Photometric corruptions: brightness, contrast and hue at graded strengths, and Random Shadows and Highlights.

Brightness, contrast and hue follow the torchvision definitions (brightness: multiply; contrast: blend with the
mean of the grey image, ITU-R 601 weights; hue: rotate the HSV hue by a fraction of the circle). The refiner seed
names its test corruptions "+30% contrast", "-40% brightness", "+10% hue" without formulas; here they are read
as factors 1.3 and 0.6 and a hue shift of 0.1 of the circle (``SEED_CORRUPTIONS``).

RSH (Mazhar & Kober, Algorithm 1): a full-width trapezoid with vertical left/right sides on the image borders is
darkened by a factor in [S_l, S_h] (shadow) while the rest of the image is brightened by a factor in [H_l, H_h]
(highlight). Defaults are the paper's ranges (the public code uses narrower ones). The polygon's vertices are
rounded to whole pixels and filled with OpenCV's ``fillPoly``, which includes the boundary pixels.

All functions take uint8 images (H,W) or (H,W,C) or float images in [0, 1], and return the same dtype and shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


class CorruptionError(ValueError):
    """An unknown corruption or an invalid parameter."""


def _to_float(img: np.ndarray) -> tuple[np.ndarray, bool]:
    """Working copy: uint8 images stay on their 0..255 scale in float64 (exact products), floats in float32."""
    if img.dtype == np.uint8:
        return img.astype(np.float64), True
    if np.issubdtype(img.dtype, np.floating):
        return img.astype(np.float32), False
    raise CorruptionError(f"images must be uint8 or float in [0, 1], got {img.dtype}")


def _back(x: np.ndarray, was_uint8: bool, dtype: np.dtype) -> np.ndarray:
    """Clip to the valid range; uint8 rounds half up."""
    if was_uint8:
        return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)
    return np.clip(x, 0.0, 1.0).astype(dtype)


def adjust_brightness(img: np.ndarray, factor: float) -> np.ndarray:
    """``clip(img * factor)``."""
    if factor < 0:
        raise CorruptionError(f"brightness factor must be >= 0, got {factor}")
    x, u8 = _to_float(img)
    return _back(x * factor, u8, img.dtype)


def _grey(x: np.ndarray) -> np.ndarray:
    if x.ndim == 2 or x.shape[-1] == 1:
        return x.reshape(x.shape[:2])
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]


def adjust_contrast(img: np.ndarray, factor: float) -> np.ndarray:
    """``clip(factor * img + (1 - factor) * mean(grey(img)))``."""
    if factor < 0:
        raise CorruptionError(f"contrast factor must be >= 0, got {factor}")
    x, u8 = _to_float(img)
    return _back(factor * x + (1.0 - factor) * float(_grey(x).mean()), u8, img.dtype)


def adjust_hue(img: np.ndarray, shift: float) -> np.ndarray:
    """Rotate the hue by ``shift`` (fraction of the circle, in [-0.5, 0.5]); RGB images only."""
    if not -0.5 <= shift <= 0.5:
        raise CorruptionError(f"hue shift must lie in [-0.5, 0.5], got {shift}")
    if img.ndim != 3 or img.shape[-1] != 3:
        raise CorruptionError(f"hue needs an (H, W, 3) RGB image, got shape {img.shape}")
    x, u8 = _to_float(img)
    scale = 255.0 if u8 else 1.0
    hsv = cv2.cvtColor((x / scale).astype(np.float32), cv2.COLOR_RGB2HSV)
    hsv[..., 0] = np.mod(hsv[..., 0] + shift * 360.0, 360.0)
    return _back(cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * scale, u8, img.dtype)


# The refiner seed's deterministic test corruptions (name -> sequence of operations).
SEED_CORRUPTIONS: dict[str, tuple[tuple[str, float], ...]] = {
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
_OPS = {"brightness": adjust_brightness, "contrast": adjust_contrast, "hue": adjust_hue}
# Graded strengths 1..5 per kind: signed deviation from identity (factor - 1 for brightness/contrast, shift for hue).
SEVERITY_STEPS: dict[str, tuple[float, ...]] = {
    "brightness": (0.1, 0.2, 0.3, 0.4, 0.5),
    "contrast": (0.1, 0.2, 0.3, 0.4, 0.5),
    "hue": (0.02, 0.05, 0.1, 0.15, 0.2),
}


def apply_ops(img: np.ndarray, ops: tuple[tuple[str, float], ...]) -> np.ndarray:
    """Apply (kind, parameter) operations in order."""
    out = img
    for kind, value in ops:
        if kind not in _OPS:
            raise CorruptionError(f"unknown corruption kind '{kind}' (known: {', '.join(_OPS)})")
        out = _OPS[kind](out, value)
    return out


def apply_corruption(img: np.ndarray, name: str) -> np.ndarray:
    """One of the seed's named test corruptions (``SEED_CORRUPTIONS``)."""
    if name not in SEED_CORRUPTIONS:
        raise CorruptionError(f"unknown corruption '{name}' (known: {', '.join(SEED_CORRUPTIONS)})")
    return apply_ops(img, SEED_CORRUPTIONS[name])


def graded_corruption(img: np.ndarray, kind: str, severity: int, sign: int = 1) -> np.ndarray:
    """``kind`` in brightness/contrast/hue at ``severity`` 1..5 (0 = unchanged), increased (sign +1) or
    decreased (-1)."""
    if kind not in SEVERITY_STEPS:
        raise CorruptionError(f"unknown corruption kind '{kind}' (known: {', '.join(SEVERITY_STEPS)})")
    if not 0 <= severity <= 5 or sign not in (-1, 1):
        raise CorruptionError(f"severity must be 0..5 and sign +-1, got {severity}, {sign}")
    if severity == 0:
        return img.copy()
    step = sign * SEVERITY_STEPS[kind][severity - 1]
    return apply_ops(img, ((kind, step if kind == "hue" else 1.0 + step),))


@dataclass(frozen=True)
class CorruptionConfig:
    """Training-time corruption: one kind drawn uniformly from ``kinds``, its parameter uniform in its range."""

    kinds: tuple[str, ...] = ("brightness", "contrast", "hue")
    brightness: tuple[float, float] = (0.5, 1.5)
    contrast: tuple[float, float] = (0.5, 1.5)
    hue: tuple[float, float] = (-0.15, 0.15)
    p: float = 1.0

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in _OPS]
        if unknown or not self.kinds:
            raise CorruptionError(f"CorruptionConfig: unknown or no kinds {unknown or self.kinds}")


def random_corruption(img: np.ndarray, rng: np.random.Generator, cfg: CorruptionConfig = CorruptionConfig()
                      ) -> tuple[np.ndarray, tuple[tuple[str, float], ...]]:
    """Corrupt with probability ``cfg.p``; returns the image and the operations applied."""
    if rng.uniform() >= cfg.p:
        return img.copy(), ()
    kind = cfg.kinds[int(rng.integers(len(cfg.kinds)))]
    lo, hi = getattr(cfg, kind)
    ops = ((kind, float(rng.uniform(lo, hi))),)
    return apply_ops(img, ops), ops


# --------------------------------------------------------------------------------------------------------------
# Random Shadows and Highlights
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RshConfig:
    """The 12 ranges of Algorithm 1 plus the probability ``p`` (defaults: the paper's values). Edge ranges are
    fractions of the image height: ``left_top``/``right_top`` = top y of the side, ``left_len``/``right_len``
    = its length."""

    p: float = 0.5
    highlight: tuple[float, float] = (1.0, 2.0)
    shadow: tuple[float, float] = (0.0, 1.0)
    left_top: tuple[float, float] = (0.0, 0.3)
    left_len: tuple[float, float] = (0.4, 0.8)
    right_top: tuple[float, float] = (0.0, 0.3)
    right_len: tuple[float, float] = (0.4, 0.8)

    def __post_init__(self) -> None:
        if not 0.0 <= self.p <= 1.0:
            raise CorruptionError(f"RshConfig: p must lie in [0, 1], got {self.p}")
        for name in ("highlight", "shadow", "left_top", "left_len", "right_top", "right_len"):
            lo, hi = getattr(self, name)
            if lo > hi or lo < 0:
                raise CorruptionError(f"RshConfig: {name} must be an increasing non-negative range, got {(lo, hi)}")
        if self.shadow[1] > 1.0 or self.highlight[0] < 1.0:
            raise CorruptionError("RshConfig: shadow factors must be <= 1 and highlight factors >= 1")


@dataclass(frozen=True)
class RshParams:
    """One drawn RSH transform: the polygon (4, 2) (x, y) and the two brightness factors."""

    polygon: np.ndarray
    shadow: float
    highlight: float


def sample_rsh(height: int, width: int, rng: np.random.Generator, cfg: RshConfig = RshConfig()) -> RshParams | None:
    """Draw the transform of Algorithm 1, or None when it is not applied (probability 1 - p)."""
    if rng.uniform() >= cfg.p:
        return None
    l_len, l_top = rng.uniform(*cfg.left_len) * height, rng.uniform(*cfg.left_top) * height
    r_len, r_top = rng.uniform(*cfg.right_len) * height, rng.uniform(*cfg.right_top) * height
    polygon = np.array([[0, l_top], [width, r_top], [width, r_top + r_len], [0, l_top + l_len]], np.float64)
    return RshParams(polygon, float(rng.uniform(*cfg.shadow)), float(rng.uniform(*cfg.highlight)))


def rsh_mask(height: int, width: int, polygon: np.ndarray) -> np.ndarray:
    """Boolean (H, W) mask of the shadow polygon (vertices rounded to pixels, boundary included, clipped)."""
    mask = np.zeros((height, width), np.uint8)
    cv2.fillPoly(mask, [np.round(polygon).astype(np.int32).reshape(-1, 1, 2)], 1)
    return mask.astype(bool)


def apply_rsh(img: np.ndarray, params: RshParams) -> np.ndarray:
    """Shadow (multiply by ``params.shadow``) inside the polygon, highlight outside; clipped."""
    x, u8 = _to_float(img)
    mask = rsh_mask(img.shape[0], img.shape[1], params.polygon)
    factor = np.where(mask, params.shadow, params.highlight).astype(x.dtype)
    if x.ndim == 3:
        factor = factor[..., None]
    return _back(x * factor, u8, img.dtype)


def random_shadows_highlights(img: np.ndarray, rng: np.random.Generator, cfg: RshConfig = RshConfig()
                              ) -> np.ndarray:
    """RSH (Algorithm 1): unchanged (a copy) with probability 1 - p, else one random shadow/highlight split."""
    params = sample_rsh(img.shape[0], img.shape[1], rng, cfg)
    return img.copy() if params is None else apply_rsh(img, params)
