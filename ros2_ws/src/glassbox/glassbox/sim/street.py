"""The layout of a procedural street: ground, buildings, street furniture and the objects of the detection classes.

A straight street along x: a road with two driving lanes and two parking strips, raised sidewalks with a curb,
grass beyond, rows of buildings with gaps (hedges in some), trees, street lights and sign poles on the sidewalks;
parked and oncoming cars, cars in the ego lane, pedestrians on the sidewalks and cyclists at the lane edges.

Every function draws from the one generator it is given, in a fixed order (``make_scene`` calls them in turn),
so a scene depends only on its seed and configuration.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from glassbox.classes import DETECTION_ID
from glassbox.sim.materials import MAT_RGB, MATERIAL_ID
from glassbox.sim.meshes import (MeshBuilder, SceneObject, SurfaceTable, car_mesh, cyclist_mesh, finish_object,
                                 pedestrian_mesh)

if TYPE_CHECKING:
    from glassbox.sim.scene import SceneConfig

_FACADE_PALETTE = np.array([[0.55, 0.5, 0.45], [0.7, 0.66, 0.58], [0.45, 0.28, 0.22], [0.6, 0.6, 0.62],
                            [0.35, 0.35, 0.38], [0.75, 0.72, 0.65], [0.5, 0.42, 0.3]])
_GRASS_REACH_M = 250.0                    # the grass extends this far from the street axis


@dataclass(frozen=True)
class StreetFrame:
    """Cross-section of one street: x range of the ground, road half width and the two sidewalk widths."""

    x_lo: float
    x_hi: float
    road_half_width_m: float
    sidewalk_m: tuple[float, float]       # right (y < 0), left (y > 0)

    def sides(self) -> tuple[tuple[int, float], tuple[int, float]]:
        """(side sign, sidewalk width) for the right and the left side."""
        return (-1, self.sidewalk_m[0]), (1, self.sidewalk_m[1])


def _material_surface(surfaces: SurfaceTable, rng: np.random.Generator, material: str, lo: float, hi: float) -> int:
    """A surface of ``material``'s colour scaled by a random factor in [lo, hi)."""
    return surfaces.new(MAT_RGB[MATERIAL_ID[material]] * rng.uniform(lo, hi))


def street_frame(cfg: SceneConfig, rng: np.random.Generator) -> StreetFrame:
    half_len = cfg.length_m / 2
    sw = (rng.uniform(*cfg.sidewalk_width_m), rng.uniform(*cfg.sidewalk_width_m))
    return StreetFrame(-half_len - cfg.margin_m, half_len + cfg.margin_m, cfg.lane_width_m + cfg.parking_width_m,
                       sw)


def add_ground(st: MeshBuilder, surfaces: SurfaceTable, cfg: SceneConfig, fr: StreetFrame,
               rng: np.random.Generator) -> None:
    """Road, sidewalks (raised, with a curb face) and grass beyond."""
    x_lo, x_hi, rw = fr.x_lo, fr.x_hi, fr.road_half_width_m
    s_road = _material_surface(surfaces, rng, "asphalt", 0.8, 1.2)
    st.add_quad(np.array([[x_lo, -rw, 0], [x_hi, -rw, 0], [x_hi, rw, 0], [x_lo, rw, 0]]), s_road, "asphalt", "road")
    s_walk = _material_surface(surfaces, rng, "concrete", 0.85, 1.15)
    s_grass = _material_surface(surfaces, rng, "grass", 0.8, 1.2)
    for side, w in fr.sides():
        yc = side * (rw + w / 2)
        st.add("box", ((x_lo + x_hi) / 2, yc, (cfg.curb_height_m - 0.2) / 2), (x_hi - x_lo, w, cfg.curb_height_m + 0.2),
               s_walk, "concrete", "sidewalk")
        y0, y1 = side * (rw + w), side * _GRASS_REACH_M
        st.add_quad(np.array([[x_lo, y0, 0.0], [x_hi, y0, 0.0], [x_hi, y1, 0.0], [x_lo, y1, 0.0]]), s_grass, "grass",
                    "vegetation")


def add_buildings(st: MeshBuilder, surfaces: SurfaceTable, cfg: SceneConfig, fr: StreetFrame,
                  rng: np.random.Generator) -> None:
    """Rows of buildings on both sides, with gaps (hedges in some gaps)."""
    rw = fr.road_half_width_m
    s_hedge = _material_surface(surfaces, rng, "foliage", 0.8, 1.2)
    for side, w in fr.sides():
        x = fr.x_lo + 40.0
        while x < fr.x_hi - 40.0:
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
            colour = _FACADE_PALETTE[rng.integers(len(_FACADE_PALETTE))] * rng.uniform(0.8, 1.15)
            s_fac = surfaces.new(np.clip(colour, 0, 1), rng.uniform(-2, 2))
            st.add("box", (x + blen / 2, side * (rw + w + setback + depth / 2), height / 2), (blen, depth, height),
                   s_fac, "facade", "building")
            x += blen


def add_street_furniture(st: MeshBuilder, surfaces: SurfaceTable, cfg: SceneConfig, fr: StreetFrame,
                         rng: np.random.Generator) -> np.ndarray:
    """Trees, street lights and sign poles on both sidewalks; returns the lamp positions (L, 3)."""
    rw = fr.road_half_width_m
    lights: list[tuple[float, float, float]] = []
    s_bark = _material_surface(surfaces, rng, "bark", 0.8, 1.2)
    s_metal = _material_surface(surfaces, rng, "metal", 0.8, 1.1)
    s_lamp = surfaces.new((0.95, 0.92, 0.8), 15.0)
    s_sign = surfaces.new((0.1, 0.25, 0.7))
    for side in (-1, 1):
        x = fr.x_lo + rng.uniform(0, cfg.tree_spacing_m[1])
        while x < fr.x_hi:
            if rng.uniform() < 0.75:
                trunk_h, crown = rng.uniform(1.8, 3.2), rng.uniform(2.5, 5.5)
                tr = rng.uniform(0.12, 0.22)
                s_crown = _material_surface(surfaces, rng, "foliage", 0.7, 1.3)
                yt = side * (rw + 0.9)
                st.add("cyl", (x, yt, trunk_h / 2), (2 * tr, 2 * tr, trunk_h + 0.3), s_bark, "bark", "vegetation")
                st.add("sph", (x, yt, trunk_h + crown * 0.45), (crown, crown * rng.uniform(0.8, 1.1), crown * 0.9),
                       s_crown, "foliage", "vegetation")
            x += rng.uniform(*cfg.tree_spacing_m)
        x = fr.x_lo + rng.uniform(0, cfg.light_spacing_m)
        while x < fr.x_hi:
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
    return np.asarray(lights, np.float64).reshape(-1, 3)


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


class _Traffic:
    """Places the objects one kind after another; instance ids count up from 1 in placement order."""

    def __init__(self, cfg: SceneConfig, fr: StreetFrame, surfaces: SurfaceTable, rng: np.random.Generator) -> None:
        self.cfg, self.fr, self.surfaces, self.rng = cfg, fr, surfaces, rng
        half_len = cfg.length_m / 2
        self.ego_x0 = -half_len + cfg.ego_start_m
        self.per100 = cfg.length_m / 100.0
        self.street = (-half_len - 30.0, half_len + 30.0)
        self.objects: list[SceneObject] = []

    def _place(self, mesh: MeshBuilder, cls: str, xy, yaw: float, speed: float) -> None:
        instance = len(self.objects) + 1
        self.objects.append(finish_object(mesh, DETECTION_ID[cls], instance, xy, yaw, speed))

    def parked_cars(self) -> None:
        cfg, rng = self.cfg, self.rng
        for side in (-1, 1):
            n = rng.poisson(cfg.parked_cars_per_100m * self.per100 * 1.3)
            for x in _spaced(rng, *self.street, n, 5.6):
                heat = rng.choice([0.0, rng.uniform(5, 25)], p=[0.7, 0.3])
                b = car_mesh(rng, self.surfaces, len(self.objects) + 1, heat)
                y = side * (cfg.lane_width_m + cfg.parking_width_m / 2 + rng.uniform(-0.15, 0.1))
                yaw = (0.0 if side < 0 else np.pi) + rng.normal(0, 0.04)
                self._place(b, "car", (x, y), yaw, 0.0)

    def oncoming_cars(self) -> None:
        """Oncoming traffic in the left lane, heading -x."""
        cfg, rng = self.cfg, self.rng
        n = rng.poisson(cfg.oncoming_cars_per_100m * self.per100 * 1.6)
        for x in _spaced(rng, self.street[0], self.street[1] + 120.0, n, 12.0):
            b = car_mesh(rng, self.surfaces, len(self.objects) + 1, rng.uniform(25, 45))
            self._place(b, "car", (x, cfg.lane_width_m / 2 + rng.normal(0, 0.1)), np.pi + rng.normal(0, 0.02),
                        rng.uniform(6.0, 12.0))

    def lead_cars(self) -> None:
        """Cars in the ego lane, ahead and behind, at the ego speed."""
        cfg, rng = self.cfg, self.rng
        for k in range(cfg.lead_cars):
            dx = rng.uniform(14.0, 40.0) * (1 if k % 2 == 0 else -1) + np.sign(0.5 - k % 2) * 30.0 * (k // 2)
            b = car_mesh(rng, self.surfaces, len(self.objects) + 1, rng.uniform(25, 45))
            self._place(b, "car", (self.ego_x0 + dx, -cfg.lane_width_m / 2), rng.normal(0, 0.01), cfg.ego_speed_mps)

    def pedestrians(self) -> None:
        """Pedestrians on the sidewalks, walking along the street or standing."""
        cfg, rng, rw = self.cfg, self.rng, self.fr.road_half_width_m
        for side, w in self.fr.sides():
            n = rng.poisson(cfg.pedestrians_per_100m * self.per100 * 1.3 / 2)
            for x in _spaced(rng, *self.street, n, 1.0):
                walking = rng.uniform() < 0.75
                b = pedestrian_mesh(rng, self.surfaces, len(self.objects) + 1, walking)
                y = side * (rw + rng.uniform(1.3, max(1.35, w - 0.4)))
                yaw = rng.choice([0.0, np.pi]) + rng.normal(0, 0.1) if walking else rng.uniform(-np.pi, np.pi)
                speed = rng.uniform(0.8, 1.6) if walking else 0.0
                self._place(b, "pedestrian", (x, y), yaw, speed)

    def cyclists(self) -> None:
        """Cyclists at the outer edge of the driving lanes (none near the ego start in the ego lane)."""
        cfg, rng = self.cfg, self.rng
        n = rng.poisson(cfg.cyclists_per_100m * self.per100 * 1.3)
        for x in _spaced(rng, *self.street, n, 8.0):
            side = rng.choice([-1, 1])
            b = cyclist_mesh(rng, self.surfaces, len(self.objects) + 1)
            if side < 0 and abs(x - self.ego_x0) <= cfg.clear_radius_m:
                continue
            self._place(b, "cyclist", (x, side * (cfg.lane_width_m - 0.5)),
                        (0.0 if side < 0 else np.pi) + rng.normal(0, 0.03), rng.uniform(3.5, 6.5))


def place_objects(cfg: SceneConfig, fr: StreetFrame, surfaces: SurfaceTable,
                  rng: np.random.Generator) -> list[SceneObject]:
    """Every object of the street: parked, oncoming and lead cars, pedestrians, cyclists (in that order)."""
    traffic = _Traffic(cfg, fr, surfaces, rng)
    traffic.parked_cars()
    traffic.oncoming_cars()
    traffic.lead_cars()
    traffic.pedestrians()
    traffic.cyclists()
    return traffic.objects
