"""Exact IoU of rotated boxes: bird's-eye-view (BEV) polygon IoU and 3D IoU, vectorised over box pairs.

Boxes are (x, y, z, length, width, height, yaw): centre in the LiDAR frame, length along the heading, yaw about
+z from +x (the ``Boxes3D`` convention of ``glassbox.sim``). The BEV footprint of each box is a rectangle; the
intersection of two convex polygons is the convex hull of (corners of A inside B) + (corners of B inside A) +
(edge-edge crossings), so every pair is solved with fixed-size arrays: 24 candidate points, a validity mask,
an angular sort around their mean and the shoelace formula. The result is exact up to float64 rounding (no
rasterisation, no axis-aligned approximation). 3D IoU multiplies the BEV intersection by the overlap in z.
"""
from __future__ import annotations

import numpy as np

_EPS = 1e-9


def bev_corners(boxes: np.ndarray) -> np.ndarray:
    """Counter-clockwise BEV corners (M, 4, 2) of boxes (M, 7) or (M, 5) laid out as (x, y, [z,] l, w, [h,] yaw)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.shape[-1] == 7:
        x, y, length, width, yaw = boxes[:, 0], boxes[:, 1], boxes[:, 3], boxes[:, 4], boxes[:, 6]
    elif boxes.shape[-1] == 5:
        x, y, length, width, yaw = boxes.T
    else:
        raise ValueError(f"boxes must be (M, 7) or (M, 5), got {boxes.shape}")
    local = np.array([[0.5, 0.5], [-0.5, 0.5], [-0.5, -0.5], [0.5, -0.5]])  # (4, 2), CCW
    pts = local[None] * np.stack([length, width], axis=1)[:, None, :]  # (M, 4, 2)
    c, s = np.cos(yaw)[:, None], np.sin(yaw)[:, None]
    return np.stack([c * pts[..., 0] - s * pts[..., 1] + x[:, None],
                     s * pts[..., 0] + c * pts[..., 1] + y[:, None]], axis=-1)


def _cross(o: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a[..., 0] - o[..., 0]) * (b[..., 1] - o[..., 1]) - (a[..., 1] - o[..., 1]) * (b[..., 0] - o[..., 0])


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """points (P, K, 2) inside-or-on CCW quads poly (P, 4, 2) -> (P, K) bool."""
    a = poly[:, None, :, :]                      # (P, 1, 4, 2)
    b = np.roll(poly, -1, axis=1)[:, None]       # (P, 1, 4, 2)
    p = points[:, :, None, :]                    # (P, K, 1, 2)
    edge = np.linalg.norm(b - a, axis=-1)        # (P, 1, 4)
    return np.all(_cross(a, b, p) >= -_EPS * np.maximum(edge, 1.0), axis=-1)


def polygon_intersection_area(pa: np.ndarray, pb: np.ndarray) -> np.ndarray:
    """Intersection areas (P,) of CCW convex quads pa, pb (P, 4, 2), pairwise by row."""
    pa = np.asarray(pa, dtype=np.float64)
    pb = np.asarray(pb, dtype=np.float64)
    p = pa.shape[0]
    if p == 0:
        return np.zeros(0)
    a0, a1 = pa, np.roll(pa, -1, axis=1)               # (P, 4, 2) edges of A
    b0, b1 = pb, np.roll(pb, -1, axis=1)
    da = (a1 - a0)[:, :, None, :]                      # (P, 4, 1, 2)
    db = (b1 - b0)[:, None, :, :]                      # (P, 1, 4, 2)
    diff = b0[:, None, :, :] - a0[:, :, None, :]       # (P, 4, 4, 2)
    denom = da[..., 0] * db[..., 1] - da[..., 1] * db[..., 0]
    parallel = np.abs(denom) < _EPS
    safe = np.where(parallel, 1.0, denom)
    t = (diff[..., 0] * db[..., 1] - diff[..., 1] * db[..., 0]) / safe
    u = (diff[..., 0] * da[..., 1] - diff[..., 1] * da[..., 0]) / safe
    hit = ~parallel & (t >= -_EPS) & (t <= 1 + _EPS) & (u >= -_EPS) & (u <= 1 + _EPS)
    cross_pts = (a0[:, :, None, :] + t[..., None] * da).reshape(p, 16, 2)
    cand = np.concatenate([pa, pb, cross_pts], axis=1)                      # (P, 24, 2)
    valid = np.concatenate([_inside(pa, pb), _inside(pb, pa), hit.reshape(p, 16)], axis=1)
    count = valid.sum(axis=1)
    centre = (cand * valid[..., None]).sum(axis=1) / np.maximum(count, 1)[:, None]
    ang = np.arctan2(cand[..., 1] - centre[:, None, 1], cand[..., 0] - centre[:, None, 0])
    ang = np.where(valid, ang, np.inf)                 # invalid points sort last
    order = np.argsort(ang, axis=1)
    pts = np.take_along_axis(cand, order[..., None], axis=1)
    ok = np.take_along_axis(valid, order, axis=1)
    # invalid slots repeat the first valid point, which adds zero-area terms and closes the polygon
    pts = np.where(ok[..., None], pts, pts[:, :1, :])
    nxt = np.roll(pts, -1, axis=1)
    area = 0.5 * (pts[..., 0] * nxt[..., 1] - pts[..., 1] * nxt[..., 0]).sum(axis=1)
    return np.where(count >= 3, np.abs(area), 0.0)


def _pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).reshape(-1, 7)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 7)
    ia, ib = np.meshgrid(np.arange(len(a)), np.arange(len(b)), indexing="ij")
    return a[ia.ravel()], b[ib.ravel()]


def _bev_overlap_candidates(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairs whose circumscribed circles overlap (the others have zero intersection)."""
    ra = 0.5 * np.hypot(a[:, 3], a[:, 4])
    rb = 0.5 * np.hypot(b[:, 3], b[:, 4])
    return np.hypot(a[:, 0] - b[:, 0], a[:, 1] - b[:, 1]) <= ra + rb + 1e-9


def _intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    inter = np.zeros(len(a))
    cand = _bev_overlap_candidates(a, b)
    if cand.any():
        inter[cand] = polygon_intersection_area(bev_corners(a[cand]), bev_corners(b[cand]))
    return inter


def _pair_overlaps(a: np.ndarray, b: np.ndarray) -> tuple[int, int, np.ndarray, np.ndarray, np.ndarray] | None:
    """(Ma, Mb, every pair's box from a, from b, their BEV intersection areas); None when a or b is empty."""
    na = np.asarray(a).reshape(-1, 7).shape[0]
    nb = np.asarray(b).reshape(-1, 7).shape[0]
    pa, pb = _pairs(a, b)
    return None if pa.size == 0 else (na, nb, pa, pb, _intersections(pa, pb))


def _empty(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.zeros((np.asarray(a).reshape(-1, 7).shape[0], np.asarray(b).reshape(-1, 7).shape[0]))


def bev_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """BEV IoU matrix (Ma, Mb) of boxes a (Ma, 7) and b (Mb, 7)."""
    overlaps = _pair_overlaps(a, b)
    if overlaps is None:
        return _empty(a, b)
    na, nb, pa, pb, inter = overlaps
    union = pa[:, 3] * pa[:, 4] + pb[:, 3] * pb[:, 4] - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    return iou.reshape(na, nb)


def iou_3d(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """3D IoU matrix (Ma, Mb): BEV intersection x z-overlap over the union of volumes (z is the box centre)."""
    overlaps = _pair_overlaps(a, b)
    if overlaps is None:
        return _empty(a, b)
    na, nb, pa, pb, inter = overlaps
    top = np.minimum(pa[:, 2] + pa[:, 5] / 2, pb[:, 2] + pb[:, 5] / 2)
    bottom = np.maximum(pa[:, 2] - pa[:, 5] / 2, pb[:, 2] - pb[:, 5] / 2)
    inter_v = inter * np.clip(top - bottom, 0.0, None)
    vol = pa[:, 3] * pa[:, 4] * pa[:, 5] + pb[:, 3] * pb[:, 4] * pb[:, 5]
    union = vol - inter_v
    iou = np.divide(inter_v, union, out=np.zeros_like(inter_v), where=union > 0)
    return iou.reshape(na, nb)
