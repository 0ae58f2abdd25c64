"""Shading steps shared by the RGB and the thermal camera: the hit points of the camera rays, the pixels that can
see (or be shadowed by) a moving object, the sun direction and its ray-cast shadows, and the optical blur.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import cv2
import numpy as np

from glassbox.sim.scene import Scene, make_rays

if TYPE_CHECKING:
    from glassbox.sim.camera import CameraConfig, Lighting


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
    dv = np.take(d_world.astype(np.float32, copy=False), idx, axis=0)
    point = world_T_cam[:3, 3].astype(np.float32) + dv * hit["t_hit"][idx][:, None]
    return SurfaceHits(idx, scene.tri_material[tri_h], scene.tri_surface[tri_h],
                       np.take(hit["normal"].astype(np.float32, copy=False), idx, axis=0), dv, point)


def moving_pixels(scene: Scene, cfg: CameraConfig, world_T_cam: np.ndarray, t: float,
                  sweep: np.ndarray | None = None, grow_m: float = 0.0) -> np.ndarray:
    """(H*W,) bool: pixels whose ray may meet a moving object at ``t``: the bounding rectangle of the projection
    of each box (grown by ``grow_m`` metres and one pixel; the part behind the camera is clipped off). With
    ``sweep`` (a world vector), each box is swept along it: the pixels of points that may lie in its shadow cast
    along ``-sweep``."""
    h, w = cfg.height, cfg.width
    mask = np.zeros((h, w), bool)
    boxes = scene.moving_boxes_at(t)
    if not len(boxes):
        return mask.ravel()
    grown = type(boxes)(boxes.centers, boxes.sizes + np.float32(2 * grow_m), boxes.yaw, boxes.classes, boxes.ids)
    corners = grown.corners()                                            # (M, 8, 3) world
    if sweep is not None:
        corners = np.concatenate([corners, corners + sweep[None, None, :]], 1)
    cam_T_world = np.linalg.inv(world_T_cam)
    pc = corners @ cam_T_world[:3, :3].T + cam_T_world[:3, 3]            # (M, P, 3) camera frame
    # The hull of the points, clipped at the plane z = near: its points in front and where the segments
    # between a point in front and one behind cross the plane.
    near = 0.05
    z = pc[..., 2]
    a, b = pc[:, :, None, :], pc[:, None, :, :]                          # (M, P, P, 3) segment ends
    za, zb = z[:, :, None], z[:, None, :]
    crosses = (za > near) & (zb <= near)
    s = np.where(crosses, (near - za) / np.where(crosses, zb - za, 1.0), 0.0)
    q = a + s[..., None] * (b - a)
    pts = np.concatenate([pc, q.reshape(len(pc), -1, 3)], 1)
    ok = np.concatenate([z > near, crosses.reshape(len(pc), -1)], 1)
    k = cfg.intrinsics()
    zz = np.maximum(pts[..., 2], near)
    u, v = k[0, 0] * pts[..., 0] / zz + k[0, 2], k[1, 1] * pts[..., 1] / zz + k[1, 2]
    x0 = np.clip(np.floor(np.where(ok, u, np.inf).min(1)) - 1, 0, w)
    x1 = np.clip(np.ceil(np.where(ok, u, -np.inf).max(1)) + 1, 0, w)
    y0 = np.clip(np.floor(np.where(ok, v, np.inf).min(1)) - 1, 0, h)
    y1 = np.clip(np.ceil(np.where(ok, v, -np.inf).max(1)) + 1, 0, h)
    for i in np.nonzero(ok.any(1))[0]:
        mask[int(y0[i]):int(y1[i]), int(x0[i]):int(x1[i])] = True
    return mask.ravel()


def sun_direction(lighting: Lighting, world_T_base: np.ndarray) -> np.ndarray:
    """Unit vector towards the sun in the world frame."""
    az = np.deg2rad(lighting.sun_azimuth_deg)
    if lighting.sun_relative_to_ego:
        az += np.arctan2(world_T_base[1, 0], world_T_base[0, 0])
    el = np.deg2rad(lighting.sun_elevation_deg)
    return np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)])


def sun_is_up(lighting: Lighting, sun: np.ndarray) -> bool:
    return lighting.sun_intensity > 0 and sun[2] > 0


def sun_visibility(scene: Scene, hits: SurfaceHits, sun: np.ndarray, t: float, cfg: CameraConfig,
                   world_T_cam: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Cosine ``n . sun`` (clipped at 0) and sun visibility (1 lit, 0 in shadow) at every hit of the camera
    ``cfg`` at ``world_T_cam``; shadow rays start 3 cm off the surface, and only those from pixels in a moving
    object's shadow volume (down to the lowest hit) are tested against the moving objects."""
    ndl = np.clip(np.einsum("ij,j->i", hits.normal, sun.astype(np.float32)), 0, None)
    facing = np.nonzero(ndl > 0)[0]
    vis = np.zeros(len(hits.idx), np.float32)
    if len(facing):
        rays = make_rays(np.take(hits.point, facing, axis=0) + np.take(hits.normal, facing, axis=0) * 0.03, sun)
        boxes = scene.moving_boxes_at(t)
        top = float((boxes.centers[:, 2] + boxes.sizes[:, 2] / 2).max(initial=0.0)) + 0.2
        sweep = -sun * max(top - float(hits.point[:, 2].min()), 0.0) / sun[2]       # sun[2] > 0 when facing
        moving = np.nonzero(moving_pixels(scene, cfg, world_T_cam, t, sweep, grow_m=0.1)[hits.idx[facing]])[0]
        vis[facing] = ~scene.occluded(rays, t, moving=moving)
    return ndl, vis


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    if sigma <= 0:
        return img
    return cv2.GaussianBlur(img, (0, 0), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_REFLECT)
