"""Procedural street scenes for ray casting: static geometry, moving objects and exact 3D ground truth.

World frame: x along the street, y to the left, z up (metres); the ground (road surface) is z = 0. A scene is a
straight street: a road with two driving lanes and two parking strips, raised sidewalks with a curb, grass
beyond, rows of buildings with gaps, trees, street lights and sign poles, and the objects of the detection
classes (parked and moving cars, pedestrians walking on the sidewalks, cyclists riding at the lane edges).
Everything is made of triangles that carry a semantic id, an instance id (0 for "stuff"), a material and a
surface id (its own colour and temperature offset), so every ray that hits the scene is labelled exactly.

Objects move at constant velocity along their heading: ``Scene.raycaster(t)`` builds an Open3D
``RaycastingScene`` of the world at time ``t`` (static part plus objects moved to ``t``), and
``Scene.boxes_at(t)`` gives their 3D boxes, which enclose the object meshes exactly. A scene and everything
rendered from it depend only on the seed and the configuration.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from typing import TYPE_CHECKING

import numpy as np

from glassbox.classes import DETECTION_ID, SEMANTIC_ID
from glassbox.sim.materials import MAT_RGB, MATERIAL_ID

if TYPE_CHECKING:
    import open3d as o3d

SEM_FOR_CLASS = np.array([SEMANTIC_ID["car"], SEMANTIC_ID["pedestrian"], SEMANTIC_ID["cyclist"]], dtype=np.uint8)
INVALID_TRI = -1


class SceneError(ValueError):
    """A scene configuration or a query on a scene is invalid."""


def _open3d():
    """Open3D, imported on first use (boxes and poses work without it, e.g. when only reading datasets)."""
    try:
        import open3d
    except ImportError as exc:
        raise SceneError(f"ray casting needs open3d (pip install open3d): {exc}") from None
    return open3d


# --------------------------------------------------------------------------------------------------------------
# 3D boxes
# --------------------------------------------------------------------------------------------------------------
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
        yaw = _wrap_angle(self.yaw.astype(np.float64) + np.arctan2(r[1, 0], r[0, 0]))
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


def _wrap_angle(a: np.ndarray) -> np.ndarray:
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


# --------------------------------------------------------------------------------------------------------------
# Primitive meshes (unit sized, centred at the origin)
# --------------------------------------------------------------------------------------------------------------
_BOX_V = np.array([[x, y, z] for x in (-0.5, 0.5) for y in (-0.5, 0.5) for z in (-0.5, 0.5)], np.float64)
_BOX_T = np.array([[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
                   [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]], np.int64)


def _cylinder(n: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Unit cylinder (diameter 1, height 1, centred) along z with ``n`` sides."""
    ang = 2 * np.pi * np.arange(n) / n
    ring = np.stack([0.5 * np.cos(ang), 0.5 * np.sin(ang)], 1)
    v = np.concatenate([np.c_[ring, np.full(n, -0.5)], np.c_[ring, np.full(n, 0.5)], [[0, 0, -0.5], [0, 0, 0.5]]])
    i, j = np.arange(n), (np.arange(n) + 1) % n
    side = np.concatenate([np.stack([i, j, j + n], 1), np.stack([i, j + n, i + n], 1)])
    caps = np.concatenate([np.stack([np.full(n, 2 * n), j, i], 1), np.stack([np.full(n, 2 * n + 1), i + n, j + n], 1)])
    return v.astype(np.float64), np.concatenate([side, caps]).astype(np.int64)


def _sphere(rings: int = 6, sectors: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Unit-diameter UV sphere centred at the origin."""
    theta = np.pi * np.arange(1, rings) / rings                      # polar angles of the inner rings
    phi = 2 * np.pi * np.arange(sectors) / sectors
    st, ct = np.sin(theta)[:, None], np.cos(theta)[:, None]
    ring_v = np.stack([st * np.cos(phi)[None], st * np.sin(phi)[None], np.broadcast_to(ct, (rings - 1, sectors))], -1)
    v = np.concatenate([[[0, 0, 1.0]], ring_v.reshape(-1, 3), [[0, 0, -1.0]]]) * 0.5
    south = len(v) - 1
    j, jn = np.arange(sectors), (np.arange(sectors) + 1) % sectors
    tris = [np.stack([np.zeros(sectors, np.int64), 1 + j, 1 + jn], 1)]
    for r in range(rings - 2):
        a, b = 1 + r * sectors, 1 + (r + 1) * sectors
        tris += [np.stack([a + j, b + j, b + jn], 1), np.stack([a + j, b + jn, a + jn], 1)]
    last = 1 + (rings - 2) * sectors
    tris.append(np.stack([last + j, np.full(sectors, south), last + jn], 1))
    return v, np.concatenate(tris).astype(np.int64)


_CYL_V, _CYL_T = _cylinder()
_SPH_V, _SPH_T = _sphere()
_PRIMS = {"box": (_BOX_V, _BOX_T), "cyl": (_CYL_V, _CYL_T), "sph": (_SPH_V, _SPH_T)}
# Rotation taking the cylinder axis z onto y (wheels) and onto x.
_Z_TO_Y = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)


class _MeshBuilder:
    """Accumulates triangles with per-triangle semantic, instance, material and surface ids."""

    def __init__(self) -> None:
        self.v: list[np.ndarray] = []
        self.t: list[np.ndarray] = []
        self.sem: list[np.ndarray] = []
        self.inst: list[np.ndarray] = []
        self.mat: list[np.ndarray] = []
        self.surf: list[np.ndarray] = []
        self.nv = 0

    def add(self, prim: str, center, size, surface: int, material: str, semantic: str, instance: int = 0,
            rot: np.ndarray | None = None) -> None:
        v0, t0 = _PRIMS[prim]
        v = v0 * np.asarray(size, np.float64)
        if rot is not None:
            v = v @ rot.T
        v = v + np.asarray(center, np.float64)
        self.v.append(v)
        self.t.append(t0 + self.nv)
        n = len(t0)
        self.sem.append(np.full(n, SEMANTIC_ID[semantic], np.uint8))
        self.inst.append(np.full(n, instance, np.int32))
        self.mat.append(np.full(n, MATERIAL_ID[material], np.uint8))
        self.surf.append(np.full(n, surface, np.int32))
        self.nv += len(v)

    def add_quad(self, corners: np.ndarray, surface: int, material: str, semantic: str) -> None:
        self.v.append(np.asarray(corners, np.float64))
        self.t.append(np.array([[0, 1, 2], [0, 2, 3]], np.int64) + self.nv)
        self.sem.append(np.full(2, SEMANTIC_ID[semantic], np.uint8))
        self.inst.append(np.zeros(2, np.int32))
        self.mat.append(np.full(2, MATERIAL_ID[material], np.uint8))
        self.surf.append(np.full(2, surface, np.int32))
        self.nv += 4

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.v:
            return {"v": np.zeros((0, 3)), "t": np.zeros((0, 3), np.int64), "sem": np.zeros(0, np.uint8),
                    "inst": np.zeros(0, np.int32), "mat": np.zeros(0, np.uint8), "surf": np.zeros(0, np.int32)}
        return {"v": np.concatenate(self.v), "t": np.concatenate(self.t), "sem": np.concatenate(self.sem),
                "inst": np.concatenate(self.inst), "mat": np.concatenate(self.mat),
                "surf": np.concatenate(self.surf)}


class _Surfaces:
    """Surface table: one colour (linear RGB) and one temperature offset (deg C) per surface id."""

    def __init__(self) -> None:
        self.rgb: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.temp: list[float] = [0.0]

    def new(self, rgb, temp_offset_c: float = 0.0) -> int:
        self.rgb.append(tuple(float(c) for c in rgb))
        self.temp.append(float(temp_offset_c))
        return len(self.rgb) - 1


# --------------------------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SceneConfig:
    """Street layout and object densities (counts per 100 m of street)."""

    length_m: float = 200.0
    margin_m: float = 120.0                       # road and ground continue this far beyond both ends
    lane_width_m: float = 3.4
    parking_width_m: float = 2.3
    sidewalk_width_m: tuple[float, float] = (2.5, 4.5)
    curb_height_m: float = 0.15
    building_height_m: tuple[float, float] = (6.0, 28.0)
    building_length_m: tuple[float, float] = (8.0, 26.0)
    building_gap_prob: float = 0.35
    tree_spacing_m: tuple[float, float] = (8.0, 18.0)
    light_spacing_m: float = 25.0
    parked_cars_per_100m: float = 7.0             # per side
    oncoming_cars_per_100m: float = 3.0
    lead_cars: int = 2                            # cars in the ego lane (they move at the ego speed)
    pedestrians_per_100m: float = 10.0
    cyclists_per_100m: float = 2.0
    ego_speed_mps: float = 8.0
    ego_start_m: float = 10.0                     # ego start: this far into the street, in the right lane
    clear_radius_m: float = 6.0                   # no parked/oncoming object closer to the ego path start

    def __post_init__(self) -> None:
        if self.length_m <= 0 or self.lane_width_m <= 0:
            raise SceneError(f"SceneConfig: length_m and lane_width_m must be > 0 (got {self.length_m}, "
                             f"{self.lane_width_m})")
        for name in ("sidewalk_width_m", "building_height_m", "building_length_m", "tree_spacing_m"):
            lo, hi = getattr(self, name)
            if not 0 < lo <= hi:
                raise SceneError(f"SceneConfig: {name} must be an increasing positive range, got {(lo, hi)}")


# --------------------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------------------
@dataclass
class _Object:
    cls: int
    instance: int
    mesh: dict[str, np.ndarray]           # local vertices (box-centred), triangles and per-triangle ids
    size: np.ndarray                      # (3,) l, w, h
    center0: np.ndarray                   # (3,) world, at t = 0
    yaw: float
    speed: float


def _finish_object(b: _MeshBuilder, cls: int, instance: int, center_xy, yaw: float, speed: float) -> _Object:
    """Centre the part meshes on their exact bounding box, which becomes the object's 3D box."""
    mesh = b.arrays()
    lo, hi = mesh["v"].min(0), mesh["v"].max(0)
    mid = (lo + hi) / 2
    mesh["v"] = mesh["v"] - mid
    size = hi - lo
    center = np.array([center_xy[0], center_xy[1], size[2] / 2])
    return _Object(cls, instance, mesh, size, center, float(yaw), float(speed))


def _car(rng: np.random.Generator, surfaces: _Surfaces, instance: int, engine_heat_c: float) -> _MeshBuilder:
    b = _MeshBuilder()
    length, width, height = rng.uniform(3.8, 4.9), rng.uniform(1.62, 1.92), rng.uniform(1.38, 1.70)
    palette = np.array([[0.8, 0.8, 0.82], [0.05, 0.05, 0.06], [0.5, 0.52, 0.55], [0.55, 0.06, 0.05],
                        [0.08, 0.14, 0.45], [0.75, 0.7, 0.6], [0.1, 0.3, 0.15], [0.85, 0.55, 0.1]])
    paint = palette[rng.integers(len(palette))] * rng.uniform(0.85, 1.1)
    s_body = surfaces.new(np.clip(paint, 0, 1), engine_heat_c * 0.1)
    s_engine = surfaces.new(np.clip(paint, 0, 1), engine_heat_c)
    s_glass = surfaces.new((0.04, 0.05, 0.07))
    s_tyre = surfaces.new((0.03, 0.03, 0.03), engine_heat_c * 0.3)
    s_head = surfaces.new((0.9, 0.9, 0.85))
    s_tail = surfaces.new((0.8, 0.05, 0.03))
    r = 0.31 * height / 1.5
    z0 = 0.0                                             # ground
    body_lo, body_hi = z0 + 0.55 * r, z0 + 0.58 * height
    hood = 0.27 * length
    sem = "car"
    b.add("box", (-hood / 2, 0, (body_lo + body_hi) / 2), (length - hood, width - 0.04, body_hi - body_lo),
          s_body, "paint", sem, instance)
    b.add("box", (length / 2 - hood / 2, 0, (body_lo + body_hi) / 2), (hood, width - 0.04, body_hi - body_lo),
          s_engine, "engine", sem, instance)
    cab_len = length * rng.uniform(0.45, 0.55)
    cab_x = -length / 2 + 0.16 * length + cab_len / 2
    b.add("box", (cab_x, 0, (body_hi + height) / 2), (cab_len, width - 0.2, height - body_hi), s_glass, "glass",
          sem, instance)
    for sx in (-1, 1):
        for sy in (-1, 1):
            b.add("cyl", (sx * (length / 2 - r - 0.4), sy * (width / 2 - 0.12), r), (2 * r, 2 * r, 0.22),
                  s_tyre, "rubber", sem, instance, rot=_Z_TO_Y)
        b.add("box", (length / 2 - 0.03, sx * (width / 2 - 0.3), body_hi - 0.15), (0.06, 0.3, 0.14), s_head,
              "lamp", sem, instance)
        b.add("box", (-length / 2 + 0.03, sx * (width / 2 - 0.25), body_hi - 0.15), (0.06, 0.25, 0.12), s_tail,
              "lamp", sem, instance)
    return b


def _person(b: _MeshBuilder, rng: np.random.Generator, surfaces: _Surfaces, instance: int, sem: str,
            base: tuple[float, float, float], height: float, stride: float, seated: bool) -> None:
    """Add a person standing (or seated on a bicycle) with the feet at ``base``."""
    bx, by, bz = base
    skin = surfaces.new(np.array([0.75, 0.55, 0.42]) * rng.uniform(0.35, 1.05), rng.uniform(-0.5, 0.5))
    shirt = surfaces.new(rng.uniform(0.05, 0.85, 3), rng.uniform(-2.0, 2.0))
    pants = surfaces.new(rng.uniform(0.03, 0.5, 3), rng.uniform(-2.0, 2.0))
    leg_h, torso_h = 0.47 * height, 0.33 * height
    head_d = 0.13 * height
    shoulder = rng.uniform(0.36, 0.46) * height / 1.75
    if seated:
        for sy in (-1, 1):
            b.add("box", (bx + 0.1, by + sy * 0.1, bz + leg_h / 2), (0.14, 0.12, leg_h), pants, "cloth", sem, instance)
        torso_c = (bx - 0.05, by, bz + leg_h + torso_h / 2)
        b.add("box", torso_c, (0.25, shoulder, torso_h), shirt, "cloth", sem, instance)
        for sy in (-1, 1):
            b.add("box", (bx + 0.25, by + sy * (shoulder / 2 + 0.02), bz + leg_h + torso_h * 0.6),
                  (0.45, 0.08, 0.08), shirt, "cloth", sem, instance)
        b.add("sph", (bx + 0.02, by, bz + leg_h + torso_h + head_d / 2), (head_d * 0.85, head_d * 0.8, head_d),
              skin, "skin", sem, instance)
        return
    for sx, sy in ((1, 1), (-1, -1)):
        b.add("box", (bx + sx * stride / 2, by + sy * 0.1, bz + leg_h / 2), (0.16, 0.14, leg_h), pants, "cloth",
              sem, instance)
    b.add("box", (bx, by, bz + leg_h + torso_h / 2), (0.26, shoulder, torso_h), shirt, "cloth", sem, instance)
    for sy in (-1, 1):
        b.add("box", (bx - sy * stride / 3, by + sy * (shoulder / 2 + 0.05), bz + leg_h + torso_h * 0.55),
              (0.1, 0.09, torso_h * 0.95), shirt, "cloth", sem, instance)
        b.add("box", (bx - sy * stride / 3, by + sy * (shoulder / 2 + 0.05), bz + leg_h + 0.02),
              (0.08, 0.08, 0.1), skin, "skin", sem, instance)
    b.add("sph", (bx, by, bz + leg_h + torso_h + head_d / 2), (head_d * 0.85, head_d * 0.8, head_d), skin, "skin",
          sem, instance)


def _pedestrian(rng: np.random.Generator, surfaces: _Surfaces, instance: int, walking: bool) -> _MeshBuilder:
    b = _MeshBuilder()
    stride = rng.uniform(0.25, 0.7) if walking else rng.uniform(0.0, 0.15)
    _person(b, rng, surfaces, instance, "pedestrian", (0, 0, 0), rng.uniform(1.5, 1.95), stride, seated=False)
    return b


def _cyclist(rng: np.random.Generator, surfaces: _Surfaces, instance: int) -> _MeshBuilder:
    b = _MeshBuilder()
    frame = surfaces.new(rng.uniform(0.05, 0.8, 3))
    tyre = surfaces.new((0.03, 0.03, 0.03))
    r = rng.uniform(0.31, 0.36)
    base = rng.uniform(0.98, 1.1)                        # wheel base
    sem = "cyclist"
    for sx in (-1, 1):
        b.add("cyl", (sx * base / 2, 0, r), (2 * r, 2 * r, 0.05), tyre, "rubber", sem, instance, rot=_Z_TO_Y)
    b.add("box", (0, 0, r + 0.25), (base * 0.75, 0.05, 0.05), frame, "bike", sem, instance)
    b.add("box", (-0.1, 0, r + 0.12), (0.05, 0.05, 0.5), frame, "bike", sem, instance)
    b.add("box", (base / 2 - 0.05, 0, r + 0.35), (0.05, 0.05, 0.7), frame, "bike", sem, instance)
    b.add("box", (base / 2 - 0.05, 0, r + 0.7), (0.05, rng.uniform(0.52, 0.64), 0.04), frame, "bike", sem, instance)
    _person(b, rng, surfaces, instance, sem, (-0.15, 0, r + 0.02), rng.uniform(1.55, 1.9) * 0.74, 0.0, seated=True)
    return b


# --------------------------------------------------------------------------------------------------------------
# The scene
# --------------------------------------------------------------------------------------------------------------
class Scene:
    """A generated street. Build with :func:`make_scene`."""

    def __init__(self, cfg: SceneConfig, seed: int, static: dict[str, np.ndarray], objects: list[_Object],
                 surfaces: _Surfaces, lights: np.ndarray, markings: dict[str, float]) -> None:
        self.cfg = cfg
        self.seed = seed
        self.static = static
        self.objects = objects
        self.surface_rgb = np.asarray(surfaces.rgb, np.float32)
        self.surface_temp_c = np.asarray(surfaces.temp, np.float32)
        self.lights = lights                     # (L, 3) street-light lamp positions (world)
        self.markings = markings
        # Dynamic meshes concatenated, with the owning object per vertex, for fast per-time transforms.
        if objects:
            self._obj_v = np.concatenate([o.mesh["v"] for o in objects])
            self._obj_vidx = np.concatenate([np.full(len(o.mesh["v"]), i) for i, o in enumerate(objects)])
            offsets = np.cumsum([0] + [len(o.mesh["v"]) for o in objects[:-1]])
            self._obj_t = np.concatenate([o.mesh["t"] + off for o, off in zip(objects, offsets)])
            for key in ("sem", "inst", "mat", "surf"):
                setattr(self, f"_obj_{key}", np.concatenate([o.mesh[key] for o in objects]))
        else:
            self._obj_v, self._obj_vidx = np.zeros((0, 3)), np.zeros(0, np.int64)
            self._obj_t = np.zeros((0, 3), np.int64)
            self._obj_sem, self._obj_inst = np.zeros(0, np.uint8), np.zeros(0, np.int32)
            self._obj_mat, self._obj_surf = np.zeros(0, np.uint8), np.zeros(0, np.int32)
        self._n_static = len(static["t"])
        self.tri_semantic = np.concatenate([static["sem"], self._obj_sem])
        self.tri_instance = np.concatenate([static["inst"], self._obj_inst])
        self.tri_material = np.concatenate([static["mat"], self._obj_mat])
        self.tri_surface = np.concatenate([static["surf"], self._obj_surf])
        self._cache: tuple[float, o3d.t.geometry.RaycastingScene] | None = None
        self._things_cache: tuple[float, o3d.t.geometry.RaycastingScene] | None = None

    # -- objects --------------------------------------------------------------------------------------------
    @property
    def num_objects(self) -> int:
        return len(self.objects)

    def boxes_at(self, t: float = 0.0) -> Boxes3D:
        """World-frame 3D boxes of every object at time ``t`` (seconds)."""
        if not self.objects:
            return Boxes3D.empty()
        yaw = np.array([o.yaw for o in self.objects])
        speed = np.array([o.speed for o in self.objects])
        c0 = np.stack([o.center0 for o in self.objects])
        centers = c0 + (speed * t)[:, None] * np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], 1)
        return Boxes3D(centers.astype(np.float32), np.stack([o.size for o in self.objects]).astype(np.float32),
                       _wrap_angle(yaw).astype(np.float32), np.array([o.cls for o in self.objects], np.int64),
                       np.array([o.instance for o in self.objects], np.int32))

    def _object_vertices(self, t: float) -> np.ndarray:
        boxes = self.boxes_at(t)
        c, s = np.cos(boxes.yaw.astype(np.float64)), np.sin(boxes.yaw.astype(np.float64))
        ci, si = c[self._obj_vidx], s[self._obj_vidx]
        v = self._obj_v
        out = np.empty_like(v)
        out[:, 0] = ci * v[:, 0] - si * v[:, 1]
        out[:, 1] = si * v[:, 0] + ci * v[:, 1]
        out[:, 2] = v[:, 2]
        return out + boxes.centers.astype(np.float64)[self._obj_vidx]

    # -- ego path -------------------------------------------------------------------------------------------
    def ego_pose(self, t: float = 0.0) -> np.ndarray:
        """world_T_base of the ego vehicle at time ``t``: the right lane, heading +x, at the configured speed."""
        x0 = -self.cfg.length_m / 2 + self.cfg.ego_start_m
        return pose_matrix(x0 + self.cfg.ego_speed_mps * t, -self.cfg.lane_width_m / 2, 0.0)

    # -- ray casting ----------------------------------------------------------------------------------------
    def raycaster(self, t: float = 0.0) -> o3d.t.geometry.RaycastingScene:
        """Open3D scene of the world at time ``t`` (geometry 0 = static, geometry 1 = objects); cached."""
        if self._cache is not None and self._cache[0] == t:
            return self._cache[1]
        o3d = _open3d()
        rc = o3d.t.geometry.RaycastingScene()
        rc.add_triangles(o3d.core.Tensor(self.static["v"].astype(np.float32)),
                         o3d.core.Tensor(self.static["t"].astype(np.uint32)))
        if self.objects:
            rc.add_triangles(o3d.core.Tensor(self._object_vertices(t).astype(np.float32)),
                             o3d.core.Tensor(self._obj_t.astype(np.uint32)))
        self._cache = (t, rc)
        return rc

    def things_raycaster(self, t: float = 0.0) -> o3d.t.geometry.RaycastingScene:
        """Open3D scene holding only the objects (used to measure how much of each object is occluded)."""
        if self._things_cache is not None and self._things_cache[0] == t:
            return self._things_cache[1]
        o3d = _open3d()
        rc = o3d.t.geometry.RaycastingScene()
        if self.objects:
            rc.add_triangles(o3d.core.Tensor(self._object_vertices(t).astype(np.float32)),
                             o3d.core.Tensor(self._obj_t.astype(np.uint32)))
        self._things_cache = (t, rc)
        return rc

    def cast(self, rays: np.ndarray, t: float = 0.0, things_only: bool = False) -> dict[str, np.ndarray]:
        """Cast (N, 6) float32 rays [origin, unit direction]; returns ``t_hit`` (inf on a miss), ``tri``
        (global triangle index into the ``tri_*`` tables, -1 on a miss) and ``normal`` (unit, facing the ray)."""
        rc = self.things_raycaster(t) if things_only else self.raycaster(t)
        ans = rc.cast_rays(_open3d().core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
        t_hit = ans["t_hit"].numpy()
        gid = ans["geometry_ids"].numpy().astype(np.int64)
        pid = ans["primitive_ids"].numpy().astype(np.int64)
        hit = np.isfinite(t_hit)
        offset = np.array([self._n_static if things_only else 0, self._n_static], np.int64)
        tri = np.where(hit, offset[np.minimum(gid, 1)] + pid, INVALID_TRI)
        normal = ans["primitive_normals"].numpy()
        flip = np.einsum("ij,ij->i", normal, rays[:, 3:6]) > 0
        normal[flip] *= -1
        return {"t_hit": t_hit, "tri": tri, "normal": normal}


# --------------------------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------------------------
def _spaced(rng: np.random.Generator, start: float, end: float, count: int, min_gap: float) -> np.ndarray:
    """``count`` sorted positions in [start, end] at least ``min_gap`` apart (fewer if they do not fit)."""
    span = end - start - (count - 1) * min_gap
    while count > 0 and span < 0:
        count -= 1
        span = end - start - (count - 1) * min_gap
    if count <= 0:
        return np.zeros(0)
    u = np.sort(rng.uniform(0, span, count))
    return start + u + np.arange(count) * min_gap


def make_scene(seed: int, cfg: SceneConfig | None = None) -> Scene:
    """Generate the street scene of ``seed`` (bit-for-bit reproducible)."""
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E]))
    surfaces = _Surfaces()
    st = _MeshBuilder()
    half_len = cfg.length_m / 2
    x_lo, x_hi = -half_len - cfg.margin_m, half_len + cfg.margin_m
    rw = cfg.lane_width_m + cfg.parking_width_m           # road half width
    sw = (rng.uniform(*cfg.sidewalk_width_m), rng.uniform(*cfg.sidewalk_width_m))   # right (y<0), left (y>0)

    # Road, sidewalks (raised, with a curb face), grass beyond.
    s_road = surfaces.new(MAT_RGB[MATERIAL_ID["asphalt"]] * rng.uniform(0.8, 1.2))
    st.add_quad(np.array([[x_lo, -rw, 0], [x_hi, -rw, 0], [x_hi, rw, 0], [x_lo, rw, 0]]), s_road, "asphalt", "road")
    s_walk = surfaces.new(MAT_RGB[MATERIAL_ID["concrete"]] * rng.uniform(0.85, 1.15))
    s_grass = surfaces.new(MAT_RGB[MATERIAL_ID["grass"]] * rng.uniform(0.8, 1.2))
    far = 250.0
    for side, w in ((-1, sw[0]), (1, sw[1])):
        yc = side * (rw + w / 2)
        st.add("box", ((x_lo + x_hi) / 2, yc, (cfg.curb_height_m - 0.2) / 2), (x_hi - x_lo, w, cfg.curb_height_m + 0.2),
               s_walk, "concrete", "sidewalk")
        y0, y1 = side * (rw + w), side * far
        st.add_quad(np.array([[x_lo, y0, 0.0], [x_hi, y0, 0.0], [x_hi, y1, 0.0], [x_lo, y1, 0.0]]), s_grass, "grass",
                    "vegetation")

    # Buildings in rows with gaps (hedges in some gaps).
    facade_palette = np.array([[0.55, 0.5, 0.45], [0.7, 0.66, 0.58], [0.45, 0.28, 0.22], [0.6, 0.6, 0.62],
                               [0.35, 0.35, 0.38], [0.75, 0.72, 0.65], [0.5, 0.42, 0.3]])
    s_hedge = surfaces.new(MAT_RGB[MATERIAL_ID["foliage"]] * rng.uniform(0.8, 1.2))
    for side, w in ((-1, sw[0]), (1, sw[1])):
        x = x_lo + 40.0
        while x < x_hi - 40.0:
            blen = rng.uniform(*cfg.building_length_m)
            if rng.uniform() < cfg.building_gap_prob:
                gap = rng.uniform(3.0, 12.0)
                if rng.uniform() < 0.5:
                    st.add("box", (x + gap / 2, side * (rw + w + 1.5), 0.6), (gap * 0.8, 1.2, 1.2), s_hedge,
                           "foliage", "vegetation")
                x += gap
                continue
            setback = rng.uniform(0.0, 3.0)
            depth = rng.uniform(8.0, 16.0)
            height = rng.uniform(*cfg.building_height_m)
            colour = facade_palette[rng.integers(len(facade_palette))] * rng.uniform(0.8, 1.15)
            s_fac = surfaces.new(np.clip(colour, 0, 1), rng.uniform(-2, 2))
            st.add("box", (x + blen / 2, side * (rw + w + setback + depth / 2), height / 2), (blen, depth, height),
                   s_fac, "facade", "building")
            x += blen

    # Trees and poles on the sidewalks.
    lights = []
    s_bark = surfaces.new(MAT_RGB[MATERIAL_ID["bark"]] * rng.uniform(0.8, 1.2))
    s_metal = surfaces.new(MAT_RGB[MATERIAL_ID["metal"]] * rng.uniform(0.8, 1.1))
    s_lamp = surfaces.new((0.95, 0.92, 0.8), 15.0)
    s_sign = surfaces.new((0.1, 0.25, 0.7))
    for side in (-1, 1):
        x = x_lo + rng.uniform(0, cfg.tree_spacing_m[1])
        while x < x_hi:
            if rng.uniform() < 0.75:
                trunk_h, crown = rng.uniform(1.8, 3.2), rng.uniform(2.5, 5.5)
                tr = rng.uniform(0.12, 0.22)
                s_crown = surfaces.new(MAT_RGB[MATERIAL_ID["foliage"]] * rng.uniform(0.7, 1.3))
                yt = side * (rw + 0.9)
                st.add("cyl", (x, yt, trunk_h / 2), (2 * tr, 2 * tr, trunk_h + 0.3), s_bark, "bark", "vegetation")
                st.add("sph", (x, yt, trunk_h + crown * 0.45), (crown, crown * rng.uniform(0.8, 1.1), crown * 0.9),
                       s_crown, "foliage", "vegetation")
            x += rng.uniform(*cfg.tree_spacing_m)
        x = x_lo + rng.uniform(0, cfg.light_spacing_m)
        while x < x_hi:
            yp, hp = side * (rw + 0.35), rng.uniform(6.5, 8.0)
            st.add("cyl", (x, yp, hp / 2), (0.18, 0.18, hp), s_metal, "metal", "pole")
            st.add("box", (x, yp - side * 0.8, hp - 0.1), (0.12, 1.6, 0.12), s_metal, "metal", "pole")
            st.add("box", (x, yp - side * 1.5, hp - 0.25), (0.5, 0.3, 0.15), s_lamp, "lamp", "pole")
            lights.append((x, yp - side * 1.5, hp - 0.4))
            if rng.uniform() < 0.4:
                xs = x + cfg.light_spacing_m / 2
                st.add("cyl", (xs, side * (rw + 0.3), 1.3), (0.08, 0.08, 2.6), s_metal, "metal", "pole")
                st.add("box", (xs, side * (rw + 0.3), 2.4), (0.04, 0.65, 0.65), s_sign, "metal", "pole")
            x += cfg.light_spacing_m

    # Objects.
    objects: list[_Object] = []
    ego_x0 = -half_len + cfg.ego_start_m
    instance = 1

    def clear(x: float) -> bool:
        return abs(x - ego_x0) > cfg.clear_radius_m

    per100 = cfg.length_m / 100.0
    street = (-half_len - 30.0, half_len + 30.0)
    for side in (-1, 1):                                   # parked cars
        n = rng.poisson(cfg.parked_cars_per_100m * per100 * 1.3)
        for x in _spaced(rng, *street, n, 5.6):
            heat = rng.choice([0.0, rng.uniform(5, 25)], p=[0.7, 0.3])
            b = _car(rng, surfaces, instance, heat)
            y = side * (cfg.lane_width_m + cfg.parking_width_m / 2 + rng.uniform(-0.15, 0.1))
            yaw = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.04)
            objects.append(_finish_object(b, DETECTION_ID["car"], instance, (x, y), yaw, 0.0))
            instance += 1
    n = rng.poisson(cfg.oncoming_cars_per_100m * per100 * 1.6)   # oncoming traffic (left lane, heading -x)
    for x in _spaced(rng, street[0], street[1] + 120.0, n, 12.0):
        b = _car(rng, surfaces, instance, rng.uniform(25, 45))
        objects.append(_finish_object(b, DETECTION_ID["car"], instance, (x, cfg.lane_width_m / 2 + rng.normal(0, 0.1)),
                                      np.pi + rng.normal(0, 0.02), rng.uniform(6.0, 12.0)))
        instance += 1
    for k in range(cfg.lead_cars):                          # ego lane: ahead / behind, at the ego speed
        dx = rng.uniform(14.0, 40.0) * (1 if k % 2 == 0 else -1) + np.sign(0.5 - k % 2) * 30.0 * (k // 2)
        b = _car(rng, surfaces, instance, rng.uniform(25, 45))
        objects.append(_finish_object(b, DETECTION_ID["car"], instance, (ego_x0 + dx, -cfg.lane_width_m / 2),
                                      rng.normal(0, 0.01), cfg.ego_speed_mps))
        instance += 1
    for side, w in ((-1, sw[0]), (1, sw[1])):             # pedestrians on the sidewalks
        n = rng.poisson(cfg.pedestrians_per_100m * per100 * 1.3 / 2)
        for x in _spaced(rng, *street, n, 1.0):
            walking = rng.uniform() < 0.75
            b = _pedestrian(rng, surfaces, instance, walking)
            y = side * (rw + rng.uniform(1.3, max(1.35, w - 0.4)))
            yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.1) if walking else rng.uniform(-np.pi, np.pi)
            speed = rng.uniform(0.8, 1.6) if walking else 0.0
            objects.append(_finish_object(b, DETECTION_ID["pedestrian"], instance, (x, y), yaw, speed))
            instance += 1
    n = rng.poisson(cfg.cyclists_per_100m * per100 * 1.3)   # cyclists at the outer edge of the driving lanes
    for x in _spaced(rng, *street, n, 8.0):
        side = rng.choice([-1, 1])
        b = _cyclist(rng, surfaces, instance)
        y = side * (cfg.lane_width_m - 0.5)
        if side < 0 and not clear(x):
            continue
        objects.append(_finish_object(b, DETECTION_ID["cyclist"], instance, (x, y),
                                      (0.0 if side < 0 else np.pi) + rng.normal(0, 0.03), rng.uniform(3.5, 6.5)))
        instance += 1
    markings = {"lane_width_m": cfg.lane_width_m, "road_half_width_m": rw}
    return Scene(cfg, int(seed), st.arrays(), objects, surfaces, np.asarray(lights, np.float64).reshape(-1, 3),
                 markings)


_CLASS_MATERIAL = ("paint", "cloth", "bike")


def make_box_scene(boxes: Boxes3D, ground: bool = True, ground_half_size_m: float = 300.0) -> Scene:
    """A scene of plain cuboids (one object per box, its class's material) on an optional flat road at z = 0:
    exact, hand-checkable geometry for tests and sensor studies. Instance ids are ``boxes.ids`` when set
    (non-zero), else 1..M."""
    surfaces = _Surfaces()
    st = _MeshBuilder()
    if ground:
        g = ground_half_size_m
        s_road = surfaces.new(MAT_RGB[MATERIAL_ID["asphalt"]])
        st.add_quad(np.array([[-g, -g, 0.0], [g, -g, 0.0], [g, g, 0.0], [-g, g, 0.0]]), s_road, "asphalt", "road")
    ids = boxes.ids if len(boxes) and np.all(boxes.ids > 0) else np.arange(1, len(boxes) + 1, dtype=np.int32)
    objects = []
    for i in range(len(boxes)):
        cls = int(boxes.classes[i])
        b = _MeshBuilder()
        surf = surfaces.new((0.6, 0.2, 0.2), 10.0)
        sem = ("car", "pedestrian", "cyclist")[cls]
        b.add("box", (0, 0, 0), boxes.sizes[i].astype(np.float64), surf, _CLASS_MATERIAL[cls], sem, int(ids[i]))
        mesh = b.arrays()
        objects.append(_Object(cls, int(ids[i]), mesh, boxes.sizes[i].astype(np.float64),
                               boxes.centers[i].astype(np.float64), float(boxes.yaw[i]), 0.0))
    order = np.argsort([o.instance for o in objects], kind="stable")
    objects = [objects[k] for k in order]
    return Scene(SceneConfig(), 0, st.arrays(), objects, surfaces, np.zeros((0, 3)),
                 {"lane_width_m": 3.4, "road_half_width_m": 5.7})
