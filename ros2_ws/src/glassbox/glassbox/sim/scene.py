"""Procedural street scenes for ray casting: static geometry, moving objects and exact 3D ground truth.

World frame: x along the street, y to the left, z up (metres); the ground (road surface) is z = 0. A scene is a
straight street (its layout: ``glassbox.sim.street``) made of labelled triangles (``glassbox.sim.meshes``), so
every ray that hits the scene is labelled exactly.

Objects move at constant velocity along their heading: ``Scene.raycaster(t)`` builds an Open3D
``RaycastingScene`` of the world at time ``t`` (static part plus objects moved to ``t``), and
``Scene.boxes_at(t)`` gives their 3D boxes, which enclose the object meshes exactly. A scene and everything
rendered from it depend only on the seed and the configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from glassbox.sim.geometry import Boxes3D, SceneError, pose_matrix, wrap_angle
from glassbox.sim.materials import MAT_RGB, MATERIAL_ID
from glassbox.sim.meshes import MeshBuilder, SceneObject, SurfaceTable
from glassbox.sim.street import add_buildings, add_ground, add_street_furniture, place_objects, street_frame

if TYPE_CHECKING:
    import open3d as o3d

# Boxes3D, SceneError and pose_matrix live in glassbox.sim.geometry and are importable from here as well.
__all__ = ["Boxes3D", "Scene", "SceneConfig", "SceneError", "load_open3d", "make_box_scene", "make_rays",
           "make_scene", "pose_matrix"]

INVALID_TRI = -1


def load_open3d():
    """Open3D, imported on first use (boxes and poses work without it, e.g. when only reading datasets)."""
    try:
        import open3d
    except ImportError as exc:
        raise SceneError(f"ray casting needs open3d (pip install open3d): {exc}") from None
    return open3d


def make_rays(origin: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """(N, 6) float32 rays [origin, direction] for Open3D; either may be one (3,) vector shared by every ray."""
    n = np.broadcast_shapes(np.shape(origin), np.shape(directions))[0]
    rays = np.empty((n, 6), np.float32)
    rays[:, :3] = origin
    rays[:, 3:] = directions
    return rays


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


class Scene:
    """A generated street. Build with :func:`make_scene`."""

    def __init__(self, cfg: SceneConfig, seed: int, static: dict[str, np.ndarray], objects: list[SceneObject],
                 surfaces: SurfaceTable, lights: np.ndarray, markings: dict[str, float]) -> None:
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
    def boxes_at(self, t: float = 0.0) -> Boxes3D:
        """World-frame 3D boxes of every object at time ``t`` (seconds)."""
        if not self.objects:
            return Boxes3D.empty()
        yaw = np.array([o.yaw for o in self.objects])
        speed = np.array([o.speed for o in self.objects])
        c0 = np.stack([o.center0 for o in self.objects])
        centers = c0 + (speed * t)[:, None] * np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], 1)
        return Boxes3D(centers.astype(np.float32), np.stack([o.size for o in self.objects]).astype(np.float32),
                       wrap_angle(yaw).astype(np.float32), np.array([o.cls for o in self.objects], np.int64),
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
        if self._cache is None or self._cache[0] != t:
            self._cache = (t, self._build_raycaster(t, with_static=True))
        return self._cache[1]

    def things_raycaster(self, t: float = 0.0) -> o3d.t.geometry.RaycastingScene:
        """Open3D scene holding only the objects (used to measure how much of each object is occluded)."""
        if self._things_cache is None or self._things_cache[0] != t:
            self._things_cache = (t, self._build_raycaster(t, with_static=False))
        return self._things_cache[1]

    def _build_raycaster(self, t: float, with_static: bool) -> o3d.t.geometry.RaycastingScene:
        o3d = load_open3d()
        rc = o3d.t.geometry.RaycastingScene()
        if with_static:
            rc.add_triangles(o3d.core.Tensor(self.static["v"].astype(np.float32)),
                             o3d.core.Tensor(self.static["t"].astype(np.uint32)))
        if self.objects:
            rc.add_triangles(o3d.core.Tensor(self._object_vertices(t).astype(np.float32)),
                             o3d.core.Tensor(self._obj_t.astype(np.uint32)))
        return rc

    def occluded(self, rays: np.ndarray, t: float = 0.0) -> np.ndarray:
        """(N,) bool: each (N, 6) ray [origin, direction] hits the world at time ``t`` (shadow rays)."""
        tensor = load_open3d().core.Tensor(np.ascontiguousarray(rays, dtype=np.float32))
        return self.raycaster(t).test_occlusions(tensor).numpy()

    def cast(self, rays: np.ndarray, t: float = 0.0, things_only: bool = False) -> dict[str, np.ndarray]:
        """Cast (N, 6) float32 rays [origin, unit direction]; returns ``t_hit`` (inf on a miss), ``tri``
        (global triangle index into the ``tri_*`` tables, -1 on a miss) and ``normal`` (unit, facing the ray)."""
        rc = self.things_raycaster(t) if things_only else self.raycaster(t)
        ans = rc.cast_rays(load_open3d().core.Tensor(np.ascontiguousarray(rays, dtype=np.float32)))
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


def make_scene(seed: int, cfg: SceneConfig | None = None) -> Scene:
    """Generate the street scene of ``seed`` (bit-for-bit reproducible)."""
    cfg = cfg or SceneConfig()
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5CE7E]))
    surfaces = SurfaceTable()
    static = MeshBuilder()
    frame = street_frame(cfg, rng)
    add_ground(static, surfaces, cfg, frame, rng)
    add_buildings(static, surfaces, cfg, frame, rng)
    lights = add_street_furniture(static, surfaces, cfg, frame, rng)
    objects = place_objects(cfg, frame, surfaces, rng)
    markings = {"lane_width_m": cfg.lane_width_m, "road_half_width_m": frame.road_half_width_m}
    return Scene(cfg, int(seed), static.arrays(), objects, surfaces, lights, markings)


_CLASS_MATERIAL = ("paint", "cloth", "bike")


def make_box_scene(boxes: Boxes3D, ground: bool = True, ground_half_size_m: float = 300.0) -> Scene:
    """A scene of plain cuboids (one object per box, its class's material) on an optional flat road at z = 0:
    exact, hand-checkable geometry for tests and sensor studies. Instance ids are ``boxes.ids`` when set
    (non-zero), else 1..M."""
    surfaces = SurfaceTable()
    st = MeshBuilder()
    if ground:
        g = ground_half_size_m
        s_road = surfaces.new(MAT_RGB[MATERIAL_ID["asphalt"]])
        st.add_quad(np.array([[-g, -g, 0.0], [g, -g, 0.0], [g, g, 0.0], [-g, g, 0.0]]), s_road, "asphalt", "road")
    ids = boxes.ids if len(boxes) and np.all(boxes.ids > 0) else np.arange(1, len(boxes) + 1, dtype=np.int32)
    objects = []
    for i in range(len(boxes)):
        cls = int(boxes.classes[i])
        b = MeshBuilder()
        surf = surfaces.new((0.6, 0.2, 0.2), 10.0)
        sem = ("car", "pedestrian", "cyclist")[cls]
        b.add("box", (0, 0, 0), boxes.sizes[i].astype(np.float64), surf, _CLASS_MATERIAL[cls], sem, int(ids[i]))
        mesh = b.arrays()
        objects.append(SceneObject(cls, int(ids[i]), mesh, boxes.sizes[i].astype(np.float64),
                                   boxes.centers[i].astype(np.float64), float(boxes.yaw[i]), 0.0))
    order = np.argsort([o.instance for o in objects], kind="stable")
    objects = [objects[k] for k in order]
    return Scene(SceneConfig(), 0, st.arrays(), objects, surfaces, np.zeros((0, 3)),
                 {"lane_width_m": 3.4, "road_half_width_m": 5.7})
