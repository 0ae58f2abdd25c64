"""Procedural surface textures evaluated at ray hit points (vectorised, deterministic, no image files).

Textures are functions of the world position of a hit: hash-based 3D value noise (asphalt grain, foliage,
stains), lane markings on the road, tile joints on sidewalks and window grids on facades. The same functions
give the LiDAR reflectivity variation (lane paint is retro-reflective), so camera and LiDAR agree.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from glassbox.sim.materials import MATERIAL_ID

_M = MATERIAL_ID


def _hash3(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Integer lattice hash -> float32 in [0, 1)."""
    h = (ix.astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (iy.astype(np.uint32) * np.uint32(0xD8163841)) \
        ^ (iz.astype(np.uint32) * np.uint32(0xCB1AB31F)) ^ np.uint32(seed * 0x9E3779B1 & 0xFFFFFFFF)
    h ^= h >> np.uint32(15)
    h *= np.uint32(0x2C1B3C6D)
    h ^= h >> np.uint32(12)
    h *= np.uint32(0x297A2D39)
    h ^= h >> np.uint32(15)
    return (h >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


_TABLE_BITS = 6
_TABLE_N = 1 << _TABLE_BITS


@lru_cache(maxsize=4)
def _noise_table(seed: int) -> np.ndarray:
    """Random lattice values (64^3, flat) of one seed: value noise reads it with wrapped lattice indices."""
    table = np.random.default_rng(np.random.SeedSequence([seed & 0xFFFFFFFF, 0x7E27])).random(_TABLE_N ** 3)
    table = table.astype(np.float32)
    table.setflags(write=False)
    return table


def value_noise(p: np.ndarray, scale: float, seed: int = 0) -> np.ndarray:
    """Smooth 3D value noise in [0, 1) with feature size ``scale`` metres at the points ``p`` (N, 3); the lattice
    repeats every 64 cells, and each ``seed`` offsets it so that octaves are decorrelated."""
    table = _noise_table(0)
    off = _hash3(np.array([seed]), np.array([1]), np.array([2]), 7)[0] * 1000.0
    q = p.astype(np.float32) * np.float32(1.0 / scale) + np.float32(off)
    i = np.floor(q)
    f = q - i
    f = f * f * (3 - 2 * f)
    i = i.astype(np.int32)
    m = _TABLE_N - 1
    ix0, iy0, iz0 = i[:, 0] & m, i[:, 1] & m, i[:, 2] & m
    ix0 <<= 2 * _TABLE_BITS
    iy0 <<= _TABLE_BITS
    ix1 = (ix0 + (1 << 2 * _TABLE_BITS)) & (m << 2 * _TABLE_BITS)
    iy1 = (iy0 + (1 << _TABLE_BITS)) & (m << _TABLE_BITS)
    iz1 = (iz0 + 1) & m
    fx, fy, fz = f[:, 0], f[:, 1], f[:, 2]
    gz = 1 - fz
    out = np.zeros(len(p), np.float32)
    for ix, wx in ((ix0, 1 - fx), (ix1, fx)):
        for iy, wy in ((iy0, 1 - fy), (iy1, fy)):
            base = ix + iy
            out += (wx * wy) * (gz * table[base + iz0] + fz * table[base + iz1])
    return out


def lane_marking(markings: dict[str, float], p: np.ndarray) -> np.ndarray:
    """Boolean: the road point lies on paint (dashed centre line, solid lines between lanes and parking)."""
    lw = markings["lane_width_m"]
    ay = np.abs(p[:, 1])
    centre = (ay < 0.075) & (np.mod(p[:, 0], 9.0) < 3.0)
    edge = np.abs(ay - lw) < 0.075
    return centre | edge


def surface_reflectivity(scene, mat: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Multiplicative LiDAR reflectivity factor at hit points (lane paint x4, mild grain elsewhere)."""
    factor = 0.85 + 0.3 * value_noise(p, 0.7, seed=scene.seed + 11)
    road = mat == _M["asphalt"]
    if road.any():
        factor[road] = np.where(lane_marking(scene.markings, p[road]), 4.0, factor[road])
    return factor


def _window_grid(surf: np.ndarray, p: np.ndarray, normal: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Facade window mask and a per-window random value in [0, 1) (for glass shade and night lighting)."""
    u = np.where(np.abs(normal[:, 1]) > np.abs(normal[:, 0]), p[:, 0], p[:, 1])
    fu, fv = np.mod(u, 3.0) / 3.0, np.mod(p[:, 2], 3.2) / 3.2
    win = (fu > 0.25) & (fu < 0.75) & (fv > 0.3) & (fv < 0.8) & (p[:, 2] > 1.0) & (np.abs(normal[:, 2]) < 0.5)
    cell = _hash3(np.floor(u / 3.0).astype(np.int64), np.floor(p[:, 2] / 3.2).astype(np.int64),
                  surf.astype(np.int64), seed + 4)
    return win, cell


def window_lit(scene, surf: np.ndarray, mat: np.ndarray, p: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Boolean (N,): the hit lies on a facade window that is lit at night."""
    out = np.zeros(len(p), bool)
    sel = mat == _M["facade"]
    if sel.any():
        win, cell = _window_grid(surf[sel], p[sel], normal[sel], scene.seed)
        out[sel] = win & (cell > 0.6)
    return out


def albedo(scene, surf: np.ndarray, mat: np.ndarray, p: np.ndarray, normal: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (N, 3) float32 at hit points, and ``lit`` (N,): the facade windows that glow at night."""
    seed = scene.seed
    base = scene.surface_rgb[surf].copy()
    lit = np.zeros(len(p), bool)
    fine = value_noise(p, 0.35, seed + 1)
    coarse = value_noise(p, 3.0, seed + 2)
    grain = (0.75 + 0.5 * fine) * (0.8 + 0.4 * coarse)

    sel = mat == _M["asphalt"]
    if sel.any():
        ps = p[sel]
        g = (0.7 + 0.6 * value_noise(ps, 0.08, seed + 3)) * (0.75 + 0.5 * coarse[sel])
        a = base[sel] * g[:, None]
        paint = lane_marking(scene.markings, ps)
        a[paint] = np.array([0.62, 0.62, 0.58], np.float32) * (0.85 + 0.15 * fine[sel][paint])[:, None]
        base[sel] = a
    sel = mat == _M["concrete"]
    if sel.any():
        ps = p[sel]
        joint = ((np.mod(ps[:, 0], 1.2) < 0.04) | (np.mod(ps[:, 1], 1.2) < 0.04)) & (normal[sel, 2] > 0.5)
        base[sel] *= (grain[sel] * np.where(joint, 0.55, 1.0))[:, None]
    sel = mat == _M["facade"]
    if sel.any():
        win, cell = _window_grid(surf[sel], p[sel], normal[sel], seed)
        a = base[sel] * (0.85 + 0.3 * fine[sel])[:, None] * (0.9 + 0.2 * coarse[sel])[:, None]
        a[win] = np.array([0.07, 0.09, 0.12], np.float32) * (0.7 + 0.6 * cell[win])[:, None]
        base[sel] = a
        lit[sel] = win & (cell > 0.6)
    for name, amount in (("foliage", 1.0), ("grass", 0.7), ("bark", 0.5)):
        sel = mat == _M[name]
        if sel.any():
            ps = p[sel]
            v = value_noise(ps, 0.12, seed + 5)
            tint = np.stack([1 + 0.3 * (coarse[sel] - 0.5), 1 + 0.2 * (v - 0.5), np.ones(len(ps), np.float32)], 1)
            base[sel] *= ((1 - amount) + amount * (0.5 + 1.0 * v))[:, None] * tint
    sel = np.isin(mat, (_M["metal"], _M["paint"], _M["engine"], _M["cloth"], _M["bike"], _M["rubber"]))
    if sel.any():
        base[sel] *= (0.9 + 0.2 * fine[sel])[:, None]
    return np.clip(base, 0.0, 1.0).astype(np.float32), lit
