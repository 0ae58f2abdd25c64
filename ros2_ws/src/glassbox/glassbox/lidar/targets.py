"""Training targets of the SPI detector from ground-truth 3D boxes and a projected scan.

For every box (centre, size l/w/h, yaw, class) in the LiDAR frame:

- the *object pixels* are the filled pixels whose 3D point lies inside the box enlarged by ``margin_m``;
- the *centre pixel* is the object pixel closest (in image coordinates, columns wrapping) to the projection of
  the box centre. The seed places the Gaussian at the projected centre, whose pixel often holds no point of the
  object (a ray through a car's centre hits its near side, or misses a thin pedestrian); its decoder then needs a
  point there, so the peak is moved to the nearest pixel that does belong to the object. Boxes without any
  object pixel get no peak and are counted in ``stats["no_points"]`` (the seed's fragmented-heatmap case);
- the heatmap holds a Gaussian of value exactly 1 at the centre pixel whose standard deviations (rows, columns)
  are a sixth of the extent of the projected box corners (at least ``min_sigma_px``); several objects of one
  class combine by element-wise max (the CenterNet/FairMOT convention);
- regression targets are written at every object pixel: offset = centre - point, with (dx, dy) rotated into the
  viewing frame of the point (by minus its azimuth), log of the size, and for a = yaw - azimuth the axis
  (sin 2a, cos 2a) and the direction bit: 1 when a lies within 90 degrees of atan2(sin 2a, cos 2a) / 2.
  ``reg_weight`` is 1 at object pixels, or with ``balance_power`` p, n^-p for an object of n pixels.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.lidar.projection import RangeImage, pixel_of


@dataclass(frozen=True)
class TargetConfig:
    """Heatmap and object-pixel settings."""

    num_classes: int = 3
    margin_m: float = 0.15
    min_sigma_px: float = 0.8
    sigma_fraction: float = 1.0 / 6.0
    #: regression weight of an object pixel: 1 (every pixel alike, so a near car with thousands of points
    #: outweighs a pedestrian with twenty) or ``object_pixels ** -balance_power`` (1: every object alike)
    balance_power: float = 0.0


def box_corners_3d(centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray) -> np.ndarray:
    """Eight corners (M, 8, 3) of boxes in the LiDAR frame."""
    signs = np.array([[sx, sy, sz] for sx in (0.5, -0.5) for sy in (0.5, -0.5) for sz in (0.5, -0.5)])
    local = signs[None] * sizes[:, None, :]                                # (M, 8, 3)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    x = c * local[..., 0] - s * local[..., 1]
    y = s * local[..., 0] + c * local[..., 1]
    return np.stack([x, y, local[..., 2]], axis=-1) + centers[:, None, :]


def points_in_boxes(points: np.ndarray, centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray,
                    margin_m: float = 0.0) -> np.ndarray:
    """(P, M) bool: point p inside box m (enlarged by ``margin_m`` on every side)."""
    d = points[:, None, :] - centers[None, :, :]                           # (P, M, 3)
    c, s = np.cos(yaw)[None], np.sin(yaw)[None]
    lx = c * d[..., 0] + s * d[..., 1]
    ly = -s * d[..., 0] + c * d[..., 1]
    half = sizes[None] / 2 + margin_m
    return (np.abs(lx) <= half[..., 0]) & (np.abs(ly) <= half[..., 1]) & (np.abs(d[..., 2]) <= half[..., 2])


def build_targets(image: RangeImage, centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray,
                  classes: np.ndarray, cfg: TargetConfig = TargetConfig()) -> dict[str, np.ndarray]:
    """Targets for one scan: ``heatmap`` (K, H, W), ``offset``/``size`` (3, H, W), ``yaw`` (3, H, W),
    ``reg_weight`` (H, W), ``centre_pixel`` (M, 2) int (-1 when the box has no points), ``object_id`` (H, W)
    int (-1 for background) and ``stats`` counts."""
    h, w = image.shape
    centers = np.asarray(centers, dtype=np.float64).reshape(-1, 3)
    sizes = np.asarray(sizes, dtype=np.float64).reshape(-1, 3)
    yaw = np.asarray(yaw, dtype=np.float64).reshape(-1)
    classes = np.asarray(classes).reshape(-1).astype(np.int64)
    m = len(centers)
    out = {"heatmap": np.zeros((cfg.num_classes, h, w), dtype=np.float32),
           "offset": np.zeros((3, h, w), dtype=np.float32), "size": np.zeros((3, h, w), dtype=np.float32),
           "yaw": np.zeros((3, h, w), dtype=np.float32), "reg_weight": np.zeros((h, w), dtype=np.float32),
           "object_id": np.full((h, w), -1, dtype=np.int64), "centre_pixel": np.full((m, 2), -1, dtype=np.int64)}
    if m == 0:
        out["stats"] = {"objects": 0, "no_points": 0}
        return out
    if np.any((classes < 0) | (classes >= cfg.num_classes)):
        raise ValueError(f"box classes must be in [0, {cfg.num_classes}), got {np.unique(classes)}")
    r_o, c_o, b_o = _object_pixels(image, centers, sizes, yaw, cfg.margin_m)
    _write_regression(out, image, r_o, c_o, b_o, centers, sizes, yaw)
    if cfg.balance_power and len(b_o):
        per_object = np.bincount(b_o, minlength=m).astype(np.float64)
        out["reg_weight"][r_o, c_o] = (per_object[b_o] ** -cfg.balance_power).astype(np.float32)
    no_points = _write_heatmaps(out, image, r_o, c_o, b_o, centers, sizes, yaw, classes, cfg)
    out["stats"] = {"objects": m, "no_points": no_points}
    return out


def _object_pixels(image: RangeImage, centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray,
                   margin_m: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows, columns and owning box of the filled pixels inside a box (the first box wins on overlaps)."""
    rows, cols = np.nonzero(image.mask)
    pts = image.xyz[rows, cols].astype(np.float64)                        # (P, 3)
    inside = points_in_boxes(pts, centers, sizes, yaw, margin_m)          # (P, M)
    owner = np.where(inside.any(axis=1), inside.argmax(axis=1), -1)
    sel = owner >= 0
    return rows[sel], cols[sel], owner[sel]


def _write_regression(out: dict, image: RangeImage, r_o: np.ndarray, c_o: np.ndarray, b_o: np.ndarray,
                      centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray) -> None:
    """Offsets (in the viewing frame of each point), log sizes, yaw axis and direction bit at the object pixels."""
    offset, size_t, yaw_t = out["offset"], out["size"], out["yaw"]
    p_o = image.xyz[r_o, c_o].astype(np.float64)
    phi = np.arctan2(p_o[:, 1], p_o[:, 0])
    d = centers[b_o] - p_o
    cp, sp = np.cos(phi), np.sin(phi)
    offset[0, r_o, c_o] = cp * d[:, 0] + sp * d[:, 1]
    offset[1, r_o, c_o] = -sp * d[:, 0] + cp * d[:, 1]
    offset[2, r_o, c_o] = d[:, 2]
    size_t[:, r_o, c_o] = np.log(sizes[b_o]).T
    alpha = yaw[b_o] - phi
    yaw_t[0, r_o, c_o] = np.sin(2 * alpha)
    yaw_t[1, r_o, c_o] = np.cos(2 * alpha)
    axis = 0.5 * np.arctan2(np.sin(2 * alpha), np.cos(2 * alpha))
    yaw_t[2, r_o, c_o] = (np.cos(alpha - axis) > 0).astype(np.float32)
    out["reg_weight"][r_o, c_o] = 1.0
    out["object_id"][r_o, c_o] = b_o


def _heatmap_sigmas(image: RangeImage, centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray,
                    cfg: TargetConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Projected box centres (row, col) and the Gaussian sigmas (rows, cols) from the projected corners."""
    m, w = len(centers), image.shape[1]
    cfg_p = image.config
    c_row, c_col, _ = pixel_of(centers, cfg_p)
    corner_rows, corner_cols, _ = pixel_of(box_corners_3d(centers, sizes, yaw).reshape(-1, 3), cfg_p)
    corner_rows = corner_rows.reshape(m, 8)
    dcol = (corner_cols.reshape(m, 8) - c_col[:, None] + w / 2) % w - w / 2   # unwrap around the centre
    sig_r = np.maximum((np.nanmax(corner_rows, 1) - np.nanmin(corner_rows, 1)) * cfg.sigma_fraction,
                       cfg.min_sigma_px)
    sig_c = np.maximum((dcol.max(1) - dcol.min(1)) * cfg.sigma_fraction, cfg.min_sigma_px)
    sig_r = np.where(np.isfinite(sig_r), sig_r, cfg.min_sigma_px)
    return c_row, c_col, sig_r, sig_c


def _write_heatmaps(out: dict, image: RangeImage, r_o: np.ndarray, c_o: np.ndarray, b_o: np.ndarray,
                    centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray, classes: np.ndarray,
                    cfg: TargetConfig) -> int:
    """A Gaussian peak per box at its object pixel closest to the projected centre; returns the number of boxes
    without object pixels (no peak)."""
    h, w = image.shape
    heatmap, centre_px = out["heatmap"], out["centre_pixel"]
    c_row, c_col, sig_r, sig_c = _heatmap_sigmas(image, centers, sizes, yaw, cfg)
    grid_r = np.arange(h)[:, None]
    no_points = 0
    for k in range(len(centers)):  # per object (tens per scan), each step vectorised over pixels
        mine = b_o == k
        if not mine.any():
            no_points += 1
            continue
        dr = r_o[mine] + 0.5 - c_row[k]
        dc = (c_o[mine] + 0.5 - c_col[k] + w / 2) % w - w / 2
        best = np.argmin(dr * dr + dc * dc)
        pr, pc = r_o[mine][best], c_o[mine][best]
        centre_px[k] = (pr, pc)
        gr = grid_r - pr                                                  # (H, 1)
        gc = (np.arange(w)[None, :] - pc + w // 2) % w - w // 2            # (1, W) wrapped
        g = np.exp(-(gr * gr) / (2 * sig_r[k] ** 2) - (gc * gc) / (2 * sig_c[k] ** 2)).astype(np.float32)
        g[pr, pc] = 1.0
        np.maximum(heatmap[classes[k]], g, out=heatmap[classes[k]])
    return no_points
