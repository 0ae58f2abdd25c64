"""Thermal camera shading: per-surface temperatures (material day/night temperatures, engine and body heat, solar
heating of lit surfaces, shadows, lit windows at night), emissivity mixing with the reflected sky, then the sensor:
optical blur, a fixed column pattern, temporal noise (NETD), 16-bit raw counts (kelvin x 100) and 8-bit AGC.
Radiometry is linearised in temperature, a simplification of Planck's law.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from glassbox.sim.materials import MAT_EMISSIVITY, MAT_TEMP_DAY_C, MAT_TEMP_NIGHT_C, MATERIAL_ID
from glassbox.sim.scene import Scene
from glassbox.sim.shading import SurfaceHits, gaussian_blur, sun_direction, sun_is_up, sun_visibility, surface_hits
from glassbox.sim.texture import window_lit

if TYPE_CHECKING:
    from glassbox.sim.camera import CameraConfig, Lighting


def shade_thermal(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, world_T_base: np.ndarray,
                  d_world: np.ndarray, hit: dict, t: float, lighting: Lighting, rng: np.random.Generator
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Raw counts (H, W) uint16 and the 8-bit AGC image of one thermal camera from its cast rays."""
    h, w = cfg.height, cfg.width
    amb = lighting.ambient_temp_c
    temp = np.empty(h * w, np.float32)
    ok = hit["tri"] >= 0
    sky_el = np.clip(d_world[~ok, 2], 0, 1)
    temp[~ok] = amb - 20.0 - 25.0 * sky_el
    hits = surface_hits(scene, world_T_cam, d_world, hit)
    tk = _surface_temperature_c(scene, hits, lighting, sun_direction(lighting, world_T_base), t, cfg, world_T_cam)
    eps = MAT_EMISSIVITY[hits.mat]
    dv, nrm = hits.direction, hits.normal
    refl_up = np.clip((dv - 2 * np.einsum("ij,ij->i", dv, nrm)[:, None] * nrm)[:, 2], 0, 1)
    t_env = amb * (1 - refl_up) + (amb - 35.0) * refl_up
    temp[hits.idx] = eps * tk + (1 - eps) * t_env
    img = gaussian_blur(temp.reshape(h, w), cfg.blur_sigma_px)
    fpn = np.random.default_rng(0xF9A).normal(0, 0.03, (1, w)).astype(np.float32)   # fixed column pattern
    img = img + fpn + rng.standard_normal((h, w), dtype=np.float32) * cfg.noise_std
    raw = np.clip(np.round((img + 273.15) * 100.0), 0, 65535).astype(np.uint16)
    return raw, thermal_agc(raw)


def _surface_temperature_c(scene: Scene, hits: SurfaceHits, lighting: Lighting, sun: np.ndarray, t: float,
                           cfg: CameraConfig, world_T_cam: np.ndarray) -> np.ndarray:
    """Kinetic temperature (K,) of every hit: the material's day/night blend shifted with the ambient (people
    keep theirs), the surface's own offset, solar heating of lit faces and lit windows at night."""
    mat = hits.mat
    day = lighting.daylight
    shift = lighting.ambient_temp_c - 20.0
    tk = (MAT_TEMP_NIGHT_C[mat] * (1 - day) + MAT_TEMP_DAY_C[mat] * day) + shift * np.isin(
        mat, (MATERIAL_ID["skin"], MATERIAL_ID["cloth"]), invert=True)
    tk = tk + scene.surface_temp_c[hits.surf]
    if sun_is_up(lighting, sun):
        ndl, vis = sun_visibility(scene, hits, sun, t, cfg, world_T_cam)
        tk = tk + (ndl * vis - 0.5) * 8.0 * day * min(lighting.sun_intensity / 2.6, 1.0)
    return tk + window_lit(scene, hits.surf, mat, hits.point, hits.normal) * 3.0 * (1 - day)


def thermal_agc(raw: np.ndarray, plateau: float = 0.004, linear_weight: float = 0.4,
                min_span: int = 800) -> np.ndarray:
    """8-bit automatic gain control of raw counts, in the style of thermal cores' plateau equalisation: a
    histogram equalisation whose bins are clipped at ``plateau`` x (pixel count), blended with a linear
    1st-99th percentile stretch (weight ``linear_weight``; its span is at least ``min_span`` counts)."""
    flat = raw.ravel()
    lo = int(flat.min())
    hist = np.bincount(flat - lo).astype(np.float64)
    np.minimum(hist, plateau * flat.size, out=hist)
    cdf = np.cumsum(hist)
    eq = (cdf - cdf[0]) / max(cdf[-1] - cdf[0], 1.0)
    p_lo, p_hi = np.percentile(flat, [1.0, 99.0])
    if p_hi - p_lo < min_span:
        mid = (p_hi + p_lo) / 2
        p_lo, p_hi = mid - min_span / 2, mid + min_span / 2
    levels = np.arange(len(hist), dtype=np.float64) + lo
    lin = np.clip((levels - p_lo) / (p_hi - p_lo), 0, 1)
    lut = np.clip(((1 - linear_weight) * eq + linear_weight * lin) * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return lut[flat - lo].reshape(raw.shape)

