"""Spherical (range-image) projection of a spinning LiDAR scan, and its inverse.

A point (x, y, z) in the LiDAR frame (x forward, y left, z up) lands on pixel (row, col) of an H x W image:

- column from the azimuth phi = atan2(y, x), so the full 360 degrees are covered and front and back never alias
  (the seed's Eq. 80 uses arcsin(y / sqrt(x^2 + y^2)), which folds the rear half onto the front; Eq. 79 uses atan2
  as here): ``col = floor(0.5 * (1 - phi / pi) * W)`` with ``col = W`` wrapped to 0. Column 0 starts at phi = +pi
  (behind the sensor), the forward direction sits at column W / 2 and azimuth decreases to the right;
- row from the elevation theta = arcsin(z / r), in one of three ways:
  * a uniform vertical field of view: rows split (fov_down_deg, fov_up_deg] into H equal bands, row 0 on top,
    ``row = floor((fov_up - theta) / (fov_up - fov_down) * H)``; ``fov_up_deg`` / ``fov_down_deg`` are the outer
    edges of the top and bottom rows, so a sensor whose beams are evenly spaced by d has its beam angles +- d/2
    inside them;
  * a per-beam table (``beam_elevations_deg``, top beam first): a point goes to the nearest beam, and is out of
    the field of view when it lies more than half a beam spacing beyond the outermost beams;
  * the cloud's ``ring`` field, when given and ``use_ring`` is set: ``row = ring`` (``ring_order="top_first"``) or
    ``H - 1 - ring`` (``"bottom_first"``, the Velodyne driver convention); rings >= H are out of the FOV.

``ProjectionConfig.from_profile`` builds the geometry of a sensor (``glassbox.lidar.sensors``): one row per beam
of its table, rows from the ring field; a cloud of another sensor is first fitted to it (``CloudFit``).

When several points fall on one pixel, the closest one wins; ranges equal to about 2^-(range_bits - 8) relative
(2^-20 for 131k points on 64 x 2048 pixels, far below any range noise) count as ties and go to the point that
comes first in the input.
NaN/inf coordinates, ranges <= ``min_range_m`` (zero range included), ranges > ``max_range_m`` and elevations
outside the field of view are dropped and counted in ``RangeImage.dropped``.

Speed: one ``np.sort`` (not ``argsort``) of packed 64-bit keys (pixel, range bits, point index) gives the winner
of every pixel directly, and one scatter of a stacked (M, 5) array fills every channel, instead of an
``argsort`` plus one fancy-indexed scatter per channel; rows come straight from the ring field when there
is one (no trigonometry), and the azimuth uses torch's vectorised ``atan2`` (numpy's is scalar code).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

if TYPE_CHECKING:
    from glassbox.lidar.sensors import SensorProfile

CHANNELS = ("range", "x", "y", "z", "intensity", "mask")


class ProjectionError(ValueError):
    """A point cloud or a projection configuration that cannot be projected."""


@dataclass(frozen=True)
class ProjectionConfig:
    """Range-image geometry and input normalisation.

    ``channels`` picks the network input channels (from ``range``, ``x``, ``y``, ``z``, ``intensity``, ``mask``);
    ``mean`` / ``std`` normalise them in the same order (``mask`` is usually given mean 0, std 1). Empty pixels
    hold 0 in every raw channel before normalisation.
    """

    height: int = 64
    width: int = 2048
    fov_up_deg: float = 3.0
    fov_down_deg: float = -25.0
    beam_elevations_deg: tuple[float, ...] = ()
    use_ring: bool = True
    ring_order: Literal["top_first", "bottom_first"] = "top_first"
    min_range_m: float = 0.0
    max_range_m: float = 200.0
    channels: tuple[str, ...] = ("range", "x", "y", "z", "intensity")
    mean: tuple[float, ...] = (12.0, 0.0, 0.0, -1.0, 0.3)
    std: tuple[float, ...] = (12.0, 12.0, 12.0, 1.0, 0.3)

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ProjectionError(f"height and width must be positive, got {self.height} x {self.width}")
        if not self.fov_up_deg > self.fov_down_deg:
            raise ProjectionError(f"fov_up_deg ({self.fov_up_deg}) must exceed fov_down_deg ({self.fov_down_deg})")
        if self.beam_elevations_deg:
            beams = np.asarray(self.beam_elevations_deg)
            if len(beams) != self.height:
                raise ProjectionError(f"beam_elevations_deg has {len(beams)} beams but height is {self.height}")
            if len(beams) > 1 and not np.all(np.diff(beams) < 0):
                raise ProjectionError("beam_elevations_deg must be strictly decreasing (top beam first)")
        unknown = [c for c in self.channels if c not in CHANNELS]
        if unknown:
            raise ProjectionError(f"unknown channel '{unknown[0]}' (known: {', '.join(CHANNELS)})")
        if len(self.mean) != len(self.channels) or len(self.std) != len(self.channels):
            raise ProjectionError(f"mean ({len(self.mean)}) and std ({len(self.std)}) need one value per channel "
                                  f"({len(self.channels)})")
        if any(s <= 0 for s in self.std):
            raise ProjectionError(f"std values must be positive, got {self.std}")
        if self.height * self.width >= 2 ** 31:
            raise ProjectionError("range image too large (height * width must stay below 2**31)")

    @classmethod
    def from_profile(cls, profile: SensorProfile, width: int | None = None, **overrides) -> ProjectionConfig:
        """The range image of a sensor (``glassbox.lidar.sensors.SensorProfile``): one row per beam of its table
        (top beam first), rows from the ring field in the sensor's ring order, ``width`` columns (default: its
        columns per turn), its maximum range, and the intensity channel normalised in its units (the default
        mean / std of a 0-1 intensity times ``intensity_max``). ``overrides``: any other field."""
        base = cls()
        scale = [profile.intensity_max if c == "intensity" else 1.0 for c in base.channels]
        fields = dict(height=profile.num_beams, width=width or profile.columns, fov_up_deg=profile.fov_up_deg,
                      fov_down_deg=profile.fov_down_deg, beam_elevations_deg=tuple(profile.elevations_deg),
                      use_ring=True, ring_order=profile.ring_order, max_range_m=profile.max_range_m,
                      mean=tuple(m * s for m, s in zip(base.mean, scale)),
                      std=tuple(v * s for v, s in zip(base.std, scale)))
        return cls(**{**fields, **overrides})

    def row_elevations_rad(self) -> np.ndarray:
        """Elevation of the centre of every row (radians), top row first."""
        if self.beam_elevations_deg:
            return np.deg2rad(np.asarray(self.beam_elevations_deg, dtype=np.float64))
        step = (self.fov_up_deg - self.fov_down_deg) / self.height
        return np.deg2rad(self.fov_up_deg - (np.arange(self.height) + 0.5) * step)

    def col_azimuths_rad(self) -> np.ndarray:
        """Azimuth of the centre of every column (radians), column 0 first."""
        return math.pi * (1.0 - 2.0 * (np.arange(self.width) + 0.5) / self.width)


@dataclass
class RangeImage:
    """A projected scan. Empty pixels: ``mask`` False, ``point_index`` -1, zeros elsewhere.

    ``dropped`` counts the input points removed before projection (``nonfinite``, ``zero_range`` for ranges
    <= min_range_m, ``beyond_range``, ``out_of_fov``); ``occluded`` counts valid points that lost their pixel to a
    closer point.
    """

    range: np.ndarray        # (H, W) float32, metres
    xyz: np.ndarray          # (H, W, 3) float32
    intensity: np.ndarray    # (H, W) float32
    mask: np.ndarray         # (H, W) bool
    point_index: np.ndarray  # (H, W) int64, index into the input cloud, -1 where empty
    config: ProjectionConfig
    dropped: dict[str, int] = field(default_factory=dict)
    occluded: int = 0

    @property
    def shape(self) -> tuple[int, int]:
        return self.range.shape

    def channels(self, names: tuple[str, ...] | None = None) -> np.ndarray:
        """Raw (un-normalised) channels stacked as (C, H, W) float32, in ``names`` or the config's order."""
        names = self.config.channels if names is None else names
        planes = {"range": self.range, "x": self.xyz[..., 0], "y": self.xyz[..., 1], "z": self.xyz[..., 2],
                  "intensity": self.intensity, "mask": self.mask}
        return np.stack([planes[n] for n in names]).astype(np.float32, copy=False)


def _rows(elevation: np.ndarray | None, ring: np.ndarray | None, cfg: ProjectionConfig) -> np.ndarray:
    """Row index per point (may be out of [0, H) for points outside the vertical field of view)."""
    if ring is not None and cfg.use_ring:
        rows = ring.astype(np.int64)
        return rows if cfg.ring_order == "top_first" else (cfg.height - 1) - rows
    return elevation_rows(elevation, cfg)


def elevation_rows(elevation: np.ndarray, cfg: ProjectionConfig) -> np.ndarray:
    """Row of every elevation (radians) through the beam table (nearest beam) or the uniform field of view;
    rows outside [0, H) lie outside the vertical field of view."""
    h = cfg.height
    if cfg.beam_elevations_deg:
        beams = np.deg2rad(np.asarray(cfg.beam_elevations_deg, dtype=np.float64))
        if h == 1:
            half = math.radians(cfg.fov_up_deg - cfg.fov_down_deg) / 2.0
            edges = np.array([beams[0] + half, beams[0] - half])
        else:
            mids = 0.5 * (beams[:-1] + beams[1:])
            edges = np.concatenate([[beams[0] + (beams[0] - beams[1]) / 2], mids,
                                    [beams[-1] - (beams[-2] - beams[-1]) / 2]])
        # edges decrease; row i covers (edges[i + 1], edges[i]]
        return np.searchsorted(-edges, -elevation, side="left") - 1
    up, down = math.radians(cfg.fov_up_deg), math.radians(cfg.fov_down_deg)
    rows = np.floor((up - elevation) * (h / (up - down))).astype(np.int64)
    return rows


def project_points(points: np.ndarray, cfg: ProjectionConfig, ring: np.ndarray | None = None) -> RangeImage:
    """Project an (N, >=3) cloud (x, y, z[, intensity, ...]) onto the range image described by ``cfg``.

    ``ring`` (N,) is the beam index of every point, used for the row when ``cfg.use_ring`` is set.
    """
    pts, ring = _checked_input(points, ring)
    n = pts.shape[0]
    h, w = cfg.height, cfg.width
    rng, finite, near, far = _ranges(pts, cfg)
    keep = finite & ~near & ~far
    idx, r, x, y, rows = _kept_points(pts, rng, keep, ring, cfg)
    pixel = rows.astype(np.int64) * w + _columns(x, y, w)
    filled_pixels, local = _closest_per_pixel(pixel, r, h, w)
    src = local if idx is None else idx[local]
    point_index = np.full(h * w, -1, dtype=np.int64)
    point_index[filled_pixels] = src
    feats = _scatter_channels(pts, rng, src, filled_pixels, h * w).reshape(h, w, 5)
    return RangeImage(
        range=feats[..., 0], xyz=feats[..., 1:4], intensity=feats[..., 4], mask=(point_index >= 0).reshape(h, w),
        point_index=point_index.reshape(h, w), config=cfg,
        dropped={"nonfinite": int(n - np.count_nonzero(finite)), "zero_range": int(np.count_nonzero(near)),
                 "beyond_range": int(np.count_nonzero(far)), "out_of_fov": int(np.count_nonzero(keep)) - int(r.size)},
        occluded=int(r.size - src.size))


def _checked_input(points: np.ndarray, ring: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """The cloud as float32 (a view when it already is) and the ring array, shapes checked."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ProjectionError(f"points must be (N, >=3) x, y, z[, intensity], got shape {points.shape}")
    if ring is not None:
        ring = np.asarray(ring)
        if ring.shape != (points.shape[0],):
            raise ProjectionError(f"ring must have shape ({points.shape[0]},), got {ring.shape}")
    return points.astype(np.float32, copy=False), ring


def _ranges(pts: np.ndarray, cfg: ProjectionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Range of every point and the masks: finite (coordinates and intensity), too near, too far."""
    xyz = pts[:, :3]
    with np.errstate(invalid="ignore", over="ignore"):
        r2 = np.einsum("ij,ij->i", xyz, xyz)                      # NaN / inf coordinates give a non-finite r2
        finite = np.isfinite(r2)
        if pts.shape[1] > 3:
            finite &= np.isfinite(pts[:, 3])
        rng = np.sqrt(r2)
        near = finite & (rng <= cfg.min_range_m)
        far = finite & (rng > cfg.max_range_m)
    return rng, finite, near, far


def _kept_points(pts: np.ndarray, rng: np.ndarray, keep: np.ndarray, ring: np.ndarray | None,
                 cfg: ProjectionConfig) -> tuple[np.ndarray | None, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The points in range and inside the vertical field of view: their input indices (None when every point
    is kept), ranges, x, y and rows."""
    xyz = pts[:, :3]
    if keep.all():
        idx = None
        r, x, y, z = rng, xyz[:, 0], xyz[:, 1], xyz[:, 2]
        ring_k = ring
    else:
        idx = np.flatnonzero(keep)
        r, x, y, z = rng[idx], xyz[idx, 0], xyz[idx, 1], xyz[idx, 2]
        ring_k = None if ring is None else ring[idx]
    if ring_k is not None and cfg.use_ring:
        rows = _rows(None, ring_k, cfg)
    else:
        rows = _rows(np.arcsin(np.clip(z / r, -1.0, 1.0)).astype(np.float64), None, cfg)
    in_fov = (rows >= 0) & (rows < cfg.height)
    if not in_fov.all():
        sel = np.flatnonzero(in_fov)
        idx = sel if idx is None else idx[sel]
        rows, r, x, y = rows[sel], r[sel], x[sel], y[sel]
    return idx, r, x, y, rows


def _columns(x: np.ndarray, y: np.ndarray, w: int) -> np.ndarray:
    """Column of every point from its azimuth (column 0 at phi = +pi, wrapped into [0, W))."""
    # torch's vectorised atan2 is about 8x faster than numpy's on float32 (same IEEE result class)
    azimuth = torch.atan2(torch.from_numpy(np.ascontiguousarray(y)), torch.from_numpy(np.ascontiguousarray(x)))
    cols = np.floor((0.5 - azimuth.numpy() * (0.5 / math.pi)) * w).astype(np.int64)
    cols[cols >= w] -= w
    cols[cols < 0] += w
    return cols


def _closest_per_pixel(pixel: np.ndarray, r: np.ndarray, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """The filled pixels (unique, increasing) and, per filled pixel, the position in ``r`` of its closest point.

    One np.sort (no argsort) of packed 63-bit keys: pixel | range | point, where the range field holds the top
    bits of the float32 range (positive float bits sort like the floats)."""
    m = r.size
    pix_bits = max(1, (h * w - 1).bit_length())
    idx_bits = max(1, (m - 1).bit_length()) if m else 1
    range_bits = 63 - pix_bits - idx_bits
    if range_bits < 20:
        raise ProjectionError(f"{m} points on {h} x {w} pixels leave {range_bits} key bits for the range (need 20)")
    rbits = r.view(np.uint32).astype(np.int64)
    rq = rbits >> (31 - range_bits) if range_bits < 31 else rbits << (range_bits - 31)
    keys = (pixel << (range_bits + idx_bits)) | (rq << idx_bits) | np.arange(m, dtype=np.int64)
    keys.sort()
    first = np.empty(m, dtype=bool)
    if m:
        first[0] = True
        pix_sorted = keys >> (range_bits + idx_bits)
        np.not_equal(pix_sorted[1:], pix_sorted[:-1], out=first[1:])
    heads = keys[first]
    return heads >> (range_bits + idx_bits), heads & ((1 << idx_bits) - 1)


def _scatter_channels(pts: np.ndarray, rng: np.ndarray, src: np.ndarray, filled_pixels: np.ndarray,
                      n_pixels: int) -> np.ndarray:
    """(H*W, 5) float32 range, x, y, z, intensity of the winning points, zeros elsewhere."""
    rows_src = np.take(pts, src, axis=0)                         # row gather: far faster than xyz[src]
    stacked = np.empty((src.size, 5), dtype=np.float32)
    stacked[:, 0] = rng[src]
    stacked[:, 1:4] = rows_src[:, :3]
    stacked[:, 4] = rows_src[:, 3] if pts.shape[1] > 3 else 0.0
    feats = np.zeros((n_pixels, 5), dtype=np.float32)
    row_t = np.dtype((np.void, 5 * 4))                            # one 20-byte element per pixel: one scatter
    np.put(feats.view(row_t).reshape(-1), filled_pixels, stacked.view(row_t).reshape(-1))
    return feats


def unproject(image: RangeImage) -> np.ndarray:
    """Points (M, 3) rebuilt from every filled pixel's range and its row / column centre angles.

    Rows follow ``image.config`` (uniform FOV or beam table; for ring-based rows the same row angles are used),
    so the result differs from the stored xyz by at most the angular quantisation:
    ``|dp| <= r * sqrt((d_theta / 2)^2 + (d_phi / 2)^2)`` to first order. Pixel order is row-major.
    """
    cfg = image.config
    rows, cols = np.nonzero(image.mask)
    theta = cfg.row_elevations_rad()[rows]
    phi = cfg.col_azimuths_rad()[cols]
    r = image.range[rows, cols].astype(np.float64)
    cos_t = np.cos(theta)
    return np.stack([r * cos_t * np.cos(phi), r * cos_t * np.sin(phi), r * np.sin(theta)], axis=1).astype(np.float32)


def pixel_of(xyz: np.ndarray, cfg: ProjectionConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Continuous (row, col) image coordinates of points (N, 3) and whether they fall inside the FOV.

    Used to place targets for box centres and corners; the integer pixel is ``floor`` of each coordinate.
    Rows come from the uniform FOV or the beam table (linear interpolation between beam angles).
    """
    xyz = np.asarray(xyz, dtype=np.float64).reshape(-1, 3)
    r = np.linalg.norm(xyz, axis=1)
    ok = r > 0
    theta = np.arcsin(np.clip(np.divide(xyz[:, 2], r, out=np.zeros_like(r), where=ok), -1.0, 1.0))
    phi = np.arctan2(xyz[:, 1], xyz[:, 0])
    col = 0.5 * (1.0 - phi / math.pi) * cfg.width
    col = np.mod(col, cfg.width)
    if cfg.beam_elevations_deg:
        centres = cfg.row_elevations_rad()
        row = np.interp(-theta, -centres, np.arange(cfg.height) + 0.5,
                        left=-np.inf, right=np.inf)
        if cfg.height > 1:
            top_half = (centres[0] - centres[1]) / 2
            bottom_half = (centres[-2] - centres[-1]) / 2
            row = np.where(theta > centres[0], 0.5 - (theta - centres[0]) / (2 * top_half), row)
            row = np.where(theta < centres[-1], cfg.height - 0.5 + (centres[-1] - theta) / (2 * bottom_half), row)
    else:
        up, down = math.radians(cfg.fov_up_deg), math.radians(cfg.fov_down_deg)
        row = (up - theta) * (cfg.height / (up - down))
    inside = ok & (row >= 0) & (row < cfg.height)
    return row, col, inside


def normalise(image: RangeImage) -> np.ndarray:
    """Network input (C, H, W) float32: the config's channels, (value - mean) / std, empty pixels raw 0."""
    cfg = image.config
    raw = image.channels()
    mean = np.asarray(cfg.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(cfg.std, dtype=np.float32)[:, None, None]
    return (raw - mean) / std
