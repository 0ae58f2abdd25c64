"""LiDAR sensor geometry from one source: beam table, columns per turn, ranges, intensity units, mount and rate.

A :class:`SensorProfile` describes one spinning LiDAR from its manufacturer's published numbers. The same profile
builds the simulator's beam table (``glassbox.sim.lidar_preset``), the range image
(``ProjectionConfig.from_profile``), the trainer's input shape (``sensor:`` of the ``lidar`` task) and is written
to the model card (``extra.sensor``), so a model's card says which sensor geometry it was trained on.

:class:`CloudFit` checks every live cloud against the card's profile (ring field and its range, the elevation of
each ring, the vertical field of view of the points, the intensity range) and, when the cloud comes from another
sensor, resamples it into the model's geometry: each ring goes to the model row nearest its measured elevation
(through the model's beam table), intensities are rescaled to the model's units. What differs is reported once
(``notices``) and kept in ``state``; a cloud with no point inside the model's vertical field of view, or with
intensities in no known unit, raises :class:`SensorMismatchError`. Before any of that, points with a NaN/inf
coordinate or intensity and points beyond the profile's ``max_range_m`` (a flipped byte in a float is either)
are dropped and counted (``dropped``, ``info()["dropped_points/..."]``); a cloud with no point left raises
:class:`NoValidPointError`.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np

from glassbox.lidar.projection import ProjectionConfig, elevation_rows

log = logging.getLogger(__name__)

#: full scale of each intensity unit (the scale a cloud's intensities are matched against)
INTENSITY_UNITS = {"reflectance": 1.0,          # float 0-1 (KITTI's velodyne .bin files)
                   "reflectivity_u8": 255.0,    # Velodyne calibrated reflectivity, one byte
                   "signal_u16": 65535.0}       # Ouster signal photons (16 bit)


class SensorError(ValueError):
    """A sensor profile is invalid or unknown."""


class SensorMismatchError(ValueError):
    """A cloud that cannot be fitted to the model's sensor geometry (the reason is the message)."""


class NoValidPointError(ValueError):
    """A cloud none of whose points is finite and within the sensor's range."""


#: why points are dropped before a cloud is fitted and projected (keys of ``CloudFit.dropped``)
DROP_REASONS = ("nonfinite", "out_of_range")


def valid_points(points: np.ndarray, max_range_m: float) -> tuple[np.ndarray, np.ndarray]:
    """Masks (N,) of the points with a NaN/inf coordinate or intensity, and of the finite points with a range
    beyond ``max_range_m`` (computed in float64, so coordinates near the float32 limit do not overflow)."""
    finite = np.isfinite(points).all(axis=1)
    with np.errstate(invalid="ignore", over="ignore"):                # signalling NaNs (flipped bytes) warn
        xyz = points[:, :3].astype(np.float64)
        far = finite & ~(np.einsum("ij,ij->i", xyz, xyz) <= max_range_m ** 2)
    return ~finite, far


@dataclass(frozen=True)
class SensorProfile:
    """One spinning LiDAR. ``elevations_deg``: beam table, top beam first (strictly decreasing); ``columns``:
    azimuth steps per turn at ``rate_hz``; ``intensity_units`` (a key of :data:`INTENSITY_UNITS`) and
    ``intensity_max`` its full scale; ``ring_order``: which beam the driver's ring 0 is (``bottom_first``: the
    lowest, Velodyne; ``top_first``: the highest, Ouster); ``mount_height_m``: above the ground (vehicle roof)."""

    name: str
    elevations_deg: tuple[float, ...]
    columns: int
    min_range_m: float
    max_range_m: float
    intensity_units: str = "reflectance"
    intensity_max: float = 1.0
    ring_order: Literal["bottom_first", "top_first"] = "bottom_first"
    mount_height_m: float = 1.73
    rate_hz: float = 10.0

    def __post_init__(self) -> None:
        e = np.asarray(self.elevations_deg, np.float64)
        if e.size == 0 or not np.all(np.abs(e) < 90):
            raise SensorError(f"sensor '{self.name}': elevations_deg must be a non-empty table of angles in "
                              f"(-90, 90) deg")
        if e.size > 1 and not np.all(np.diff(e) < 0):
            raise SensorError(f"sensor '{self.name}': elevations_deg must be strictly decreasing (top beam first)")
        if self.columns < 8 or not 0 <= self.min_range_m < self.max_range_m or self.rate_hz <= 0:
            raise SensorError(f"sensor '{self.name}': invalid columns={self.columns}, ranges ({self.min_range_m}, "
                              f"{self.max_range_m}) or rate_hz={self.rate_hz}")
        if self.intensity_units not in INTENSITY_UNITS or self.intensity_max <= 0:
            raise SensorError(f"sensor '{self.name}': intensity_units must be one of {', '.join(INTENSITY_UNITS)} "
                              f"and intensity_max positive, got {self.intensity_units!r}, {self.intensity_max}")

    @property
    def num_beams(self) -> int:
        return len(self.elevations_deg)

    @property
    def spacing_deg(self) -> np.ndarray:
        """Angle between neighbouring beams (num_beams - 1,), top pair first."""
        return -np.diff(np.asarray(self.elevations_deg, np.float64))

    @property
    def fov_up_deg(self) -> float:
        """Upper edge of the vertical field of view: half a beam spacing above the top beam."""
        half = self.spacing_deg[0] / 2 if self.num_beams > 1 else 0.5
        return float(self.elevations_deg[0] + half)

    @property
    def fov_down_deg(self) -> float:
        """Lower edge of the vertical field of view: half a beam spacing below the bottom beam."""
        half = self.spacing_deg[-1] / 2 if self.num_beams > 1 else 0.5
        return float(self.elevations_deg[-1] - half)


def _hdl64_elevations() -> tuple[float, ...]:
    upper = np.linspace(2.0, -8.33, 32)           # upper block, 1/3 degree apart
    lower = np.linspace(-8.83, -24.33, 32)        # lower block, 1/2 degree apart
    return tuple(np.round(np.concatenate([upper, lower]), 3).tolist())


def _uniform(top: float, n: int) -> tuple[float, ...]:
    return tuple(np.round(np.linspace(top, -top, n), 4).tolist())


PROFILES: dict[str, SensorProfile] = {p.name: p for p in (
    # Velodyne VLP-16 User Manual 63-9243 Rev D, Table 9-1: 16 lasers from -15 to +15 deg, 2 deg apart; one
    # firing cycle of all lasers every 55.296 us (about 1808 per turn at 10 Hz: 0.2 deg, 1800 nominal); range up
    # to 100 m; intensity = calibrated reflectivity, one byte. The manual gives no minimum range: 1 m used.
    SensorProfile("vlp16", tuple(float(a) for a in range(15, -16, -2)), columns=1800, min_range_m=1.0,
                  max_range_m=100.0, intensity_units="reflectivity_u8", intensity_max=255.0),
    # Velodyne VLP-32C User Manual 63-9325 Rev C, Table 9-6 (elevation of every laser): non-uniform, -25 to +15
    # deg, 1/3 deg apart from -4.667 to +1.667 (dense around -1 deg); same 55.296 us firing cycle (1800 per turn
    # at 10 Hz); range up to 200 m; calibrated reflectivity, one byte. Minimum range not given: 1 m used.
    SensorProfile("vlp32c", (15.0, 10.333, 7.0, 4.667, 3.333, 2.333, 1.667, 1.333, 1.0, 0.667, 0.333, 0.0, -0.333,
                             -0.667, -1.0, -1.333, -1.667, -2.0, -2.333, -2.667, -3.0, -3.333, -3.667, -4.0,
                             -4.667, -5.333, -6.148, -7.254, -8.843, -11.31, -15.639, -25.0),
                  columns=1800, min_range_m=1.0, max_range_m=200.0, intensity_units="reflectivity_u8",
                  intensity_max=255.0),
    # Velodyne HDL-32E User's Manual, "Laser firing sequence" table (vertical angle per laser, as printed):
    # -30.67 to +10.67 deg, 1.33 deg apart (41.3 deg vertical FOV); a firing cycle every 46.08 us (about 2170 per
    # turn at 10 Hz); valid data 5 cm to 100 m; intensity one byte.
    SensorProfile("hdl32", (10.67, 9.33, 8.0, 6.67, 5.33, 4.0, 2.67, 1.33, 0.0, -1.33, -2.67, -4.0, -5.33, -6.66,
                            -8.0, -9.33, -10.67, -12.0, -13.33, -14.67, -16.0, -17.33, -18.67, -20.0, -21.33,
                            -22.67, -24.0, -25.33, -26.66, -28.0, -29.33, -30.67),
                  columns=2170, min_range_m=0.05, max_range_m=100.0, intensity_units="reflectivity_u8",
                  intensity_max=255.0),
    # Velodyne HDL-64E S2/S3 (user's manuals 63-HDL64ES2, 63-HDL64ES3): two blocks of 32 lasers, vertical FOV +2
    # to about -24.8 deg; the nominal table used here is the common one, upper block +2 to -8.33 deg (1/3 deg
    # apart), lower block -8.83 to -24.33 deg (1/2 deg apart); every unit's own angles are in its db.xml
    # calibration. Range 120 m (cars, foliage); about 2000 columns per turn at 10 Hz, 2048 used (as in the KITTI
    # range-image literature). Intensity as KITTI distributes its HDL-64E scans: float reflectance 0-1 (the
    # sensor's own byte, 0-255, is rescaled by CloudFit). Minimum range not given: 1 m used. The mount height is
    # KITTI's (1.73 m).
    SensorProfile("hdl64", _hdl64_elevations(), columns=2048, min_range_m=1.0, max_range_m=120.0),
    # Ouster OS1 datasheet (OS1 high resolution imaging lidar, 16/64/128 channels): vertical FOV +16.6 to -16.6
    # deg (33.2) for 64 and 16 channels, +22.5 to -22.5 deg (45) for 128, uniform spacing; horizontal 512, 1024
    # or 2048 columns at 10 or 20 Hz (1024 x 10 Hz, the factory mode, used); range 0.8-120 m. Intensity = signal
    # photons, 16 bit. The driver's ring 0 is the top beam (ouster-sdk issue #247). Later revisions (Rev 6/7) of
    # the OS1-64 have a wider table: read it from the sensor's beam_altitude_angles.
    SensorProfile("os1_64", _uniform(16.6, 64), columns=1024, min_range_m=0.8, max_range_m=120.0,
                  intensity_units="signal_u16", intensity_max=65535.0, ring_order="top_first"),
    SensorProfile("os1_128", _uniform(22.5, 128), columns=1024, min_range_m=0.8, max_range_m=120.0,
                  intensity_units="signal_u16", intensity_max=65535.0, ring_order="top_first"),
)}
SENSORS = tuple(PROFILES)


def sensor_profile(name: str, **overrides) -> SensorProfile:
    """The profile of a known sensor (:data:`SENSORS`), with ``overrides`` of its fields."""
    if name not in PROFILES:
        raise SensorError(f"unknown LiDAR sensor '{name}' (known: {', '.join(SENSORS)})")
    return replace(PROFILES[name], **overrides)


def profile_from_projection(projection: ProjectionConfig) -> SensorProfile:
    """The profile of a model card that records none (cards written before profiles were): the preset whose
    beam table is the projection's (to 0.01 deg), else a profile of the projection's rows. Such models were
    trained on the simulator's float 0-1 intensities, so the intensity unit is ``reflectance`` either way."""
    rows = np.rad2deg(projection.row_elevations_rad())
    for p in PROFILES.values():
        if p.num_beams == len(rows) and np.allclose(p.elevations_deg, rows, atol=0.01):
            return replace(p, intensity_units="reflectance", intensity_max=1.0)
    return SensorProfile("projection", tuple(np.round(rows, 4).tolist()), columns=projection.width,
                         min_range_m=projection.min_range_m, max_range_m=projection.max_range_m,
                         ring_order=projection.ring_order)


def _fov(lo: float, hi: float) -> str:
    """An elevation span, top first: ``+15.0..-15.0 deg``."""
    return f"{hi:+.1f}..{lo:+.1f} deg"


class CloudFit:
    """Fits clouds to a model's sensor profile and projection (see the module docstring).

    ``fit = CloudFit(profile, projection)``; ``fit(points, ring) -> (points, ring)`` returns the cloud to project:
    the same arrays when it matches the model's sensor, else the ring remapped to the model's rows and the
    intensities rescaled; points that are not finite or lie beyond the profile's range are dropped first and
    counted in ``dropped`` (totals since the start, by :data:`DROP_REASONS`). ``state`` says what differs in the
    last cloud ("" = the model's own sensor); ``notices`` holds the first description of each kind of difference
    (rows, field of view, intensity), logged once; ``info()`` gives the facts for diagnostics."""

    def __init__(self, profile: SensorProfile, projection: ProjectionConfig) -> None:
        if projection.beam_elevations_deg and not (
                projection.height == profile.num_beams and
                np.allclose(projection.beam_elevations_deg, profile.elevations_deg, atol=0.01)):
            raise SensorError(f"the projection's beam table ({projection.height} rows) is not the one of sensor "
                              f"'{profile.name}' ({profile.num_beams} beams)")
        self.profile, self.projection = profile, projection
        self.intensity_scale = 0.0       # the largest unit seen on this stream (a stream keeps its unit)
        self.state = ""
        self.notices: list[str] = []
        self._noticed: set[str] = set()
        self.facts: dict[str, str] = {}
        self.dropped = dict.fromkeys(DROP_REASONS, 0)

    # ------------------------------------------------------------------------------------------ checks
    def _unit(self, points: np.ndarray) -> float:
        """Full scale of the cloud's intensities: the smallest known unit that holds its largest value."""
        if points.shape[1] < 4 or points.shape[0] == 0:
            return self.profile.intensity_max
        with np.errstate(invalid="ignore"):
            top = float(np.nanmax(points[:, 3], initial=0.0))
        scales = sorted(set(INTENSITY_UNITS.values()) | {self.profile.intensity_max})
        fits = [s for s in scales if top <= s * (1 + 1e-6)]
        if not fits:
            raise SensorMismatchError(f"intensity up to {top:g} fits no known unit "
                                      f"({', '.join(f'0-{s:g}' for s in scales)})")
        self.intensity_scale = max(self.intensity_scale, fits[0])
        return self.intensity_scale

    def _ring_rows(self, points: np.ndarray, ring: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per ring value: its measured elevation (deg, NaN for rings without a return) and the model row nearest
        it (out of [0, H) outside the model's field of view), and which ring values have returns."""
        xyz = points[:, :3]
        with np.errstate(over="ignore", invalid="ignore"):
            r = np.sqrt(np.einsum("ij,ij->i", xyz, xyz))          # zero-range returns add 0 to both sums
        z, n = xyz[:, 2], int(ring.max()) + 1
        finite = np.isfinite(r)
        if not finite.all():
            ring, r, z = ring[finite], r[finite], z[finite]
        sum_z = np.bincount(ring, weights=z, minlength=n)
        sum_r = np.bincount(ring, weights=r, minlength=n)
        present = sum_r > 0
        # range-weighted: sin(elevation) = sum z / sum r, so near returns (beam-origin offsets) weigh least
        elev = np.full(n, np.nan)
        elev[present] = np.arcsin(np.clip(sum_z[present] / sum_r[present], -1, 1))
        rows = np.full(n, -1, np.int64)
        rows[present] = elevation_rows(elev[present], self.projection)
        return np.rad2deg(elev), rows, present

    def _model_ring(self, rows: np.ndarray) -> np.ndarray:
        """Ring values in the model's convention for model rows (H, out of the image, for rows outside it)."""
        h = self.projection.height
        inside = (rows >= 0) & (rows < h)
        ring = rows if self.projection.ring_order == "top_first" else (h - 1) - rows
        return np.where(inside, ring, h)

    def _elevation_span(self, points: np.ndarray) -> tuple[float, float, float]:
        """Elevation span (deg, 0.5 and 99.5 percentiles) of a strided sample of the points with a return and the
        fraction of the sample inside the model's vertical field of view (NaN without returns)."""
        step = max(1, points.shape[0] // 32768)
        xyz = points[::step, :3].astype(np.float64)
        r = np.sqrt(np.einsum("ij,ij->i", xyz, xyz))
        ok = np.isfinite(r) & (r > 0)
        if not ok.any():
            return math.nan, math.nan, math.nan
        elev = np.arcsin(np.clip(xyz[ok, 2] / r[ok], -1, 1))
        rows = elevation_rows(elev, self.projection)
        inside = float(np.mean((rows >= 0) & (rows < self.projection.height)))
        lo, hi = np.rad2deg(np.percentile(elev, [0.5, 99.5]))
        return float(lo), float(hi), inside

    def _drop_invalid(self, points: np.ndarray, ring: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """The points that are finite and within range (the same arrays when all are), the rest counted."""
        nonfinite, far = valid_points(points, self.profile.max_range_m)
        bad = nonfinite | far
        if not bad.any():
            return points, ring
        self.dropped["nonfinite"] += int(np.count_nonzero(nonfinite))
        self.dropped["out_of_range"] += int(np.count_nonzero(far))
        if bad.all():
            raise NoValidPointError(f"no point of the cloud is finite and within {self.profile.max_range_m:g} m "
                                    f"({np.count_nonzero(nonfinite)} NaN/inf, {np.count_nonzero(far)} beyond range)")
        keep = ~bad
        return points[keep], (None if ring is None else np.asarray(ring)[keep])

    # ------------------------------------------------------------------------------------------ fit
    def __call__(self, points: np.ndarray, ring: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray | None]:
        p, cfg = self.profile, self.projection
        points, ring = self._drop_invalid(points, ring)
        up, down = self._edges()
        model_fov = f"{p.name}: {_fov(math.degrees(down), math.degrees(up))}"
        differences: dict[str, str] = {}           # kind -> description
        if ring is not None and cfg.use_ring and len(ring):
            ring = np.asarray(ring).astype(np.int64, copy=False)
            if ring.min() < 0 or ring.max() >= 65536:
                raise SensorMismatchError(f"ring field holds {int(ring.min())}..{int(ring.max())}: no beam indices")
            elev, rows, present = self._ring_rows(points, ring)
            mapped = self._model_ring(rows)
            beams, returns = int(present.size), int(present.sum())
            inside = int(np.count_nonzero(mapped[present] < cfg.height))
            span = _fov(float(np.nanmin(elev)), float(np.nanmax(elev))) if returns else "no returns"
            self.facts = {"sensor/cloud": f"{beams} rings, {span}", "sensor/rows": "ring"}
            if returns and inside == 0:
                self.facts["sensor/rows"] = "rejected"
                raise SensorMismatchError(f"no beam of the cloud ({beams} rings, {span}) lies inside the model's "
                                          f"vertical field of view ({model_fov})")
            if returns and not np.array_equal(mapped[present], np.flatnonzero(present)):
                ring = mapped[ring]
                self.facts["sensor/rows"] = "ring remapped by elevation"
                dropped = f", {returns - inside} rings outside it dropped" if inside < returns else ""
                differences["rows"] = (f"{beams}-ring cloud ({span}) resampled to the model's {cfg.height} rows "
                                       f"({model_fov}){dropped}")
        else:
            lo, hi, inside = self._elevation_span(points)
            span = "no returns" if math.isnan(inside) else _fov(lo, hi)
            self.facts = {"sensor/cloud": f"{'no ring field' if ring is None else 'ring not used'}, {span}",
                          "sensor/rows": "elevation"}
            if inside == 0:
                self.facts["sensor/rows"] = "rejected"
                raise SensorMismatchError(f"no point of the cloud ({span}) lies inside the model's vertical field "
                                          f"of view ({model_fov})")
            if inside < 0.99:
                differences["fov"] = (f"cloud spans {span}, beyond the model's {model_fov}: "
                                      f"{100 * (1 - inside):.0f}% of its points dropped")
        unit = self._unit(points)
        self.facts["sensor/intensity"] = f"0-{unit:g}"
        if unit != p.intensity_max:
            points = points.copy()
            points[:, 3] *= p.intensity_max / unit
            differences["intensity"] = (f"intensity 0-{unit:g} rescaled to the model's 0-{p.intensity_max:g} "
                                        f"({p.intensity_units})")
        self._report(differences)
        return points, ring

    def _edges(self) -> tuple[float, float]:
        """Upper and lower edge (rad) of the model's vertical field of view."""
        rows = self.projection.row_elevations_rad()
        if len(rows) == 1:
            half = math.radians(self.projection.fov_up_deg - self.projection.fov_down_deg) / 2
            return rows[0] + half, rows[0] - half
        return rows[0] + (rows[0] - rows[1]) / 2, rows[-1] - (rows[-2] - rows[-1]) / 2

    def _report(self, differences: dict[str, str]) -> None:
        for kind, text in differences.items():
            if kind not in self._noticed:
                self._noticed.add(kind)
                self.notices.append(text)
                log.warning("LiDAR cloud differs from the model's sensor: %s", text)
        self.state = "; ".join(differences.values())

    def info(self) -> dict[str, str]:
        """Facts for the node's diagnostics: the model's sensor and what the last cloud looked like."""
        return {"sensor": self.profile.name, **self.facts,
                **{f"dropped_points/{k}": str(n) for k, n in self.dropped.items()}}
