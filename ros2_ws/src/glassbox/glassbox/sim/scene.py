"""Procedural street scenes for ray casting: static geometry, moving objects and exact 3D ground truth.

World frame: x along the street, y to the left, z up (metres); the ground (road surface) is z = 0. A scene is a
straight street (its layout: ``glassbox.sim.street``) made of labelled triangles (``glassbox.sim.meshes``), so
every ray that hits the scene is labelled exactly.

Objects move at constant velocity along their heading; ``Scene.boxes_at(t)`` gives their 3D boxes, which enclose
the object meshes exactly. Ray casting uses Open3D ``RaycastingScene``s: one of the static street with the parked
objects (speed 0), built once per scene, and one of the moving objects at time ``t``, rebuilt for each new ``t``
(it is small); a ray's hit is the nearer of the two. Callers that know which rays can reach a moving object (from
the projected boxes of ``Scene.moving_boxes_at(t)``) pass their indices, and only those are cast against the
moving objects. A scene and everything rendered from it depend only on the seed and the configuration.
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
        # Object meshes concatenated, with the owning object per vertex, for fast per-time transforms.
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
        self.moving = np.array([o.speed != 0 for o in objects], bool)      # per object
        tri_moving = self.moving[self._obj_vidx[self._obj_t[:, 0]]] if objects else np.zeros(0, bool)
        self._parked_tri = self._n_static + np.nonzero(~tri_moving)[0]     # global triangle ids, in mesh order
        self._moving_tri = self._n_static + np.nonzero(tri_moving)[0]
        self._static_rc: o3d.t.geometry.RaycastingScene | None = None      # street + parked objects
        self._parked_rc: o3d.t.geometry.RaycastingScene | None = None      # parked objects alone
        self._moving_cache: tuple[float, o3d.t.geometry.RaycastingScene | None] | None = None

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

    def moving_boxes_at(self, t: float = 0.0) -> Boxes3D:
        """The boxes of the moving objects only (those ray casts of moving objects must consider)."""
        return self.boxes_at(t).subset(self.moving) if self.objects else Boxes3D.empty()

    def _object_mesh(self, t: float, moving: bool) -> tuple[np.ndarray, np.ndarray]:
        """World vertices (V, 3) float64 at time ``t`` and triangles (T, 3) of the moving or the parked objects."""
        keep = self.moving == moving
        vsel = keep[self._obj_vidx]
        boxes = self.boxes_at(t)
        c, s = np.cos(boxes.yaw.astype(np.float64)), np.sin(boxes.yaw.astype(np.float64))
        vidx = self._obj_vidx[vsel]
        ci, si = c[vidx], s[vidx]
        v = self._obj_v[vsel]
        out = np.empty_like(v)
        out[:, 0] = ci * v[:, 0] - si * v[:, 1]
        out[:, 1] = si * v[:, 0] + ci * v[:, 1]
        out[:, 2] = v[:, 2]
        out += boxes.centers.astype(np.float64)[vidx]
        new_index = np.cumsum(vsel) - 1                  # old vertex index -> index among the kept vertices
        tri = self._obj_t[self._moving_tri - self._n_static] if moving else self._obj_t[
            self._parked_tri - self._n_static]
        return out, new_index[tri]

    # -- ego path -------------------------------------------------------------------------------------------
    def ego_pose(self, t: float = 0.0) -> np.ndarray:
        """world_T_base of the ego vehicle at time ``t``: the right lane, heading +x, at the configured speed."""
        x0 = -self.cfg.length_m / 2 + self.cfg.ego_start_m
        return pose_matrix(x0 + self.cfg.ego_speed_mps * t, -self.cfg.lane_width_m / 2, 0.0)

    # -- ray casting ----------------------------------------------------------------------------------------
    def _raycasters(self, t: float, things_only: bool
                    ) -> tuple[o3d.t.geometry.RaycastingScene, np.ndarray, o3d.t.geometry.RaycastingScene | None]:
        """The scene of what does not move (street and parked objects, or parked objects alone with
        ``things_only``), the global triangle ids of its geometries (geometry 0 first), and the scene of the
        moving objects at ``t`` (None when nothing moves). The first two are built once, the last once per ``t``."""
        if things_only:
            if self._parked_rc is None:
                self._parked_rc = _raycaster([self._object_mesh(0.0, moving=False)])
            first, tri_ids = self._parked_rc, self._parked_tri
        else:
            if self._static_rc is None:
                self._static_rc = _raycaster([(self.static["v"], self.static["t"]),
                                              self._object_mesh(0.0, moving=False)])
            first, tri_ids = self._static_rc, np.concatenate([np.arange(self._n_static), self._parked_tri])
        if self._moving_cache is None or self._moving_cache[0] != t:
            self._moving_cache = (t, _raycaster([self._object_mesh(t, moving=True)]) if self.moving.any() else None)
        return first, tri_ids, self._moving_cache[1]

    def occluded(self, rays: np.ndarray, t: float = 0.0, moving: np.ndarray | None = None) -> np.ndarray:
        """(N,) bool: each (N, 6) ray [origin, direction] hits the world at time ``t`` (shadow rays). ``moving``:
        the indices of the rays that may hit a moving object (None: every ray)."""
        first, _, second = self._raycasters(t, things_only=False)
        rays = np.ascontiguousarray(rays, dtype=np.float32)
        out = first.test_occlusions(_tensor(rays)).numpy()
        if second is not None:
            check = np.arange(len(rays)) if moving is None else np.asarray(moving)
            check = check[~out[check]]
            if len(check):
                sub = rays[check]                        # kept referenced: the tensor shares its memory
                out[check] = second.test_occlusions(_tensor(sub)).numpy()
        return out

    def cast(self, rays: np.ndarray, t: float = 0.0, things_only: bool = False,
             moving: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """Cast (N, 6) float32 rays [origin, unit direction]; returns ``t_hit`` (inf on a miss), ``tri``
        (global triangle index into the ``tri_*`` tables, -1 on a miss) and ``normal`` (unit, facing the ray).
        ``things_only``: against the objects alone (to measure how much of each object is occluded); ``moving``:
        the indices of the rays that may hit a moving object (None: every ray)."""
        first, tri_ids, second = self._raycasters(t, things_only)
        rays = np.ascontiguousarray(rays, dtype=np.float32)
        ans = first.cast_rays(_tensor(rays))
        t_hit = ans["t_hit"].numpy()
        gid = ans["geometry_ids"].numpy()
        pid = ans["primitive_ids"].numpy()
        normal = ans["primitive_normals"].numpy()
        hit = np.isfinite(t_hit)
        tri = np.full(len(rays), INVALID_TRI, np.int64)
        start = np.array([0, 0 if things_only else self._n_static], np.int64)     # of geometries 0 and 1
        tri[hit] = tri_ids[start[np.minimum(gid[hit], 1)] + pid[hit]]
        if second is not None:
            sel = np.arange(len(rays)) if moving is None else np.asarray(moving)
            if len(sel):
                sub = rays[sel]                          # kept referenced: the tensor shares its memory
                ans2 = second.cast_rays(_tensor(sub))
                t2 = ans2["t_hit"].numpy()
                nearer = t2 < t_hit[sel]
                dst = sel[nearer]
                t_hit[dst] = t2[nearer]
                tri[dst] = self._moving_tri[ans2["primitive_ids"].numpy()[nearer]]
                normal[dst] = ans2["primitive_normals"].numpy()[nearer]
        flip = np.einsum("ij,ij->i", normal, rays[:, 3:6]) > 0
        normal[flip] *= -1
        return {"t_hit": t_hit, "tri": tri, "normal": normal}


def _tensor(a: np.ndarray):
    """An Open3D tensor sharing the memory of the contiguous array ``a`` (no copy)."""
    return load_open3d().core.Tensor.from_numpy(a)


def _raycaster(meshes: list[tuple[np.ndarray, np.ndarray]]) -> o3d.t.geometry.RaycastingScene:
    """An Open3D scene of the (vertices, triangles) meshes, geometry ids in list order."""
    o3d = load_open3d()
    rc = o3d.t.geometry.RaycastingScene()
    for v, f in meshes:
        rc.add_triangles(o3d.core.Tensor(np.ascontiguousarray(v, np.float32)),
                         o3d.core.Tensor(np.ascontiguousarray(f, np.uint32)))
    return rc


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
