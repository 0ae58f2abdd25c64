"""Random Shadows and Highlights (RSH; Mazhar & Kober, Algorithm 1), an augmentation that mimics harsh lighting.

A full-width trapezoid with vertical left/right sides on the image borders is darkened by a factor in [S_l, S_h]
(shadow) while the rest of the image is brightened by a factor in [H_l, H_h] (highlight). Defaults are the
paper's ranges (the public code uses narrower ones). The polygon's vertices are rounded to whole pixels and filled
with OpenCV's ``fillPoly``, which includes the boundary pixels.

Images are uint8 (H, W) or (H, W, C), or float in [0, 1]; results have the input's dtype and shape.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from glassbox.vision.corruptions import CorruptionError, from_working_float, to_working_float


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
    x, u8 = to_working_float(img)
    mask = rsh_mask(img.shape[0], img.shape[1], params.polygon)
    factor = np.where(mask, params.shadow, params.highlight).astype(x.dtype)
    if x.ndim == 3:
        factor = factor[..., None]
    return from_working_float(x * factor, u8, img.dtype)


def random_shadows_highlights(img: np.ndarray, rng: np.random.Generator, cfg: RshConfig = RshConfig()
                              ) -> np.ndarray:
    """RSH (Algorithm 1): unchanged (a copy) with probability 1 - p, else one random shadow/highlight split."""
    params = sample_rsh(img.shape[0], img.shape[1], rng, cfg)
    return img.copy() if params is None else apply_rsh(img, params)
