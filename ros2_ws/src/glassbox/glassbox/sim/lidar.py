"""A spinning multi-beam LiDAR: beam tables of real sensors, range noise, dropout and intensity.

The LiDAR frame is x forward, y left, z up, at ``mount_xyz`` on the ego base frame (no rotation). Each beam has
a fixed elevation; the head sweeps ``azimuth_steps`` columns per revolution, starting behind the sensor and
turning clockwise seen from above (as Velodyne heads do), so a point's ``time`` (seconds from the start of the
sweep) follows its column. ``ring`` is the beam index as the sensor's driver numbers it: ring 0 = lowest beam
(``ring_order="bottom_first"``, Velodyne) or the highest (``"top_first"``, Ouster).

A preset (``lidar_preset``) is a sensor profile of ``glassbox.lidar.sensors`` (beam table, columns, ranges, rate,
mount height and intensity units from the datasheets), so the simulated clouds and the range images of models
trained on them share one geometry.

Differences from a real sensor, on purpose: the scene is frozen during one sweep (no motion distortion), beams
share one optical centre, and intensity is a simple model: material reflectivity times the cosine of the
incidence angle, times a mild range fall-off, in [0, 1], then expressed in the sensor's unit (``intensity_max``:
1 = float reflectance as in KITTI, 255 = a Velodyne byte, 65535 = Ouster 16-bit signal; whole counts when above 1).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal

import numpy as np

from glassbox.lidar.sensors import PROFILES, SENSORS, SensorProfile
from glassbox.sim.materials import MAT_REFLECTIVITY
from glassbox.sim.geometry import Boxes3D, SceneError, rotate
from glassbox.sim.scene import Scene, make_rays
from glassbox.sim.texture import surface_reflectivity


class LidarError(ValueError):
    """A LiDAR configuration is invalid."""


@dataclass(frozen=True)
class LidarConfig:
    """Beam table (elevations in degrees, any order), head resolution and noise model."""

    name: str = "hdl64"
    elevations_deg: tuple[float, ...] = ()
    azimuth_steps: int = 2048
    max_range_m: float = 120.0
    min_range_m: float = 1.0
    range_noise_m: float = 0.02
    dropout: float = 0.02                     # random loss of returns
    grazing_dropout: float = 0.3              # extra loss at grazing incidence (scaled by 1 - cos)
    min_intensity: float = 0.005             # returns weaker than this are lost
    rate_hz: float = 10.0
    mount_xyz: tuple[float, float, float] = (0.0, 0.0, 1.73)
    min_box_points: int = 1                   # boxes with fewer LiDAR points are left out of the scan's labels
    frame_id: str = "lidar"
    intensity_max: float = 1.0                # full scale of the intensity unit (1 = float 0-1 reflectance)
    ring_order: Literal["bottom_first", "top_first"] = "bottom_first"   # ring 0 = lowest / highest beam

    def __post_init__(self) -> None:
        if len(self.elevations_deg) == 0:
            raise LidarError("LidarConfig: elevations_deg is empty (use lidar_preset(...) for a real beam table)")
        if self.azimuth_steps < 8 or self.max_range_m <= self.min_range_m or self.rate_hz <= 0:
            raise LidarError(f"LidarConfig: invalid azimuth_steps={self.azimuth_steps}, ranges "
                             f"({self.min_range_m}, {self.max_range_m}) or rate_hz={self.rate_hz}")
        if not 0 <= self.dropout < 1 or not 0 <= self.grazing_dropout < 1:
            raise LidarError("LidarConfig: dropout probabilities must lie in [0, 1)")
        if self.intensity_max <= 0 or self.ring_order not in ("bottom_first", "top_first"):
            raise LidarError(f"LidarConfig: invalid intensity_max={self.intensity_max} or ring_order="
                             f"{self.ring_order!r}")

    @classmethod
    def from_profile(cls, profile: SensorProfile, **overrides) -> LidarConfig:
        """The simulated sensor of a profile: its beam table, columns, ranges, rate, mount height, intensity unit
        and ring order; ``overrides``: any field (noise and dropout keep their defaults)."""
        return cls(**{"name": profile.name, "elevations_deg": tuple(profile.elevations_deg),
                      "azimuth_steps": profile.columns, "min_range_m": profile.min_range_m,
                      "max_range_m": profile.max_range_m, "rate_hz": profile.rate_hz,
                      "mount_xyz": (0.0, 0.0, profile.mount_height_m), "intensity_max": profile.intensity_max,
                      "ring_order": profile.ring_order, **overrides})

    @property
    def num_beams(self) -> int:
        return len(self.elevations_deg)

    def base_T_lidar(self) -> np.ndarray:
        t = np.eye(4)
        t[:3, 3] = self.mount_xyz
        return t


LIDAR_PRESETS = SENSORS


def lidar_preset(name: str, **overrides) -> LidarConfig:
    """The simulated sensor of a profile of ``glassbox.lidar.sensors``: ``vlp16`` (Velodyne VLP-16, +-15 deg),
    ``vlp32c`` (VLP-32C, -25..+15), ``hdl32`` (HDL-32E, -30.67..+10.67), ``hdl64`` (HDL-64E, +2..-24.33 in two
    blocks), ``os1_64`` (Ouster OS1-64, +-16.6), ``os1_128`` (OS1-128, +-22.5); ``overrides``: LidarConfig fields."""
    if name not in PROFILES:
        raise LidarError(f"unknown LiDAR preset '{name}' (known: {', '.join(SENSORS)})")
    return LidarConfig.from_profile(PROFILES[name], **overrides)


@dataclass(frozen=True)
class LidarScan:
    """One sweep in the LiDAR frame. ``points`` (N,4) float32 x, y, z, intensity; ``ring`` (N,) uint16;
    ``time`` (N,) float32 seconds from the sweep start; ``label`` (N,) uint8 semantic id; ``instance`` (N,) int32
    (0 = stuff); ``boxes``: the objects with at least ``min_box_points`` points, in the LiDAR frame;
    ``box_points`` (M,) their point counts; ``world_T_lidar`` the sensor pose; ``column`` (N,) azimuth step."""

    points: np.ndarray
    ring: np.ndarray
    time: np.ndarray
    label: np.ndarray
    instance: np.ndarray
    boxes: Boxes3D
    box_points: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))
    world_T_lidar: np.ndarray = field(default_factory=lambda: np.eye(4))
    column: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint16))

    def __len__(self) -> int:
        return int(self.points.shape[0])


def beam_directions(cfg: LidarConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit ray directions (B*A, 3) in the LiDAR frame, with the ring and column of each ray."""
    elev = np.deg2rad(np.asarray(cfg.elevations_deg, np.float64))
    order = np.argsort(elev, kind="stable")                       # index 0 = lowest beam
    elev = elev[order]
    cols = np.arange(cfg.azimuth_steps)
    az = np.pi - 2 * np.pi * (cols + 0.5) / cfg.azimuth_steps     # from behind, clockwise seen from above
    ce, se = np.cos(elev)[:, None], np.sin(elev)[:, None]
    d = np.stack([ce * np.cos(az)[None], ce * np.sin(az)[None], np.broadcast_to(se, (len(elev), len(az)))], -1)
    beam = np.arange(len(elev), dtype=np.uint16)
    ring = np.repeat(beam if cfg.ring_order == "bottom_first" else beam[::-1], len(az))
    column = np.tile(cols.astype(np.uint16), len(elev))
    return d.reshape(-1, 3), ring, column


@lru_cache(maxsize=8)
def _world_beams(cfg: LidarConfig, world_R_lidar: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``beam_directions(cfg)`` and the directions rotated by ``world_R_lidar`` (3x3 float64, as bytes), read-only.
    Cached: along a straight street the orientation is the same in every sweep."""
    d_local, ring, column = beam_directions(cfg)
    d_world = rotate(d_local, np.frombuffer(world_R_lidar, np.float64).reshape(3, 3))
    for a in (d_local, ring, column, d_world):
        a.setflags(write=False)
    return d_local, ring, column, d_world


def moving_rays(cfg: LidarConfig, boxes_lidar: Boxes3D) -> np.ndarray:
    """Indices of the rays (order of ``beam_directions``) that may meet one of ``boxes_lidar`` (LiDAR frame):
    those within the elevation and azimuth bounds of each box's bounding sphere, one ring and column wider."""
    n_b, n_a = cfg.num_beams, cfg.azimuth_steps
    mask = np.zeros((n_b, n_a), bool)
    elev = np.sort(np.deg2rad(np.asarray(cfg.elevations_deg, np.float64)))
    c = boxes_lidar.centers.astype(np.float64)
    radius = np.linalg.norm(boxes_lidar.sizes.astype(np.float64), axis=1) / 2 + 0.05
    dist, rho = np.linalg.norm(c, axis=1), np.linalg.norm(c[:, :2], axis=1)
    for i in range(len(c)):
        if rho[i] <= radius[i]:                       # above or below the sensor: every azimuth
            mask[:] = True
            break
        half_el = np.arcsin(radius[i] / dist[i])
        el = np.arcsin(c[i, 2] / dist[i])
        r0 = max(int(np.searchsorted(elev, el - half_el)) - 1, 0)
        r1 = int(np.searchsorted(elev, el + half_el)) + 1
        half_az = np.arcsin(radius[i] / rho[i])
        az = np.arctan2(c[i, 1], c[i, 0])
        # column of azimuth a: (pi - a) / (2 pi) * n_a - 0.5 (see beam_directions); the range may wrap around.
        lo = int(np.floor((np.pi - az - half_az) / (2 * np.pi) * n_a - 0.5)) - 1
        hi = int(np.ceil((np.pi - az + half_az) / (2 * np.pi) * n_a - 0.5)) + 2
        mask[r0:r1, np.arange(lo, hi) % n_a] = True
    return np.nonzero(mask.ravel())[0]


def scan_lidar(scene: Scene, cfg: LidarConfig, ego_pose: np.ndarray, seed: int, t: float = 0.0) -> LidarScan:
    """Cast one sweep from the LiDAR mounted on the ego base at ``ego_pose`` (world_T_base, 4x4) in the scene
    at time ``t``. ``seed`` drives the noise and dropout (the same seed gives identical bytes)."""
    ego_pose = np.asarray(ego_pose, np.float64)
    if ego_pose.shape != (4, 4):
        raise SceneError(f"scan_lidar: ego_pose must be a 4x4 matrix, got shape {ego_pose.shape}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x11DA2]))
    world_T_lidar = ego_pose @ cfg.base_T_lidar()
    d_local, ring, column, d_world = _world_beams(cfg, np.ascontiguousarray(world_T_lidar[:3, :3]).tobytes())
    rays = make_rays(world_T_lidar[:3, 3], d_world)
    lidar_T_world = np.linalg.inv(world_T_lidar)
    hit = scene.cast(rays, t, moving=moving_rays(cfg, scene.moving_boxes_at(t).transform(lidar_T_world)))
    r = hit["t_hit"].astype(np.float64)
    tri = hit["tri"]
    valid = np.isfinite(r) & (r >= cfg.min_range_m) & (r <= cfg.max_range_m)
    idx = np.nonzero(valid)[0]
    r, tri = r[idx], tri[idx]
    d_sel, n_sel = np.take(d_world, idx, axis=0), np.take(hit["normal"], idx, axis=0).astype(np.float64)
    cos_inc = np.clip(-np.einsum("ij,ij->i", d_sel, n_sel), 0.0, 1.0)
    mat = scene.tri_material[tri]
    p_world = rays[0, :3].astype(np.float64) + d_sel * r[:, None]          # every ray starts at the sensor
    refl = MAT_REFLECTIVITY[mat] * surface_reflectivity(scene, mat, p_world)
    intensity = refl * (0.2 + 0.8 * cos_inc) * np.exp(-r / 250.0)
    u = rng.random(len(r))
    noise = rng.normal(0.0, cfg.range_noise_m, len(r))
    keep = (u >= cfg.dropout + cfg.grazing_dropout * (1 - cos_inc) ** 4) & (intensity >= cfg.min_intensity)
    r_noisy = r + noise
    kept = idx[keep]
    points = np.empty((len(kept), 4), np.float32)
    points[:, :3] = np.take(d_local, kept, axis=0) * r_noisy[keep][:, None]
    kept_intensity = np.clip(intensity[keep], 0, 1)
    if cfg.intensity_max != 1.0:
        kept_intensity = np.round(kept_intensity * cfg.intensity_max)
    points[:, 3] = kept_intensity
    tri = tri[keep]
    label = scene.tri_semantic[tri]
    instance = scene.tri_instance[tri]
    col = column[kept]
    time = (col.astype(np.float64) / cfg.azimuth_steps / cfg.rate_hz).astype(np.float32)

    boxes = scene.boxes_at(t).transform(lidar_T_world)
    counts = np.bincount(instance, minlength=int(boxes.ids.max(initial=0)) + 1)
    box_points = counts[boxes.ids].astype(np.int32) if len(boxes) else np.zeros(0, np.int32)
    sel = box_points >= max(cfg.min_box_points, 0)
    if cfg.min_box_points <= 0:
        dist = np.linalg.norm(boxes.centers[:, :2], axis=1) if len(boxes) else np.zeros(0)
        sel = dist <= cfg.max_range_m
    return LidarScan(points=points, ring=ring[kept], time=time, label=label, instance=instance,
                     boxes=boxes.subset(sel), box_points=box_points[sel], world_T_lidar=world_T_lidar, column=col)
