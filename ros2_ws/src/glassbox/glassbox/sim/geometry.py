"""3D boxes and rigid transforms of the synthetic world (numpy only: usable without Open3D).

World frame: x along the street, y to the left, z up (metres). ``Boxes3D`` holds oriented boxes (centre,
length/width/height, yaw about +z) with their classes and instance ids; ``pose_matrix`` and ``rpy_matrix`` build
the transforms between the world, the ego base and the sensors.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


class SceneError(ValueError):
    """A scene configuration or a query on a scene is invalid."""


@dataclass(frozen=True)
class Boxes3D:
    """M oriented boxes: centres (M,3) (geometric centre), sizes (M,3) = length (along the heading), width,
    height; yaw (M,) about +z from +x; classes (M,) indices into ``glassbox.classes.DETECTION_CLASSES``;
    ids (M,) instance ids (the labels of the objects' points and pixels)."""

    centers: np.ndarray
    sizes: np.ndarray
    yaw: np.ndarray
    classes: np.ndarray
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int32))

    def __post_init__(self) -> None:
        m = len(self.centers)
        if self.ids.shape[0] == 0 and m > 0:                     # ids not given
            object.__setattr__(self, "ids", np.zeros(m, np.int32))
        if not (self.centers.shape == (m, 3) and self.sizes.shape == (m, 3) and self.yaw.shape == (m,)
                and self.classes.shape == (m,) and self.ids.shape == (m,)):
            raise SceneError(f"Boxes3D: inconsistent shapes {self.centers.shape} {self.sizes.shape} "
                             f"{self.yaw.shape} {self.classes.shape} {self.ids.shape}")

    def __len__(self) -> int:
        return int(self.centers.shape[0])

    @staticmethod
    def empty() -> Boxes3D:
        return Boxes3D(np.zeros((0, 3), np.float32), np.zeros((0, 3), np.float32), np.zeros(0, np.float32),
                       np.zeros(0, np.int64), np.zeros(0, np.int32))

    def subset(self, index: np.ndarray) -> Boxes3D:
        return Boxes3D(self.centers[index], self.sizes[index], self.yaw[index], self.classes[index],
                       self.ids[index])

    def corners(self) -> np.ndarray:
        """(M, 8, 3) corners; the first four are the bottom face, counter-clockwise from the front-left."""
        signs = np.array([[1, 1, -1], [-1, 1, -1], [-1, -1, -1], [1, -1, -1],
                          [1, 1, 1], [-1, 1, 1], [-1, -1, 1], [1, -1, 1]], dtype=np.float64) * 0.5
        local = signs[None] * self.sizes[:, None, :].astype(np.float64)          # (M, 8, 3)
        c, s = np.cos(self.yaw.astype(np.float64)), np.sin(self.yaw.astype(np.float64))
        x = c[:, None] * local[..., 0] - s[:, None] * local[..., 1]
        y = s[:, None] * local[..., 0] + c[:, None] * local[..., 1]
        return np.stack([x, y, local[..., 2]], axis=-1) + self.centers[:, None, :].astype(np.float64)

    def transform(self, t_new_old: np.ndarray) -> Boxes3D:
        """Express the boxes in another frame; ``t_new_old`` (4,4) must rotate about z only."""
        r = t_new_old[:3, :3]
        if abs(r[2, 2] - 1.0) > 1e-6:
            raise SceneError("Boxes3D.transform: the rotation must be about the z axis only")
        centers = self.centers.astype(np.float64) @ r.T + t_new_old[:3, 3]
        yaw = wrap_angle(self.yaw.astype(np.float64) + np.arctan2(r[1, 0], r[0, 0]))
        return Boxes3D(centers.astype(np.float32), self.sizes.astype(np.float32), yaw.astype(np.float32),
                       self.classes, self.ids)

    def contains(self, points: np.ndarray, margin: float = 0.0) -> np.ndarray:
        """(N, M) boolean: point n lies inside box m (expanded by ``margin`` metres on every side)."""
        d = points[:, None, :3].astype(np.float64) - self.centers[None].astype(np.float64)   # (N, M, 3)
        c, s = np.cos(self.yaw.astype(np.float64)), np.sin(self.yaw.astype(np.float64))
        lx = c * d[..., 0] + s * d[..., 1]
        ly = -s * d[..., 0] + c * d[..., 1]
        half = self.sizes.astype(np.float64) / 2 + margin
        return (np.abs(lx) <= half[:, 0]) & (np.abs(ly) <= half[:, 1]) & (np.abs(d[..., 2]) <= half[:, 2])


def wrap_angle(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


# --------------------------------------------------------------------------------------------------------------
# Poses
# --------------------------------------------------------------------------------------------------------------
def pose_matrix(x: float, y: float, yaw: float, z: float = 0.0) -> np.ndarray:
    """4x4 transform of a frame at (x, y, z) rotated by ``yaw`` about +z (world_T_frame)."""
    c, s = np.cos(yaw), np.sin(yaw)
    t = np.eye(4)
    t[:2, :2] = [[c, -s], [s, c]]
    t[:3, 3] = (x, y, z)
    return t


def rotate(v: np.ndarray, r: np.ndarray) -> np.ndarray:
    """Rows of ``v`` (N, 3) rotated by ``r`` (3, 3), i.e. ``v @ r.T`` (einsum: no BLAS threads for thin arrays)."""
    return np.einsum("ij,kj->ik", v, np.asarray(r, dtype=v.dtype))


def rpy_matrix(roll: float, pitch: float, yaw: float) -> np.ndarray:
    """3x3 rotation R = Rz(yaw) Ry(pitch) Rx(roll) (radians)."""
    cr, sr, cp, sp, cy, sy = np.cos(roll), np.sin(roll), np.cos(pitch), np.sin(pitch), np.cos(yaw), np.sin(yaw)
    rx = np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]])
    ry = np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
    rz = np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
    return rz @ ry @ rx
