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

from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from scipy import ndimage

from glassbox.sim.geometry import Boxes3D, SceneError, rotate, rpy_matrix
from glassbox.sim.scene import Scene, make_rays
from glassbox.sim.shading import moving_pixels
from glassbox.sim.shading_rgb import shade_rgb
from glassbox.sim.shading_thermal import shade_thermal, thermal_agc

__all__ = ["BASE_R_OPTICAL", "LIGHTINGS", "CameraConfig", "CameraError", "CameraFrame", "Lighting", "ThermalFrame",
           "homography_thermal_to_rgb", "lighting_preset", "render_cameras", "render_thermal", "rgb_camera",
           "thermal_agc", "thermal_camera"]

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


@lru_cache(maxsize=8)
def _world_dirs(width: int, height: int, hfov_deg: float, world_R_cam: bytes) -> np.ndarray:
    """(H*W, 3) float32 world directions of the pixel rays for the camera orientation ``world_R_cam`` (3x3
    float64, as bytes). Cached: along a straight street the orientation is the same in every frame."""
    r = np.frombuffer(world_R_cam, np.float64).reshape(3, 3)
    d = rotate(_pixel_dirs(width, height, hfov_deg), r).astype(np.float32)
    d.setflags(write=False)
    return d


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
def homography_thermal_to_rgb(rgb_cfg: CameraConfig, thermal_cfg: CameraConfig,
                              depth_m: float = 20.0) -> np.ndarray:
    """3x3 H with rgb_px ~ H @ thermal_px: exact for co-centred cameras, else the homography induced by the
    fronto-parallel plane ``depth_m`` in front of the thermal camera."""
    rgb_T_th = np.linalg.inv(rgb_cfg.base_T_cam()) @ thermal_cfg.base_T_cam()
    r, tv = rgb_T_th[:3, :3], rgb_T_th[:3, 3]
    m = r + np.outer(tv, np.array([0.0, 0.0, 1.0])) / depth_m
    hmat = rgb_cfg.intrinsics() @ m @ np.linalg.inv(thermal_cfg.intrinsics())
    return hmat / hmat[2, 2]


@dataclass(frozen=True)
class _CameraRays:
    """One camera's rays through its pixel centres, cast into the scene, with the per-pixel labels."""

    world_T_cam: np.ndarray
    d_world: np.ndarray          # (H*W, 3) float32 unit directions
    rays: np.ndarray             # (H*W, 6) float32
    hit: dict                    # Scene.cast output
    moving: np.ndarray           # (H*W,) bool: the pixels that may see a moving object
    semantic: np.ndarray         # (H, W) uint8
    instance: np.ndarray         # (H, W) int32


def _cast_camera(scene: Scene, cfg: CameraConfig, world_T_base: np.ndarray, t: float) -> _CameraRays:
    world_T_cam = world_T_base @ cfg.base_T_cam()
    d_world = _world_dirs(cfg.width, cfg.height, cfg.hfov_deg, np.ascontiguousarray(world_T_cam[:3, :3]).tobytes())
    rays = make_rays(world_T_cam[:3, 3], d_world)
    moving = moving_pixels(scene, cfg, world_T_cam, t)
    hit = scene.cast(rays, t, moving=np.nonzero(moving)[0])
    tri = hit["tri"]
    ok = tri >= 0
    sem = np.zeros(len(tri), np.uint8)
    inst = np.zeros(len(tri), np.int32)
    sem[ok] = scene.tri_semantic[tri[ok]]
    inst[ok] = scene.tri_instance[tri[ok]]
    shape = (cfg.height, cfg.width)
    return _CameraRays(world_T_cam, d_world, rays, hit, moving, sem.reshape(shape), inst.reshape(shape))


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
    cam = _cast_camera(scene, cfg, world_T_base, t)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7E11]))
    raw, t8 = shade_thermal(scene, cfg, cam.world_T_cam, world_T_base, cam.d_world, cam.hit, t, lighting, rng)
    boxes, classes, ids, _ = _boxes_from_mask(cam.instance, cfg.min_box_pixels, _instance_classes(scene))
    return ThermalFrame(raw, t8, cam.semantic, cam.instance, boxes, classes, ids, cfg.intrinsics(), cfg.base_T_cam())


def _occlusion(scene: Scene, cam: _CameraRays, rects: np.ndarray, ids: np.ndarray, counts: np.ndarray,
               n_instances: int, t: float) -> np.ndarray:
    """Fraction of each object hidden by static scenery: its visible pixels over its pixels when the same rays
    (inside the objects' rectangles) are cast against the objects alone."""
    region = np.zeros(cam.instance.shape, bool)
    for x0, y0, x1, y1 in rects:
        region[y0:y1, x0:x1] = True
    sel = np.nonzero(region.ravel())[0]
    t_inst = np.zeros(len(sel), np.int32)
    if len(sel):
        things = scene.cast(cam.rays[sel], t, things_only=True, moving=np.nonzero(cam.moving[sel])[0])
        okt = things["tri"] >= 0
        t_inst[okt] = scene.tri_instance[things["tri"][okt]]
    full = np.bincount(t_inst, minlength=n_instances)[ids]
    return (1.0 - counts / np.maximum(full, 1)).clip(0, 1).astype(np.float32)


def _thermal_fields(scene: Scene, rgb_cfg: CameraConfig, thermal_cfg: CameraConfig | None, world_T_base: np.ndarray,
                    lighting: Lighting, seed: int, t: float, homography_depth_m: float) -> dict:
    """The thermal fields of a ``CameraFrame`` (None / empty without a thermal camera)."""
    if thermal_cfg is None:
        return {"thermal16": None, "thermal8": None, "thermal_semantic": None, "thermal_instance": None,
                "thermal_boxes2d": np.zeros((0, 4), np.float32), "thermal_box_classes": np.zeros(0, np.int64),
                "thermal_box_ids": np.zeros(0, np.int32), "K_thermal": None, "base_T_thermal": None,
                "homography_thermal_to_rgb": None}
    th = render_thermal(scene, thermal_cfg, world_T_base, lighting, seed, t)
    return {"thermal16": th.thermal16, "thermal8": th.thermal8, "thermal_semantic": th.semantic,
            "thermal_instance": th.instance, "thermal_boxes2d": th.boxes2d, "thermal_box_classes": th.box_classes,
            "thermal_box_ids": th.box_ids, "K_thermal": thermal_cfg.intrinsics(),
            "base_T_thermal": thermal_cfg.base_T_cam(),
            "homography_thermal_to_rgb": homography_thermal_to_rgb(rgb_cfg, thermal_cfg, homography_depth_m)}


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
    cam = _cast_camera(scene, rgb_cfg, world_T_base, t)
    depth = (cam.hit["t_hit"] * _pixel_dirs(w, h, rgb_cfg.hfov_deg)[:, 2]).astype(np.float32).reshape(h, w)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0xCA11]))
    rgb = shade_rgb(scene, rgb_cfg, cam.world_T_cam, world_T_base, cam.d_world, cam.hit, t, lighting, rng)
    boxes2d, classes, ids, counts = _boxes_from_mask(cam.instance, rgb_cfg.min_box_pixels, inst_cls)
    world_boxes = scene.boxes_at(t)
    order = np.searchsorted(world_boxes.ids, ids) if len(world_boxes) else np.zeros(0, np.int64)
    sel_world = world_boxes.subset(order)
    truncation, rects = _truncation(sel_world, cam.world_T_cam, rgb_cfg.intrinsics(), w, h)
    occlusion = _occlusion(scene, cam, rects, ids, counts, len(inst_cls), t)
    return CameraFrame(rgb=rgb, semantic=cam.semantic, instance=cam.instance, depth=depth, boxes2d=boxes2d,
                       box_classes=classes, box_ids=ids, box_occlusion=occlusion, box_truncation=truncation,
                       boxes3d=sel_world.transform(np.linalg.inv(world_T_base)), K_rgb=rgb_cfg.intrinsics(),
                       base_T_rgb=rgb_cfg.base_T_cam(), world_T_base=world_T_base, lighting=lighting.name,
                       **_thermal_fields(scene, rgb_cfg, thermal_cfg, world_T_base, lighting, seed, t,
                                         homography_depth_m))
