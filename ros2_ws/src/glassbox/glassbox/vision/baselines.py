"""Classical image corrections the refiner is compared with, and the grid search that picks their settings.

Each baseline takes a uint8 RGB image (H, W, 3) and keyword settings and returns a uint8 RGB image of the same
shape (rounded half up, clipped):

- ``autocontrast(img, clip)``: per-channel linear stretch mapping the ``clip`` and ``100 - clip`` percentiles
  (in %) to 0 and 255; ``clip = 0`` is the min-max stretch (PIL's ``autocontrast``);
- ``clahe(img, clip_limit, tiles)``: contrast-limited adaptive histogram equalisation of CIELAB's L channel
  (OpenCV), ``tiles`` x ``tiles`` regions;
- ``equalize_hist(img)``: global histogram equalisation of the luma (Y of YCrCb);
- ``gray_world(img)``: white balance by the grey-world assumption: channel c is scaled by ``m / m_c``, with
  ``m_c`` its mean and ``m`` the mean of the three channel means, so that the channel means become equal;
- ``gamma(img, gamma)``: ``255 * (img / 255) ** gamma``, a fixed tone curve;
- ``auto_gamma(img, target)``: ``gamma`` chosen per image so that the mean grey level becomes ``target``:
  ``gamma = log(target) / log(mean / 255)``.

``GRIDS`` lists the settings each baseline is tried with; ``tune`` picks, per baseline, the setting with the
highest mean PSNR over a tuning set of (clean, corrupted) pairs (mean SSIM breaks ties), and ``BEST`` holds the
settings that ``tune`` chose on the refiner's training photographs under every corruption of
``glassbox.vision.corruptions.CORRUPTIONS`` (never on the held-out photographs); ``python -m
glassbox_trainer.tasks.refiner tune`` recomputes them.
"""
from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable

import cv2
import numpy as np

from glassbox.metrics.image_quality import psnr, ssim


class BaselineError(ValueError):
    """An image a baseline cannot take, or an invalid setting."""


def _check(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
        raise BaselineError(f"baselines take uint8 RGB images (H, W, 3), got {img.dtype} {img.shape}")
    return img


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.floor(np.clip(x, 0.0, 255.0) + 0.5).astype(np.uint8)


def autocontrast(img: np.ndarray, clip: float = 0.0) -> np.ndarray:
    """Per-channel stretch of the [clip, 100 - clip] percentile range to [0, 255]; a flat channel is kept."""
    _check(img)
    if not 0.0 <= clip < 50.0:
        raise BaselineError(f"clip must lie in [0, 50) %, got {clip}")
    x = img.astype(np.float64).reshape(-1, 3)
    lo, hi = np.percentile(x, [clip, 100.0 - clip], axis=0)                  # (3,), (3,)
    span = hi - lo
    out = np.where(span > 0, (x - lo) * 255.0 / np.where(span > 0, span, 1.0), x)
    return _to_uint8(out).reshape(img.shape)


def clahe(img: np.ndarray, clip_limit: float = 2.0, tiles: int = 8) -> np.ndarray:
    """Contrast-limited adaptive histogram equalisation of the L channel of CIELAB."""
    _check(img)
    if clip_limit <= 0 or tiles < 1:
        raise BaselineError(f"clip_limit must be > 0 and tiles >= 1, got {clip_limit}, {tiles}")
    lab = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2LAB)
    lab[..., 0] = cv2.createCLAHE(clipLimit=clip_limit, tileGridSize=(tiles, tiles)).apply(lab[..., 0])
    return cv2.cvtColor(lab, cv2.COLOR_LAB2RGB)


def equalize_hist(img: np.ndarray) -> np.ndarray:
    """Global histogram equalisation of the luma (Y of YCrCb)."""
    _check(img)
    ycc = cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2YCrCb)
    ycc[..., 0] = cv2.equalizeHist(ycc[..., 0])
    return cv2.cvtColor(ycc, cv2.COLOR_YCrCb2RGB)


def gray_world(img: np.ndarray) -> np.ndarray:
    """Grey-world white balance: channel c times ``mean(m) / m_c`` (a black channel is kept)."""
    _check(img)
    x = img.astype(np.float64)
    means = x.reshape(-1, 3).mean(axis=0)                                      # (3,)
    gains = np.where(means > 0, means.mean() / np.where(means > 0, means, 1.0), 1.0)
    return _to_uint8(x * gains)


def gamma(img: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``255 * (img / 255) ** gamma``."""
    _check(img)
    if gamma <= 0:
        raise BaselineError(f"gamma must be > 0, got {gamma}")
    return _to_uint8(255.0 * (img.astype(np.float64) / 255.0) ** gamma)


def auto_gamma(img: np.ndarray, target: float = 0.5) -> np.ndarray:
    """Gamma chosen so that the mean grey level ``mu`` (in [0, 1]) maps to ``target``: ``log(target) / log(mu)``;
    an all-black or all-white image is kept."""
    _check(img)
    if not 0.0 < target < 1.0:
        raise BaselineError(f"target must lie in (0, 1), got {target}")
    mu = float(img.mean()) / 255.0
    if not 0.0 < mu < 1.0:
        return img.copy()
    return gamma(img, float(np.log(target) / np.log(mu)))


BASELINES: dict[str, Callable[..., np.ndarray]] = {
    "autocontrast": autocontrast, "clahe": clahe, "equalize_hist": equalize_hist, "gray_world": gray_world,
    "gamma": gamma, "auto_gamma": auto_gamma}

GRIDS: dict[str, dict[str, tuple]] = {
    "autocontrast": {"clip": (0.0, 0.1, 0.5, 1.0, 2.0, 5.0)},
    "clahe": {"clip_limit": (1.0, 1.5, 2.0, 3.0, 4.0), "tiles": (2, 4, 8, 16)},
    "equalize_hist": {},
    "gray_world": {},
    "gamma": {"gamma": (0.6, 0.7, 0.8, 0.9, 1.0, 1.1, 1.25, 1.5)},
    "auto_gamma": {"target": (0.35, 0.4, 0.45, 0.5, 0.55)},
}

# Chosen by ``tune`` on the tuning set (training photographs x CORRUPTIONS); see the module docstring.
BEST: dict[str, dict] = {
    "autocontrast": {"clip": 0.0}, "clahe": {"clip_limit": 1.0, "tiles": 2}, "equalize_hist": {},
    "gray_world": {}, "gamma": {"gamma": 1.0}, "auto_gamma": {"target": 0.45}}


def settings(name: str) -> list[dict]:
    """Every setting of baseline ``name`` in its grid (one empty setting for a baseline without any)."""
    grid = GRIDS[name]
    return [dict(zip(grid, values)) for values in itertools.product(*grid.values())]


def apply(name: str, img: np.ndarray, setting: dict | None = None) -> np.ndarray:
    """Baseline ``name`` on ``img`` with ``setting`` (default: its ``BEST`` setting)."""
    if name not in BASELINES:
        raise BaselineError(f"unknown baseline '{name}' (known: {', '.join(BASELINES)})")
    return BASELINES[name](img, **(BEST[name] if setting is None else setting))


def tune(pairs: Iterable[tuple[np.ndarray, np.ndarray]], names: Iterable[str] = tuple(BASELINES)
         ) -> dict[str, dict]:
    """Per baseline: ``{"setting", "psnr_db", "ssim"}`` of the grid setting with the highest mean PSNR over the
    (clean, corrupted) uint8 pairs (ties broken by mean SSIM)."""
    pairs = list(pairs)
    out = {}
    for name in names:
        scored = []
        for setting in settings(name):
            outs = [(c, apply(name, b, setting)) for c, b in pairs]
            q = [(psnr(c, o, 255), ssim(c, o, 255)) for c, o in outs]
            scored.append((float(np.mean([v[0] for v in q])), float(np.mean([v[1] for v in q])), setting))
        p, s, setting = max(scored, key=lambda t: (t[0], t[1]))
        out[name] = {"setting": setting, "psnr_db": p, "ssim": s}
    return out
