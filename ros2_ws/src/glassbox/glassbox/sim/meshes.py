"""Triangle meshes of the synthetic world: unit primitives, a builder that labels every triangle, the surface
table, and the parametric meshes of the detection classes (cars, pedestrians, cyclists).

Every triangle carries a semantic id, an instance id (0 for "stuff"), a material and a surface id (its own
colour and temperature offset), so every ray that hits the scene is labelled exactly. Object meshes are centred
on their exact bounding box, which is the object's 3D box.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.classes import SEMANTIC_ID
from glassbox.sim.materials import MATERIAL_ID

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
# Rotation taking the cylinder axis z onto y (wheel axles).
_Z_TO_Y = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], np.float64)
_QUAD_T = np.array([[0, 1, 2], [0, 2, 3]], np.int64)


class MeshBuilder:
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
        """A unit primitive (``box``, ``cyl``, ``sph``) scaled by ``size``, rotated by ``rot``, moved to ``center``."""
        v0, t0 = _PRIMS[prim]
        v = v0 * np.asarray(size, np.float64)
        if rot is not None:
            v = v @ rot.T
        self._append(v + np.asarray(center, np.float64), t0, surface, material, semantic, instance)

    def add_quad(self, corners: np.ndarray, surface: int, material: str, semantic: str) -> None:
        """A planar quad (4, 3), corners in order, as two triangles of "stuff" (instance 0)."""
        self._append(np.asarray(corners, np.float64), _QUAD_T, surface, material, semantic, 0)

    def _append(self, v: np.ndarray, t: np.ndarray, surface: int, material: str, semantic: str,
                instance: int) -> None:
        n = len(t)
        self.v.append(v)
        self.t.append(t + self.nv)
        self.sem.append(np.full(n, SEMANTIC_ID[semantic], np.uint8))
        self.inst.append(np.full(n, instance, np.int32))
        self.mat.append(np.full(n, MATERIAL_ID[material], np.uint8))
        self.surf.append(np.full(n, surface, np.int32))
        self.nv += len(v)

    def arrays(self) -> dict[str, np.ndarray]:
        if not self.v:
            return {"v": np.zeros((0, 3)), "t": np.zeros((0, 3), np.int64), "sem": np.zeros(0, np.uint8),
                    "inst": np.zeros(0, np.int32), "mat": np.zeros(0, np.uint8), "surf": np.zeros(0, np.int32)}
        return {"v": np.concatenate(self.v), "t": np.concatenate(self.t), "sem": np.concatenate(self.sem),
                "inst": np.concatenate(self.inst), "mat": np.concatenate(self.mat),
                "surf": np.concatenate(self.surf)}


class SurfaceTable:
    """One colour (linear RGB) and one temperature offset (deg C) per surface id."""

    def __init__(self) -> None:
        self.rgb: list[tuple[float, float, float]] = [(0.0, 0.0, 0.0)]
        self.temp: list[float] = [0.0]

    def new(self, rgb, temp_offset_c: float = 0.0) -> int:
        self.rgb.append(tuple(float(c) for c in rgb))
        self.temp.append(float(temp_offset_c))
        return len(self.rgb) - 1


# --------------------------------------------------------------------------------------------------------------
# Objects
# --------------------------------------------------------------------------------------------------------------
@dataclass
class SceneObject:
    """One object of a detection class: its mesh in its own box frame and its constant-velocity motion."""

    cls: int
    instance: int
    mesh: dict[str, np.ndarray]           # local vertices (box-centred), triangles and per-triangle ids
    size: np.ndarray                      # (3,) l, w, h
    center0: np.ndarray                   # (3,) world, at t = 0
    yaw: float
    speed: float


def finish_object(b: MeshBuilder, cls: int, instance: int, center_xy, yaw: float, speed: float) -> SceneObject:
    """Centre the part meshes on their exact bounding box, which becomes the object's 3D box."""
    mesh = b.arrays()
    lo, hi = mesh["v"].min(0), mesh["v"].max(0)
    mid = (lo + hi) / 2
    mesh["v"] = mesh["v"] - mid
    size = hi - lo
    center = np.array([center_xy[0], center_xy[1], size[2] / 2])
    return SceneObject(cls, instance, mesh, size, center, float(yaw), float(speed))


def car_mesh(rng: np.random.Generator, surfaces: SurfaceTable, instance: int, engine_heat_c: float) -> MeshBuilder:
    b = MeshBuilder()
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


def _person(b: MeshBuilder, rng: np.random.Generator, surfaces: SurfaceTable, instance: int, sem: str,
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


def pedestrian_mesh(rng: np.random.Generator, surfaces: SurfaceTable, instance: int, walking: bool) -> MeshBuilder:
    b = MeshBuilder()
    stride = rng.uniform(0.25, 0.7) if walking else rng.uniform(0.0, 0.15)
    _person(b, rng, surfaces, instance, "pedestrian", (0, 0, 0), rng.uniform(1.5, 1.95), stride, seated=False)
    return b


def cyclist_mesh(rng: np.random.Generator, surfaces: SurfaceTable, instance: int) -> MeshBuilder:
    b = MeshBuilder()
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


