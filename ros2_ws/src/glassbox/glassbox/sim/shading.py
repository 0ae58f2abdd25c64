"""Shading steps shared by the RGB and the thermal camera: the hit points of the camera rays, the sun direction and
its ray-cast shadows, and the optical blur.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from glassbox.sim.scene import Scene, make_rays

if TYPE_CHECKING:
    from glassbox.sim.camera import Lighting


@dataclass(frozen=True)
class SurfaceHits:
    """The camera rays that hit the scene: pixel indices ``idx`` (K,), and per hit the material and surface ids,
    the unit normal (facing the ray), the ray direction and the world position (all float32)."""

    idx: np.ndarray
    mat: np.ndarray
    surf: np.ndarray
    normal: np.ndarray
    direction: np.ndarray
    point: np.ndarray


def surface_hits(scene: Scene, world_T_cam: np.ndarray, d_world: np.ndarray, hit: dict) -> SurfaceHits:
    """Gather the hits of one camera's rays (``hit`` from ``Scene.cast``; ``d_world`` (N, 3) ray directions)."""
    idx = np.nonzero(hit["tri"] >= 0)[0]
    tri_h = hit["tri"][idx]
    dv = d_world[idx].astype(np.float32)
    point = world_T_cam[:3, 3].astype(np.float32) + dv * hit["t_hit"][idx][:, None]
    return SurfaceHits(idx, scene.tri_material[tri_h], scene.tri_surface[tri_h],
                       hit["normal"][idx].astype(np.float32), dv, point)


def sun_direction(lighting: Lighting, world_T_base: np.ndarray) -> np.ndarray:
    """Unit vector towards the sun in the world frame."""
    az = np.deg2rad(lighting.sun_azimuth_deg)
    if lighting.sun_relative_to_ego:
        az += np.arctan2(world_T_base[1, 0], world_T_base[0, 0])
    el = np.deg2rad(lighting.sun_elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def sun_is_up(lighting: Lighting, sun: np.ndarray) -> bool:
    return lighting.sun_intensity > 0 and sun[2] > 0


def sun_visibility(scene: Scene, hits: SurfaceHits, sun: np.ndarray, t: float) -> tuple[np.ndarray, np.ndarray]:
    """Cosine ``n . sun`` (clipped at 0) and sun visibility (1 lit, 0 in shadow) at every hit; shadow rays start
    3 cm off the surface."""
    ndl = np.clip(np.einsum("ij,j->i", hits.normal, sun.astype(np.float32)), 0, None)
    facing = np.nonzero(ndl > 0)[0]
    vis = np.zeros(len(hits.idx), np.float32)
    if len(facing):
        rays = make_rays(hits.point[facing] + hits.normal[facing] * 0.03, sun)
        vis[facing] = ~scene.occluded(rays, t)
    return ndl, vis


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
