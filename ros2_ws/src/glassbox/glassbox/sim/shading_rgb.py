"""RGB camera shading: sky, sun light with ray-cast shadows, sky ambient, head and street lights, specular
highlights and sky reflections on shiny materials, night emission (lamps, lit windows), then the sensor: exposure,
glare, vignetting, a soft shoulder tone curve, shot and read noise, blur and sRGB-like 8-bit quantisation.
"""
from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from glassbox.sim.materials import MAT_SPECULAR, MATERIAL_ID
from glassbox.sim.scene import Scene
from glassbox.sim.shading import SurfaceHits, gaussian_blur, sun_direction, sun_is_up, sun_visibility, surface_hits
from glassbox.sim.texture import albedo as texture_albedo

if TYPE_CHECKING:
    from glassbox.sim.camera import CameraConfig, Lighting

_GAMMA_LEVELS = 4096
_GAMMA_LUT = (np.power(np.arange(_GAMMA_LEVELS) / (_GAMMA_LEVELS - 1), 1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


def sky_radiance(d: np.ndarray, lighting: Lighting, sun: np.ndarray) -> np.ndarray:
    """Sky radiance (N, 3) for world directions ``d``: horizon-to-zenith gradient plus the sun and its halo."""
    el = np.clip(d[:, 2], 0.0, 1.0)[:, None] ** 0.6
    sky = np.asarray(lighting.sky_horizon_rgb, np.float32) * (1 - el) + np.asarray(lighting.sky_zenith_rgb,
                                                                                    np.float32) * el
    sky = sky * np.where(d[:, 2:3] < 0, 0.6, 1.0)
    if lighting.sun_intensity > 0 and sun[2] > -0.05:
        cos_a = np.einsum("ij,j->i", d, sun.astype(np.float32))
        halo = np.exp((cos_a - 1.0) * 60.0) * 0.6 + np.exp((cos_a - 1.0) * 800.0) * 2.0
        disk = (cos_a > np.cos(np.deg2rad(0.6))) * 40.0
        sky = sky + (halo + disk)[:, None] * np.asarray(lighting.sun_rgb, np.float32) * lighting.sun_intensity / 3
    return sky.astype(np.float32)


def shade_rgb(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, world_T_base: np.ndarray,
              d_world: np.ndarray, hit: dict, t: float, lighting: Lighting, rng: np.random.Generator) -> np.ndarray:
    """The 8-bit RGB image (H, W, 3) of one camera from its cast rays (``hit`` from ``Scene.cast``)."""
    h, w = cfg.height, cfg.width
    sun = sun_direction(lighting, world_T_base)
    colour = np.empty((h * w, 3), np.float32)
    ok = hit["tri"] >= 0
    colour[~ok] = sky_radiance(d_world[~ok], lighting, sun)
    hits = surface_hits(scene, world_T_cam, d_world, hit)
    alb, lit = texture_albedo(scene, hits.surf, hits.mat, hits.point, hits.normal)
    light = np.zeros((len(hits.idx), 3), np.float32)
    if sun_is_up(lighting, sun):
        ndl, vis = sun_visibility(scene, hits, sun, t, cfg, world_T_cam)
        light += (ndl * vis)[:, None] * np.asarray(lighting.sun_rgb, np.float32) * lighting.sun_intensity
    else:
        vis = np.zeros(len(hits.idx), np.float32)
    _add_sky_and_lamps(light, scene, hits, lighting, world_T_cam, world_T_base)
    rad = alb * light
    _add_specular(rad, hits, lighting, sun, vis)
    _add_night_emission(rad, scene, hits, lighting, lit)
    colour[hits.idx] = rad
    return _sensor(colour.reshape(h, w, 3), cfg, lighting, world_T_cam, sun, rng)


def _add_sky_and_lamps(light: np.ndarray, scene: Scene, hits: SurfaceHits, lighting: Lighting,
                       world_T_cam: np.ndarray, world_T_base: np.ndarray) -> None:
    """Add the irradiance (K, 3) from the sky (ambient), the ego head lights and the nearest street lights
    (in place, in this order)."""
    p, nrm = hits.point, hits.normal
    sky_avg = (np.asarray(lighting.sky_zenith_rgb, np.float32) + np.asarray(lighting.sky_horizon_rgb, np.float32)) / 2
    light += lighting.sky_ambient * (0.55 + 0.45 * nrm[:, 2:3]) * sky_avg
    if not (lighting.headlights or lighting.street_lights and len(scene.lights)):
        return
    p_cols, n_cols = np.ascontiguousarray(p.T), np.ascontiguousarray(nrm.T)     # (3, K): faster per component
    if lighting.headlights:
        fwd = world_T_base[:3, :3] @ np.array([np.cos(np.deg2rad(-4)), 0, np.sin(np.deg2rad(-4))])
        for side in (-0.7, 0.7):
            pos = (world_T_base @ np.array([2.0, side, 0.7, 1.0]))[:3]
            light += _spot(p_cols, n_cols, pos, fwd, 40.0, 28.0, 10.0) * np.array([1.0, 0.97, 0.9], np.float32)
    if lighting.street_lights and len(scene.lights):
        dist = np.linalg.norm(scene.lights - world_T_cam[:3, 3], axis=1)
        for pos in scene.lights[np.argsort(dist)[:8]]:
            light += _spot(p_cols, n_cols, pos, np.array([0, 0, -1.0]), 12.0, 75.0, 55.0) * np.array(
                [1.0, 0.8, 0.55], np.float32)


def _add_specular(rad: np.ndarray, hits: SurfaceHits, lighting: Lighting, sun: np.ndarray, vis: np.ndarray) -> None:
    """Blinn-Phong highlight of the sun and Fresnel-weighted sky reflection on shiny materials (in place)."""
    spec_w = MAT_SPECULAR[hits.mat]
    shiny = np.nonzero(spec_w > 0)[0]
    if not len(shiny):
        return
    ds, ns = hits.direction[shiny], hits.normal[shiny]
    if sun_is_up(lighting, sun):
        half = sun.astype(np.float32) - ds
        half /= np.linalg.norm(half, axis=1, keepdims=True)
        n_h = np.clip(np.einsum("ij,ij->i", ns, half), 0, 1)
        rad[shiny] += (spec_w[shiny] * n_h ** 80 * vis[shiny] * lighting.sun_intensity * 3)[:, None]
    cos_v = np.einsum("ij,ij->i", ds, ns)
    refl = ds - 2 * cos_v[:, None] * ns
    env = sky_radiance(refl, lighting, sun) * np.clip(refl[:, 2:3] + 0.2, 0, 1)
    rad[shiny] += (spec_w[shiny] * (0.08 + 0.6 * (1 + cos_v) ** 5))[:, None] * env


def _add_night_emission(rad: np.ndarray, scene: Scene, hits: SurfaceHits, lighting: Lighting,
                        lit: np.ndarray) -> None:
    """Lamps and lit windows glow when the daylight is low (in place)."""
    if lighting.daylight >= 0.6:
        return
    night = 1.0 - lighting.daylight / 0.6
    emissive = np.zeros(len(hits.idx), np.float32)
    emissive[hits.mat == MATERIAL_ID["lamp"]] = 4.0
    emissive[lit] = 0.5
    rad += (night * emissive)[:, None] * np.where(lit[:, None], np.array([1.0, 0.8, 0.5], np.float32),
                                                  scene.surface_rgb[hits.surf])


def _sensor(img: np.ndarray, cfg: CameraConfig, lighting: Lighting, world_T_cam: np.ndarray, sun: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Radiance (H, W, 3) to 8-bit pixels: exposure, glare, vignetting, tone curve, noise, blur, gamma."""
    h, w = img.shape[:2]
    img = img * lighting.exposure
    if lighting.glare:
        img = img + _glare_overlay(h, w, cfg.intrinsics(), world_T_cam[:3, :3].T, sun, lighting)
    img *= _vignette(h, w)[..., None]
    img = 1.0 - np.exp(-1.8 * np.clip(img, 0, None))                # soft shoulder: saturates smoothly
    read = max(lighting.read_noise, cfg.noise_std)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.sqrt(lighting.shot_noise * img + read ** 2)
    img = gaussian_blur(np.clip(img, 0, 1).astype(np.float32), cfg.blur_sigma_px)
    return _GAMMA_LUT[(img * (_GAMMA_LEVELS - 1) + 0.5).astype(np.int32)]


def _glare_overlay(h: int, w: int, k: np.ndarray, cam_T_world_r: np.ndarray, sun: np.ndarray,
                   lighting: Lighting) -> np.ndarray:
    """Additive bloom, veiling glare, streak and flare ghosts (H, W, 3) for a sun in or near the view."""
    s_cam = cam_T_world_r @ sun
    if s_cam[2] <= 0.05:
        return np.zeros((h, w, 3), np.float32)
    us, vs = k[0, 0] * s_cam[0] / s_cam[2] + k[0, 2], k[1, 1] * s_cam[1] / s_cam[2] + k[1, 2]
    return _glare_image(h, w, float(us), float(vs), lighting.sun_rgb)


@lru_cache(maxsize=4)
def _glare_image(h: int, w: int, us: float, vs: float, sun_rgb: tuple[float, float, float]) -> np.ndarray:
    """The glare overlay of a sun imaged at pixel (us, vs); cached, as it is the same in every frame of a drive
    along a straight street."""
    us, vs = np.float64(us), np.float64(vs)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - us, yy - vs)
    tint = np.asarray(sun_rgb, np.float32)
    diag = np.hypot(h, w)
    bloom = 6.0 * np.exp(-r / (0.02 * diag)) + 0.8 * np.exp(-r / (0.12 * diag)) + 0.12
    streak = 0.5 * np.exp(-np.abs(yy - vs) / 2.0) * np.exp(-np.abs(xx - us) / (0.4 * w))
    out = (bloom + streak)[..., None] * tint
    cx, cy = w / 2, h / 2
    ghosts = ((-0.35, 0.05 * diag, (0.2, 0.6, 0.3)), (-0.7, 0.03 * diag, (0.6, 0.3, 0.8)),
              (0.4, 0.02 * diag, (0.9, 0.6, 0.2)), (-1.2, 0.07 * diag, (0.3, 0.4, 0.9)))
    for f, radius, col in ghosts:
        gx, gy = cx + (us - cx) * f, cy + (vs - cy) * f
        rr = np.hypot(xx - gx, yy - gy)
        disk = np.clip((radius - rr) / (0.15 * radius) + 0.5, 0, 1) * 0.25
        out += disk[..., None] * np.asarray(col, np.float32)
    out.setflags(write=False)
    return out




@lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    """Radial fall-off to 75 % in the corners."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    out = (1.0 - 0.25 * r2).astype(np.float32)
    out.setflags(write=False)
    return out


def _spot(p_cols: np.ndarray, n_cols: np.ndarray, pos: np.ndarray, axis: np.ndarray, power: float, outer_deg: float,
          inner_deg: float) -> np.ndarray:
    """Irradiance (N, 1) from a spot light at ``pos`` pointing along ``axis`` (no shadows) at the points and unit
    normals given as (3, N) component rows."""
    pos, axis = pos.astype(np.float32), axis.astype(np.float32)
    vx, vy, vz = p_cols[0] - pos[0], p_cols[1] - pos[1], p_cols[2] - pos[2]
    d2 = vx * vx
    d2 += vy * vy
    d2 += vz * vz
    d2 += 0.5                                     # softened at the lamp
    s = np.sqrt(d2)
    vx /= s
    vy /= s
    vz /= s
    cos_axis = vx * axis[0]
    cos_axis += vy * axis[1]
    cos_axis += vz * axis[2]
    lo, hi = np.cos(np.deg2rad(outer_deg)), np.cos(np.deg2rad(inner_deg))
    cone = np.clip((cos_axis - lo) / (hi - lo), 0, 1)
    lam = n_cols[0] * vx
    lam += n_cols[1] * vy
    lam += n_cols[2] * vz
    lam = np.clip(-lam, 0, None)
    return (power * cone * lam / d2)[:, None].astype(np.float32)
