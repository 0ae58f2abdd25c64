"""Sensor faults as numpy transforms, one small function per fault, each with a severity in [0, 1].

The fault benchmark (``glassbox.monitor_eval``) injects them into frames rendered by ``glassbox.sim`` to measure
how well the entropy monitor detects trouble; the demo drive injects one for a time window. Severity 0 leaves the
data unchanged (a copy) and 1 is a strong, clearly visible fault; each docstring gives the physical meaning of the
parameter at severity ``s``.

Frames: LiDAR faults take and return ``(points (N, >=4) xyzi..., ring (N,) int or None)`` in the sensor frame
(x forward, y left, z up, intensity in [0, 1]; further columns, e.g. labels, stay with their points); RGB
faults take and return (H, W, 3) uint8; thermal faults take and return (H, W) uint16 raw counts. Random parts
draw from the ``rng`` passed in, so a seed gives the same fault.
``frozen_frame`` is temporal: :func:`fault_sequence` applies any fault to a sequence of frames.

Brightness changes reuse ``glassbox.vision.corruptions`` (torchvision's definition of brightness).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

from glassbox.vision.corruptions import corrupt_image

LidarFrame = tuple[np.ndarray, "np.ndarray | None"]


class FaultError(ValueError):
    """An unknown fault, a severity outside [0, 1], or data of the wrong kind."""


# ------------------------------------------------------------------------------------------------------ LiDAR
def _keep(frame: LidarFrame, keep: np.ndarray) -> LidarFrame:
    points, ring = frame
    return points[keep].copy(), (None if ring is None else ring[keep].copy())


def blocked_sector(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """Mud, a sticker or a mounted part hides an azimuth sector of width 120°·s centred straight ahead (+x):
    no returns there."""
    points = frame[0]
    azimuth = np.degrees(np.arctan2(points[:, 1], points[:, 0]))
    return _keep(frame, np.abs(azimuth) >= 60.0 * s)


def _rings(points: np.ndarray, ring: np.ndarray | None, beams: int = 64) -> np.ndarray:
    if ring is not None:
        return ring
    elevation = np.arctan2(points[:, 2], np.linalg.norm(points[:, :2], axis=1))
    edges = np.linspace(elevation.min(), elevation.max() + 1e-9, beams + 1)
    return np.searchsorted(edges, elevation, side="right") - 1


def beam_dropout(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """A fraction 0.6·s of the laser channels is dead (failed emitter or receiver): all their returns are missing.
    Channels come from ``ring``, or from 64 equal elevation bins when there is none."""
    ring = _rings(*frame)
    channels = np.unique(ring)
    dead = rng.choice(channels, size=int(round(0.6 * s * len(channels))), replace=False)
    return _keep(frame, ~np.isin(ring, dead))


def rain_clutter(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """Rain or snow: a fraction 0.3·s of the beams hits a droplet first, giving a weak return (intensity below
    0.05) at a range uniform in 0.5–8 m along the same beam instead of the surface behind it."""
    points, ring = frame[0].copy(), frame[1]
    hit = rng.uniform(size=len(points)) < 0.3 * s
    r = np.linalg.norm(points[hit, :3], axis=1, keepdims=True)
    points[hit, :3] *= rng.uniform(0.5, 8.0, (int(hit.sum()), 1)) / np.maximum(r, 1e-6)
    points[hit, 3] = rng.uniform(0.0, 0.05, int(hit.sum()))
    return points, (None if ring is None else ring.copy())


def fog_attenuation(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """Fog with extinction coefficient α = 0.03·s per metre (meteorological visibility 3/α: 100 m at s = 1): the
    two-way transmission T = exp(-2αr) scales each return's intensity, and a return survives with probability T."""
    points = frame[0]
    transmission = np.exp(-2.0 * 0.03 * s * np.linalg.norm(points[:, :3], axis=1))
    keep = rng.uniform(size=len(points)) < transmission
    points, ring = _keep(frame, keep)
    points[:, 3] *= transmission[keep]
    return points, ring


def mount_tilt(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """The sensor has slipped on its mount: the whole cloud is pitched nose-down by 8°·s about the sensor's y
    axis (the ground rises in front)."""
    points, ring = frame[0].copy(), frame[1]
    a = np.radians(8.0 * s)
    x, z = points[:, 0].copy(), points[:, 2].copy()
    points[:, 0], points[:, 2] = np.cos(a) * x - np.sin(a) * z, np.sin(a) * x + np.cos(a) * z
    return points, (None if ring is None else ring.copy())


def intensity_scale(frame: LidarFrame, s: float, rng: np.random.Generator) -> LidarFrame:
    """Intensity reported on another scale (a driver or firmware change, or a new calibration table): every
    intensity is multiplied by 1 + 4·s."""
    points, ring = frame[0].copy(), frame[1]
    points[:, 3] *= 1.0 + 4.0 * s
    return points, (None if ring is None else ring.copy())


# -------------------------------------------------------------------------------------------------------- RGB
def glare(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Low sun in the upper left: stray light adds a veil of 90·s grey levels to every pixel plus a bloom of
    up to 255·s levels around the sun (Gaussian, σ = 0.3 of the width)."""
    h, w = img.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    bloom = np.exp(-((xx - 0.25 * w) ** 2 + (yy - 0.1 * h) ** 2) / (2.0 * (0.3 * w) ** 2))
    light = s * (90.0 + 255.0 * bloom)
    return np.clip(img.astype(np.float32) + light[..., None], 0, 255).astype(np.uint8)


def night(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Dusk to night at a fixed exposure: the light falls to 1 - 0.92·s of day, and the gain the camera turns up
    adds sensor noise of σ = 10·s grey levels."""
    dark = corrupt_image(img, (("brightness", 1.0 - 0.92 * s),)).astype(np.float32)
    return np.clip(dark + rng.normal(0.0, 10.0 * s, img.shape), 0, 255).astype(np.uint8)


def lens_dirt(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Mud or dirt on the lens: soft-edged brown blobs (85 % opaque) covering a fraction 0.5·s of the image."""
    h, w = img.shape[:2]
    mask = np.zeros((h, w), np.uint8)
    while mask.mean() < 0.5 * s:
        centre = (int(rng.integers(w)), int(rng.integers(h)))
        cv2.circle(mask, centre, int(rng.uniform(0.04, 0.12) * w), 1, -1)
    soft = cv2.GaussianBlur(mask.astype(np.float32), (0, 0), 0.01 * w + 0.5)[..., None] * 0.85
    dirt = np.array([70.0, 55.0, 40.0], np.float32)
    return (img.astype(np.float32) * (1.0 - soft) + dirt * soft + 0.5).astype(np.uint8)


def blur(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Defocus or condensation: a Gaussian blur of σ = 2 % of the image width times s (6.4 px at 320 px)."""
    if s <= 0:
        return img.copy()
    return cv2.GaussianBlur(img, (0, 0), 0.02 * img.shape[1] * s)


def overexposure(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Auto-exposure stuck after a tunnel exit: every pixel is 1 + 3·s times brighter, clipped at white."""
    return corrupt_image(img, (("brightness", 1.0 + 3.0 * s),))


def colour_cast(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """White balance stuck at a tungsten preset in daylight, or a failed colour filter: red gain 1 + 0.5·s,
    blue gain 1 - 0.5·s."""
    gains = np.array([1.0 + 0.5 * s, 1.0, 1.0 - 0.5 * s], np.float32)
    return np.clip(img.astype(np.float32) * gains + 0.5, 0, 255).astype(np.uint8)


def frozen_frame(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """The driver keeps publishing the last good frame (a hung capture thread). On one frame this is the frame
    itself; :func:`fault_sequence` repeats the first frame of the faulty window. Severity has no effect."""
    return img.copy()


# ---------------------------------------------------------------------------------------------------- thermal
def _span(img: np.ndarray) -> float:
    lo, hi = np.percentile(img, [1.0, 99.0])
    return float(max(hi - lo, 1.0))


def nuc_failure(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Flat-field / non-uniformity correction lost (a failed shutter calibration of an uncooled microbolometer):
    the fixed pattern comes back as column offsets of σ = 0.3·s and pixel offsets of σ = 0.1·s of the scene's
    1–99 % span, plus a vignette falling by 0.5·s span towards the corners."""
    h, w = img.shape
    span = _span(img)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    vignette = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    pattern = (rng.normal(0.0, 0.3, (1, w)) + rng.normal(0.0, 0.1, (h, w)) - 0.5 * vignette) * s * span
    return np.clip(img.astype(np.float64) + pattern, 0, 65535).astype(np.uint16)


def thermal_dropout(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """Lost lines on the camera link: a fraction 0.5·s of the rows arrives as zeros."""
    out = img.copy()
    out[rng.uniform(size=img.shape[0]) < 0.5 * s] = 0
    return out


def saturation(img: np.ndarray, s: float, rng: np.random.Generator) -> np.ndarray:
    """The detector saturates (sun or a hot exhaust in view, integration time too long): everything above the
    frame's (1 - 0.7·s) quantile reads the same full-scale count, a flat white region of 70·s % of the frame."""
    if s <= 0:
        return img.copy()
    return np.minimum(img, np.uint16(np.quantile(img, 1.0 - 0.7 * s)))


# ------------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class Fault:
    name: str
    sensor: str                     # lidar, rgb, thermal
    apply: Callable[[Any, float, np.random.Generator], Any]
    temporal: bool = False          # needs the sequence (frozen_frame)

    @property
    def description(self) -> str:
        return " ".join((self.apply.__doc__ or "").split())


FAULTS: dict[str, Fault] = {f.name: f for f in (
    Fault("blocked_sector", "lidar", blocked_sector), Fault("beam_dropout", "lidar", beam_dropout),
    Fault("rain_clutter", "lidar", rain_clutter), Fault("fog_attenuation", "lidar", fog_attenuation),
    Fault("mount_tilt", "lidar", mount_tilt), Fault("intensity_scale", "lidar", intensity_scale),
    Fault("glare", "rgb", glare), Fault("night", "rgb", night), Fault("lens_dirt", "rgb", lens_dirt),
    Fault("blur", "rgb", blur), Fault("overexposure", "rgb", overexposure),
    Fault("frozen_frame", "rgb", frozen_frame, temporal=True), Fault("colour_cast", "rgb", colour_cast),
    Fault("nuc_failure", "thermal", nuc_failure), Fault("thermal_dropout", "thermal", thermal_dropout),
    Fault("saturation", "thermal", saturation))}
SENSORS = ("lidar", "rgb", "thermal")


def get_fault(name: str) -> Fault:
    if name not in FAULTS:
        raise FaultError(f"unknown fault '{name}' (known: {', '.join(FAULTS)})")
    return FAULTS[name]


def inject(name: str, frame: Any, severity: float, rng: np.random.Generator) -> Any:
    """``frame`` with fault ``name`` at ``severity`` in [0, 1] (a copy; the input is not changed)."""
    fault = get_fault(name)
    if not 0.0 <= severity <= 1.0:
        raise FaultError(f"severity must lie in [0, 1], got {severity}")
    if fault.sensor == "lidar" and not (isinstance(frame, tuple) and len(frame) == 2):
        raise FaultError(f"LiDAR fault '{name}' takes a (points, ring) pair")
    return fault.apply(frame, severity, rng)


def fault_sequence(frames: Sequence[Any], name: str, severity: float, seed: int = 0) -> list[Any]:
    """Every frame of a sequence with the fault applied (``frozen_frame``: the first frame, repeated)."""
    if get_fault(name).temporal:
        return [inject(name, frames[0], severity, np.random.default_rng(seed)) for _ in frames]
    rng = np.random.default_rng(seed)
    return [inject(name, f, severity, rng) for f in frames]
