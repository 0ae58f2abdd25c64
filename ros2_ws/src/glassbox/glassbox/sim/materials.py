"""Surface materials of the synthetic world: colour, LiDAR reflectivity and thermal behaviour per material.

Colours are linear RGB albedos in [0, 1]. ``reflectivity`` scales the LiDAR return intensity (before the
incidence-angle term). Thermal: a surface's temperature is ``temp_night_c`` at night and ``temp_day_c`` in full
daylight (interpolated by the lighting's daylight level), plus a per-surface offset (engines, people) and a
solar term for sun-facing surfaces; ``emissivity`` mixes emitted and reflected (sky) radiation.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Material:
    name: str
    rgb: tuple[float, float, float]
    reflectivity: float
    emissivity: float
    temp_day_c: float
    temp_night_c: float
    specular: float = 0.0


MATERIALS: tuple[Material, ...] = (
    Material("none", (0.0, 0.0, 0.0), 0.0, 1.0, 0.0, 0.0),
    Material("asphalt", (0.085, 0.085, 0.095), 0.12, 0.95, 27.0, 13.0),
    Material("concrete", (0.42, 0.41, 0.39), 0.35, 0.93, 24.0, 11.0),
    Material("facade", (0.45, 0.40, 0.35), 0.30, 0.90, 21.0, 13.0),
    Material("foliage", (0.10, 0.26, 0.06), 0.45, 0.97, 21.0, 8.0),
    Material("bark", (0.22, 0.15, 0.09), 0.30, 0.95, 21.0, 9.0),
    Material("grass", (0.17, 0.30, 0.08), 0.45, 0.97, 25.0, 7.0),
    Material("metal", (0.50, 0.50, 0.52), 0.55, 0.30, 26.0, 10.0, 0.3),
    Material("paint", (0.50, 0.50, 0.50), 0.50, 0.85, 26.0, 10.0, 0.5),
    Material("glass", (0.04, 0.05, 0.07), 0.08, 0.60, 24.0, 10.0, 0.9),
    Material("rubber", (0.03, 0.03, 0.03), 0.08, 0.95, 28.0, 12.0),
    Material("engine", (0.50, 0.50, 0.50), 0.50, 0.85, 26.0, 10.0, 0.5),
    Material("skin", (0.60, 0.45, 0.35), 0.35, 0.98, 34.0, 33.0),
    Material("cloth", (0.30, 0.30, 0.30), 0.40, 0.95, 31.0, 28.0),
    Material("bike", (0.40, 0.10, 0.10), 0.50, 0.40, 24.0, 10.0, 0.3),
    Material("lamp", (0.90, 0.90, 0.85), 0.90, 0.90, 32.0, 30.0, 0.6),
)
MATERIAL_ID = {m.name: i for i, m in enumerate(MATERIALS)}

# Per-material arrays for vectorised look-ups (index = material id).
MAT_RGB = np.array([m.rgb for m in MATERIALS], dtype=np.float32)
MAT_REFLECTIVITY = np.array([m.reflectivity for m in MATERIALS], dtype=np.float32)
MAT_EMISSIVITY = np.array([m.emissivity for m in MATERIALS], dtype=np.float32)
MAT_TEMP_DAY_C = np.array([m.temp_day_c for m in MATERIALS], dtype=np.float32)
MAT_TEMP_NIGHT_C = np.array([m.temp_night_c for m in MATERIALS], dtype=np.float32)
MAT_SPECULAR = np.array([m.specular for m in MATERIALS], dtype=np.float32)
