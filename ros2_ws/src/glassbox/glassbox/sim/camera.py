"""Pinhole RGB and thermal cameras rendered by ray casting, with exact masks, 2D boxes and calibration.

Both cameras are pinholes mounted on the ego base (optical frames: x right, y down, z forward). By default they
share one optical centre (a beam-splitter rig), so the thermal-to-RGB homography ``K_rgb R K_th^-1`` is exact
for every depth; with a baseline the homography of the fronto-parallel plane at ``homography_depth_m`` is
given instead (the usual approximation of FLIR-ADAS-style rigs) and the full extrinsics are returned as well.

RGB: albedo from procedural textures, sun light with ray-cast shadows, sky ambient, specular highlights and sky
reflections on paint and glass, and at night head lights, street lights, lit windows and lamps; then exposure,
a soft shoulder tone curve, sRGB-like gamma, shot and read noise, vignetting and 8-bit quantisation. Glare adds
a saturated sun with bloom, veiling glare, a streak and lens-flare ghosts.

Thermal: per-surface temperatures (material day/night temperatures, engine and body heat, solar heating of lit
surfaces, shadows), emissivity mixing with the reflected sky, optical blur, temporal noise (NETD) and a fixed
column pattern; 16-bit raw in the FLIR "TLinear" convention (counts = kelvin x 100) and 8-bit by automatic gain
(1st to 99th percentile). Radiometry is linearised in temperature, a simplification of Planck's law.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import lru_cache

import cv2
import numpy as np
from scipy import ndimage

from glassbox.sim.materials import (MAT_EMISSIVITY, MAT_SPECULAR, MAT_TEMP_DAY_C, MAT_TEMP_NIGHT_C,
                                    MATERIAL_ID)
from glassbox.sim.scene import Boxes3D, Scene, SceneError, _open3d, rotate, rpy_matrix
from glassbox.sim.texture import albedo as texture_albedo
from glassbox.sim.texture import window_lit

# base (x fwd, y left, z up) <- optical (x right, y down, z fwd)
BASE_R_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


class CameraError(ValueError):
    """A camera or lighting configuration is invalid."""


@dataclass(frozen=True)
class CameraConfig:
    """A pinhole camera on the ego base. ``noise_std``: read noise (RGB, fraction of full scale) or NETD
    (thermal, kelvin); ``blur_sigma_px``: Gaussian optical blur."""

    width: int = 640
    height: int = 512
    hfov_deg: float = 70.0
    mount_xyz: tuple[float, float, float] = (0.27, 0.0, 1.65)
    mount_rpy_deg: tuple[float, float, float] = (0.0, 0.0, 0.0)
    frame_id: str = "camera_rgb"
    noise_std: float = 0.004
    blur_sigma_px: float = 0.0
    min_box_pixels: int = 16

    def __post_init__(self) -> None:
        if self.width < 8 or self.height < 8 or not 1.0 < self.hfov_deg < 170.0:
            raise CameraError(f"CameraConfig: invalid size {self.width}x{self.height} or hfov_deg={self.hfov_deg}")

    def intrinsics(self) -> np.ndarray:
        """3x3 K (square pixels, principal point at the image centre)."""
        f = (self.width / 2) / np.tan(np.deg2rad(self.hfov_deg) / 2)
        return np.array([[f, 0, self.width / 2], [0, f, self.height / 2], [0, 0, 1.0]])

    def base_T_cam(self) -> np.ndarray:
        """4x4 transform from the optical frame to the ego base frame."""
        t = np.eye(4)
        t[:3, :3] = rpy_matrix(*np.deg2rad(self.mount_rpy_deg)) @ BASE_R_OPTICAL
        t[:3, 3] = self.mount_xyz
        return t


def rgb_camera(**overrides) -> CameraConfig:
    """The default RGB camera (640x512, 70 deg)."""
    return CameraConfig(**overrides)


def thermal_camera(**overrides) -> CameraConfig:
    """The default thermal camera (640x512, 50 deg, same optical centre as the RGB camera, NETD 50 mK)."""
    kw = {"hfov_deg": 50.0, "frame_id": "camera_thermal", "noise_std": 0.05, "blur_sigma_px": 0.8}
    return CameraConfig(**{**kw, **overrides})


@dataclass(frozen=True)
class Lighting:
    """Illumination and exposure. Angles in degrees; the sun azimuth is from +x, counter-clockwise, in the world
    frame, or relative to the ego heading when ``sun_relative_to_ego``. ``daylight`` in [0, 1] drives the
    surface temperatures of the thermal camera."""

    name: str = "day"
    sun_azimuth_deg: float = 140.0
    sun_elevation_deg: float = 45.0
    sun_relative_to_ego: bool = False
    sun_rgb: tuple[float, float, float] = (1.0, 0.96, 0.88)
    sun_intensity: float = 2.6
    sky_zenith_rgb: tuple[float, float, float] = (0.25, 0.45, 0.85)
    sky_horizon_rgb: tuple[float, float, float] = (0.7, 0.8, 0.92)
    sky_ambient: float = 0.9
    exposure: float = 1.0
    glare: bool = False
    headlights: bool = False
    street_lights: bool = False
    shot_noise: float = 0.002
    read_noise: float = 0.004
    daylight: float = 1.0
    ambient_temp_c: float = 20.0


LIGHTINGS: tuple[str, ...] = ("day", "glare", "dusk", "night")


def lighting_preset(name: str, **overrides) -> Lighting:
    """``day`` (high sun), ``glare`` (low sun straight ahead: saturated region, flare), ``dusk`` (low warm light,
    darker, noisier) and ``night`` (head lights, street lights, lit windows; low light and strong sensor noise)."""
    presets = {
        "day": {},
        "glare": {"sun_azimuth_deg": 4.0, "sun_elevation_deg": 6.0, "sun_relative_to_ego": True, "glare": True,
                  "sun_intensity": 3.0, "sun_rgb": (1.0, 0.93, 0.8), "exposure": 0.8},
        "dusk": {"sun_azimuth_deg": 200.0, "sun_elevation_deg": 3.0, "sun_rgb": (1.0, 0.55, 0.3),
                 "sun_intensity": 1.2, "sky_zenith_rgb": (0.18, 0.2, 0.4), "sky_horizon_rgb": (0.9, 0.5, 0.3),
                 "sky_ambient": 0.35, "exposure": 1.3, "street_lights": True, "headlights": True,
                 "shot_noise": 0.006, "read_noise": 0.01, "daylight": 0.45, "ambient_temp_c": 16.0},
        "night": {"sun_elevation_deg": -20.0, "sun_intensity": 0.0, "sky_zenith_rgb": (0.01, 0.012, 0.03),
                  "sky_horizon_rgb": (0.04, 0.04, 0.06), "sky_ambient": 0.03, "exposure": 2.2,
                  "headlights": True, "street_lights": True, "shot_noise": 0.02, "read_noise": 0.025,
                  "daylight": 0.0, "ambient_temp_c": 10.0},
    }
    if name not in presets:
        raise CameraError(f"unknown lighting '{name}' (known: {', '.join(presets)})")
    return Lighting(name=name, **{**presets[name], **overrides})


@dataclass(frozen=True)
class CameraFrame:
    """One RGB + thermal pair with labels. Boxes are pixel xyxy float32 (x2, y2 = right/bottom pixel edges).
    ``boxes3d``: the objects of ``boxes2d`` (same order) in the ego base frame; ``box_occlusion``: fraction of the
    object hidden by static scenery; ``box_truncation``: fraction of its projected 3D box outside the image.
    ``homography_thermal_to_rgb`` maps thermal pixels to RGB pixels (homogeneous, x right, y down)."""

    rgb: np.ndarray
    thermal16: np.ndarray | None
    thermal8: np.ndarray | None
    semantic: np.ndarray
    instance: np.ndarray
    depth: np.ndarray
    boxes2d: np.ndarray
    box_classes: np.ndarray
    box_ids: np.ndarray
    box_occlusion: np.ndarray
    box_truncation: np.ndarray
    boxes3d: Boxes3D
    thermal_semantic: np.ndarray | None
    thermal_instance: np.ndarray | None
    thermal_boxes2d: np.ndarray
    thermal_box_classes: np.ndarray
    thermal_box_ids: np.ndarray
    K_rgb: np.ndarray
    K_thermal: np.ndarray | None
    base_T_rgb: np.ndarray
    base_T_thermal: np.ndarray | None
    homography_thermal_to_rgb: np.ndarray | None
    world_T_base: np.ndarray
    lighting: str = "day"
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------------------------
@lru_cache(maxsize=8)
def _pixel_dirs(width: int, height: int, hfov_deg: float) -> np.ndarray:
    """(H*W, 3) unit ray directions in the optical frame through pixel centres."""
    k = CameraConfig(width=width, height=height, hfov_deg=hfov_deg).intrinsics()
    u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
    d = np.stack([(u - k[0, 2]) / k[0, 0], (v - k[1, 2]) / k[1, 1], np.ones_like(u)], -1).reshape(-1, 3)
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    d.setflags(write=False)
    return d


def _sun_direction(lighting: Lighting, world_T_base: np.ndarray) -> np.ndarray:
    az = np.deg2rad(lighting.sun_azimuth_deg)
    if lighting.sun_relative_to_ego:
        az += np.arctan2(world_T_base[1, 0], world_T_base[0, 0])
    el = np.deg2rad(lighting.sun_elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def _sky(d: np.ndarray, lighting: Lighting, sun: np.ndarray) -> np.ndarray:
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


def _labels(scene: Scene, hit: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    tri = hit["tri"]
    ok = tri >= 0
    sem = np.zeros(n, np.uint8)
    inst = np.zeros(n, np.int32)
    sem[ok] = scene.tri_semantic[tri[ok]]
    inst[ok] = scene.tri_instance[tri[ok]]
    return sem, inst


def _boxes_from_mask(instance: np.ndarray, min_pixels: int, inst_cls: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tight xyxy boxes of every instance with at least ``min_pixels`` pixels; classes, ids, pixel counts."""
    counts = np.bincount(instance.ravel(), minlength=len(inst_cls))
    slices = ndimage.find_objects(instance)
    ids = np.nonzero(counts[1:] >= max(min_pixels, 1))[0] + 1
    ids = ids[ids <= len(slices)]
    boxes = np.array([[slices[i - 1][1].start, slices[i - 1][0].start, slices[i - 1][1].stop, slices[i - 1][0].stop]
                      for i in ids], np.float32).reshape(-1, 4)
    return boxes, inst_cls[ids].astype(np.int64), ids.astype(np.int32), counts[ids]


def _gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)


def _glare_overlay(h: int, w: int, k: np.ndarray, cam_T_world_r: np.ndarray, sun: np.ndarray,
                   lighting: Lighting) -> np.ndarray:
    """Additive bloom, veiling glare, streak and flare ghosts (H, W, 3) for a sun in or near the view."""
    s_cam = cam_T_world_r @ sun
    if s_cam[2] <= 0.05:
        return np.zeros((h, w, 3), np.float32)
    us, vs = k[0, 0] * s_cam[0] / s_cam[2] + k[0, 2], k[1, 1] * s_cam[1] / s_cam[2] + k[1, 2]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.hypot(xx - us, yy - vs)
    tint = np.asarray(lighting.sun_rgb, np.float32)
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
    return out


def _project(k: np.ndarray, p_cam: np.ndarray) -> np.ndarray:
    z = np.maximum(p_cam[..., 2], 1e-3)
    return np.stack([k[0, 0] * p_cam[..., 0] / z + k[0, 2], k[1, 1] * p_cam[..., 1] / z + k[1, 2]], -1)


def _truncation(boxes: Boxes3D, world_T_cam: np.ndarray, k: np.ndarray, w: int, h: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """Fraction of each box's projected rectangle outside the image (1 when a corner is behind the camera), and
    the rectangles clipped to the image (int x0, y0, x1, y1; the whole image when a corner is behind)."""
    if len(boxes) == 0:
        return np.zeros(0, np.float32), np.zeros((0, 4), np.int64)
    corners = boxes.corners()                                     # world (M, 8, 3)
    cam_T_world = np.linalg.inv(world_T_cam)
    pc = corners @ cam_T_world[:3, :3].T + cam_T_world[:3, 3]
    uv = _project(k, pc)
    lo, hi = uv.min(1), uv.max(1)
    area = np.prod(np.maximum(hi - lo, 1e-6), 1)
    inside = np.prod(np.maximum(np.minimum(hi, [w, h]) - np.maximum(lo, 0), 0), 1)
    trunc = 1.0 - inside / area
    front = (pc[..., 2] > 0.05).all(1)
    rects = np.concatenate([np.floor(np.clip(lo, 0, [w, h])), np.ceil(np.clip(hi, 0, [w, h]))], 1).astype(np.int64)
    rects[~front] = (0, 0, w, h)
    return np.where(front, trunc, 1.0).astype(np.float32), rects


# --------------------------------------------------------------------------------------------------------------
def _shade_rgb(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, world_T_base: np.ndarray,
               d_world: np.ndarray, hit: dict, t: float, lighting: Lighting, rng: np.random.Generator) -> np.ndarray:
    h, w = cfg.height, cfg.width
    n = h * w
    sun = _sun_direction(lighting, world_T_base)
    colour = np.empty((n, 3), np.float32)
    tri = hit["tri"]
    ok = tri >= 0
    colour[~ok] = _sky(d_world[~ok], lighting, sun)
    idx = np.nonzero(ok)[0]
    tri_h = tri[idx]
    mat = scene.tri_material[tri_h]
    surf = scene.tri_surface[tri_h]
    nrm = hit["normal"][idx].astype(np.float32)
    dv = d_world[idx].astype(np.float32)
    p = world_T_cam[:3, 3].astype(np.float32) + dv * hit["t_hit"][idx][:, None]
    alb, _, lit = texture_albedo(scene, surf, mat, p, nrm)

    light = np.zeros((len(idx), 3), np.float32)
    spec_w = MAT_SPECULAR[mat]
    if lighting.sun_intensity > 0 and sun[2] > 0:
        ndl = np.clip(np.einsum("ij,j->i", nrm, sun.astype(np.float32)), 0, None)
        facing = np.nonzero(ndl > 0)[0]
        vis = np.zeros(len(idx), np.float32)
        if len(facing):
            rays = np.empty((len(facing), 6), np.float32)
            rays[:, :3] = p[facing] + nrm[facing] * 0.03
            rays[:, 3:] = sun
            occ = scene.raycaster(t).test_occlusions(_o3d_tensor(rays)).numpy()
            vis[facing] = ~occ
        light += (ndl * vis)[:, None] * np.asarray(lighting.sun_rgb, np.float32) * lighting.sun_intensity
    else:
        vis = np.zeros(len(idx), np.float32)
    sky_avg = (np.asarray(lighting.sky_zenith_rgb, np.float32) + np.asarray(lighting.sky_horizon_rgb, np.float32)) / 2
    light += lighting.sky_ambient * (0.55 + 0.45 * nrm[:, 2:3]) * sky_avg
    if lighting.headlights:
        base_R = world_T_base[:3, :3]
        fwd = base_R @ np.array([np.cos(np.deg2rad(-4)), 0, np.sin(np.deg2rad(-4))])
        for side in (-0.7, 0.7):
            pos = (world_T_base @ np.array([2.0, side, 0.7, 1.0]))[:3]
            light += _spot(p, nrm, pos, fwd, 40.0, 28.0, 10.0) * np.array([1.0, 0.97, 0.9], np.float32)
    if lighting.street_lights and len(scene.lights):
        cam = world_T_cam[:3, 3]
        dist = np.linalg.norm(scene.lights - cam, axis=1)
        for pos in scene.lights[np.argsort(dist)[:8]]:
            light += _spot(p, nrm, pos, np.array([0, 0, -1.0]), 12.0, 75.0, 55.0) * np.array([1.0, 0.8, 0.55],
                                                                                          np.float32)
    rad = alb * light
    shiny = np.nonzero(spec_w > 0)[0]
    if len(shiny):
        ds, ns = dv[shiny], nrm[shiny]
        if lighting.sun_intensity > 0 and sun[2] > 0:                # Blinn-Phong highlight of the sun
            half = sun.astype(np.float32) - ds
            half /= np.linalg.norm(half, axis=1, keepdims=True)
            n_h = np.clip(np.einsum("ij,ij->i", ns, half), 0, 1)
            rad[shiny] += (spec_w[shiny] * n_h ** 80 * vis[shiny] * lighting.sun_intensity * 3)[:, None]
        cos_v = np.einsum("ij,ij->i", ds, ns)
        refl = ds - 2 * cos_v[:, None] * ns
        env = _sky(refl, lighting, sun) * np.clip(refl[:, 2:3] + 0.2, 0, 1)
        rad[shiny] += (spec_w[shiny] * (0.08 + 0.6 * (1 + cos_v) ** 5))[:, None] * env
    if lighting.daylight < 0.6:
        night = 1.0 - lighting.daylight / 0.6
        emissive = np.zeros(len(idx), np.float32)
        lamp = mat == MATERIAL_ID["lamp"]
        emissive[lamp] = 4.0
        emissive[lit] = 0.5
        rad += (night * emissive)[:, None] * np.where(lit[:, None], np.array([1.0, 0.8, 0.5], np.float32),
                                                      scene.surface_rgb[surf])
    colour[idx] = rad
    img = colour.reshape(h, w, 3) * lighting.exposure
    if lighting.glare:
        img = img + _glare_overlay(h, w, cfg.intrinsics(), world_T_cam[:3, :3].T, sun, lighting)
    img *= _vignette(h, w)[..., None]
    img = 1.0 - np.exp(-1.8 * np.clip(img, 0, None))                # soft shoulder: saturates smoothly
    read = max(lighting.read_noise, cfg.noise_std)
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.sqrt(lighting.shot_noise * img + read ** 2)
    img = _gaussian_blur(np.clip(img, 0, 1).astype(np.float32), cfg.blur_sigma_px)
    return _GAMMA_LUT[(img * (_GAMMA_LEVELS - 1) + 0.5).astype(np.int32)]


_GAMMA_LEVELS = 4096
_GAMMA_LUT = (np.power(np.arange(_GAMMA_LEVELS) / (_GAMMA_LEVELS - 1), 1 / 2.2) * 255.0 + 0.5).astype(np.uint8)


@lru_cache(maxsize=8)
def _vignette(h: int, w: int) -> np.ndarray:
    """Radial fall-off to 75 % in the corners."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r2 = ((xx - w / 2) ** 2 + (yy - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
    out = (1.0 - 0.25 * r2).astype(np.float32)
    out.setflags(write=False)
    return out


def _spot(p: np.ndarray, nrm: np.ndarray, pos: np.ndarray, axis: np.ndarray, power: float, outer_deg: float,
          inner_deg: float) -> np.ndarray:
    """Irradiance (N, 1) from a spot light at ``pos`` pointing along ``axis`` (no shadows)."""
    v = p - pos.astype(np.float32)
    d2 = np.einsum("ij,ij->i", v, v) + 0.5
    vn = v / np.sqrt(d2)[:, None]
    cos_axis = np.einsum("ij,j->i", vn, axis.astype(np.float32))
    lo, hi = np.cos(np.deg2rad(outer_deg)), np.cos(np.deg2rad(inner_deg))
    cone = np.clip((cos_axis - lo) / (hi - lo), 0, 1)
    lam = np.clip(-np.einsum("ij,ij->i", nrm, vn), 0, None)
    return (power * cone * lam / d2)[:, None].astype(np.float32)


def _o3d_tensor(a: np.ndarray):
    return _open3d().core.Tensor(np.ascontiguousarray(a, dtype=np.float32))


def _shade_thermal(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, world_T_base: np.ndarray,
                   d_world: np.ndarray, hit: dict, t: float, lighting: Lighting, rng: np.random.Generator
                   ) -> tuple[np.ndarray, np.ndarray]:
    h, w = cfg.height, cfg.width
    n = h * w
    sun = _sun_direction(lighting, world_T_base)
    amb = lighting.ambient_temp_c
    temp = np.empty(n, np.float32)
    tri = hit["tri"]
    ok = tri >= 0
    sky_el = np.clip(d_world[~ok, 2], 0, 1)
    temp[~ok] = amb - 20.0 - 25.0 * sky_el
    idx = np.nonzero(ok)[0]
    tri_h = tri[idx]
    mat = scene.tri_material[tri_h]
    surf = scene.tri_surface[tri_h]
    nrm = hit["normal"][idx].astype(np.float32)
    dv = d_world[idx].astype(np.float32)
    p = world_T_cam[:3, 3].astype(np.float32) + dv * hit["t_hit"][idx][:, None]
    day = lighting.daylight
    shift = amb - 20.0
    tk = (MAT_TEMP_NIGHT_C[mat] * (1 - day) + MAT_TEMP_DAY_C[mat] * day) + shift * np.isin(
        mat, (MATERIAL_ID["skin"], MATERIAL_ID["cloth"]), invert=True)
    tk = tk + scene.surface_temp_c[surf]
    if lighting.sun_intensity > 0 and sun[2] > 0:
        ndl = np.clip(np.einsum("ij,j->i", nrm, sun.astype(np.float32)), 0, None)
        facing = np.nonzero(ndl > 0)[0]
        vis = np.zeros(len(idx), np.float32)
        if len(facing):
            rays = np.empty((len(facing), 6), np.float32)
            rays[:, :3] = p[facing] + nrm[facing] * 0.03
            rays[:, 3:] = sun
            vis[facing] = ~scene.raycaster(t).test_occlusions(_o3d_tensor(rays)).numpy()
        tk = tk + (ndl * vis - 0.5) * 8.0 * day * min(lighting.sun_intensity / 2.6, 1.0)
    tk = tk + window_lit(scene, surf, mat, p, nrm) * 3.0 * (1 - day)
    eps = MAT_EMISSIVITY[mat]
    refl_up = np.clip((dv - 2 * np.einsum("ij,ij->i", dv, nrm)[:, None] * nrm)[:, 2], 0, 1)
    t_env = amb * (1 - refl_up) + (amb - 35.0) * refl_up
    temp[idx] = eps * tk + (1 - eps) * t_env
    img = _gaussian_blur(temp.reshape(h, w), cfg.blur_sigma_px)
    fpn = np.random.default_rng(0xF9A).normal(0, 0.03, (1, w)).astype(np.float32)   # fixed column pattern
    img = img + fpn + rng.standard_normal((h, w), dtype=np.float32) * cfg.noise_std
    raw = np.clip(np.round((img + 273.15) * 100.0), 0, 65535).astype(np.uint16)
    return raw, thermal_agc(raw)


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


def homography_thermal_to_rgb(rgb_cfg: CameraConfig, thermal_cfg: CameraConfig,
                              depth_m: float = 20.0) -> np.ndarray:
    """3x3 H with rgb_px ~ H @ thermal_px: exact for co-centred cameras, else the homography induced by the
    fronto-parallel plane ``depth_m`` in front of the thermal camera."""
    rgb_T_th = np.linalg.inv(rgb_cfg.base_T_cam()) @ thermal_cfg.base_T_cam()
    r, tv = rgb_T_th[:3, :3], rgb_T_th[:3, 3]
    m = r + np.outer(tv, np.array([0.0, 0.0, 1.0])) / depth_m
    hmat = rgb_cfg.intrinsics() @ m @ np.linalg.inv(thermal_cfg.intrinsics())
    return hmat / hmat[2, 2]


def _render_labels(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, t: float
                   ) -> tuple[np.ndarray, dict, np.ndarray]:
    dirs = _pixel_dirs(cfg.width, cfg.height, cfg.hfov_deg)
    d_world = rotate(dirs, world_T_cam[:3, :3]).astype(np.float32)
    rays = np.empty((len(dirs), 6), np.float32)
    rays[:, :3] = world_T_cam[:3, 3]
    rays[:, 3:] = d_world
    return d_world, scene.cast(rays, t), rays


@dataclass(frozen=True)
class ThermalFrame:
    """A thermal image alone: raw counts (kelvin x 100), 8-bit AGC, masks and tight 2D boxes."""

    thermal16: np.ndarray
    thermal8: np.ndarray
    semantic: np.ndarray
    instance: np.ndarray
    boxes2d: np.ndarray
    box_classes: np.ndarray
    box_ids: np.ndarray
    K: np.ndarray
    base_T_cam: np.ndarray


def _instance_classes(scene: Scene) -> np.ndarray:
    inst_cls = np.full(max((o.instance for o in scene.objects), default=0) + 1, -1, np.int64)
    for o in scene.objects:
        inst_cls[o.instance] = o.cls
    return inst_cls


def render_thermal(scene: Scene, cfg: CameraConfig, ego_pose: np.ndarray, lighting: Lighting | str = "day",
                   seed: int = 0, t: float = 0.0) -> ThermalFrame:
    """Render the thermal camera alone (e.g. at its own time stamps); same output as in ``render_cameras``."""
    if isinstance(lighting, str):
        lighting = lighting_preset(lighting)
    world_T_base = np.asarray(ego_pose, np.float64)
    world_T_th = world_T_base @ cfg.base_T_cam()
    dth, hth, _ = _render_labels(scene, cfg, world_T_th, t)
    sem, inst = _labels(scene, hth, cfg.height * cfg.width)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E11]))
    raw, t8 = _shade_thermal(scene, cfg, world_T_th, world_T_base, dth, hth, t, lighting, rng)
    sem, inst = sem.reshape(cfg.height, cfg.width), inst.reshape(cfg.height, cfg.width)
    boxes, classes, ids, _ = _boxes_from_mask(inst, cfg.min_box_pixels, _instance_classes(scene))
    return ThermalFrame(raw, t8, sem, inst, boxes, classes, ids, cfg.intrinsics(), cfg.base_T_cam())


def render_cameras(scene: Scene, rgb_cfg: CameraConfig, thermal_cfg: CameraConfig | None,
                   ego_pose: np.ndarray, lighting: Lighting | str = "day", seed: int = 0,
                   t: float = 0.0, homography_depth_m: float = 20.0) -> CameraFrame:
    """Render the RGB (and, unless ``thermal_cfg`` is None, the thermal) camera on the ego base at ``ego_pose``
    (world_T_base) in the scene at time ``t``. ``seed`` drives the sensor noise only."""
    if isinstance(lighting, str):
        lighting = lighting_preset(lighting)
    world_T_base = np.asarray(ego_pose, np.float64)
    if world_T_base.shape != (4, 4):
        raise SceneError(f"render_cameras: ego_pose must be a 4x4 matrix, got shape {world_T_base.shape}")
    inst_cls = _instance_classes(scene)
    h, w = rgb_cfg.height, rgb_cfg.width

    world_T_rgb = world_T_base @ rgb_cfg.base_T_cam()
    d_world, hit, rays = _render_labels(scene, rgb_cfg, world_T_rgb, t)
    semantic, instance = _labels(scene, hit, h * w)
    dirs = _pixel_dirs(w, h, rgb_cfg.hfov_deg)
    depth = (hit["t_hit"] * dirs[:, 2]).astype(np.float32).reshape(h, w)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA11]))
    rgb = _shade_rgb(scene, rgb_cfg, world_T_rgb, world_T_base, d_world, hit, t, lighting, rng)
    semantic, instance = semantic.reshape(h, w), instance.reshape(h, w)
    boxes2d, classes, ids, counts = _boxes_from_mask(instance, rgb_cfg.min_box_pixels, inst_cls)
    # Occlusion by static scenery: compare with the same rays cast against the objects alone.
    world_boxes = scene.boxes_at(t)
    order = np.searchsorted(world_boxes.ids, ids) if len(world_boxes) else np.zeros(0, np.int64)
    sel_world = world_boxes.subset(order)
    truncation, rects = _truncation(sel_world, world_T_rgb, rgb_cfg.intrinsics(), w, h)
    # Occlusion by static scenery: the same rays cast against the objects alone, inside the objects' rectangles.
    region = np.zeros((h, w), bool)
    for x0, y0, x1, y1 in rects:
        region[y0:y1, x0:x1] = True
    sel = np.nonzero(region.ravel())[0]
    t_inst = np.zeros(len(sel), np.int32)
    if len(sel):
        things = scene.cast(rays[sel], t, things_only=True)
        okt = things["tri"] >= 0
        t_inst[okt] = scene.tri_instance[things["tri"][okt]]
    full = np.bincount(t_inst, minlength=len(inst_cls))[ids]
    occlusion = (1.0 - counts / np.maximum(full, 1)).clip(0, 1).astype(np.float32)
    boxes3d = sel_world.transform(np.linalg.inv(world_T_base))

    if thermal_cfg is not None:
        th = render_thermal(scene, thermal_cfg, world_T_base, lighting, seed, t)
        raw, t8, th_sem, th_inst = th.thermal16, th.thermal8, th.semantic, th.instance
        tb, tc, tid = th.boxes2d, th.box_classes, th.box_ids
        hom = homography_thermal_to_rgb(rgb_cfg, thermal_cfg, homography_depth_m)
        k_th, b_th = thermal_cfg.intrinsics(), thermal_cfg.base_T_cam()
    else:
        raw = t8 = th_sem = th_inst = hom = k_th = b_th = None
        tb, tc, tid = np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0, np.int32)
    return CameraFrame(rgb=rgb, thermal16=raw, thermal8=t8, semantic=semantic, instance=instance, depth=depth,
                       boxes2d=boxes2d, box_classes=classes, box_ids=ids, box_occlusion=occlusion,
                       box_truncation=truncation, boxes3d=boxes3d, thermal_semantic=th_sem,
                       thermal_instance=th_inst, thermal_boxes2d=tb, thermal_box_classes=tc, thermal_box_ids=tid,
                       K_rgb=rgb_cfg.intrinsics(), K_thermal=k_th, base_T_rgb=rgb_cfg.base_T_cam(),
                       base_T_thermal=b_th, homography_thermal_to_rgb=hom, world_T_base=world_T_base,
                       lighting=lighting.name)


def with_resolution(cfg: CameraConfig, width: int, height: int) -> CameraConfig:
    """The same camera at another resolution (same field of view)."""
    return replace(cfg, width=width, height=height)
