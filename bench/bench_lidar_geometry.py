"""Fraction of a scan's points that land in the range image, per sensor profile (``glassbox.lidar.sensors``).

For each preset, synthetic scans of three streets are projected
1. with the sensor's own profile (``ProjectionConfig.from_profile``) at full width (its columns per turn), rows
   from the ring field and from the elevation through the beam table (goal: >= 95% of the points for 64 beams);
   and with a head that fires 1% more often per turn than the image has columns (a real head's firing rate is
   not a whole number of columns: VLP-16 about 1808 firings per turn for 1800 columns);
2. with its own profile at the shipped model's 512 columns (several points per pixel: the closest one wins);
3. into the shipped model's geometry (HDL-64E table, 64 x 512) after ``CloudFit`` resampled it: the fraction of
   points inside the model's vertical field of view and the fraction of the 64 x 512 pixels filled (HDL-64E
   itself: the reference), with the time ``CloudFit`` takes per scan.

"landed" = points that own a pixel / points of the scan; the rest were dropped (outside the field of view or
range) or lost their pixel to a closer point.

Run: ``python bench/bench_lidar_geometry.py`` (writes ``bench/results/lidar_geometry.json``).
"""
from __future__ import annotations

import numpy as np

from _common import print_table, time_ms, write_results
from glassbox.lidar import SENSORS, CloudFit, ProjectionConfig, project_points, sensor_profile
from glassbox.sim import SceneConfig, lidar_preset, make_scene, scan_lidar

SCENES = (3, 5, 7)
MODEL_WIDTH = 512


def landed(points: np.ndarray, ring: np.ndarray | None, cfg: ProjectionConfig) -> tuple[float, float]:
    """Fraction of the points that own a pixel, and fraction of the pixels filled."""
    image = project_points(points, cfg, ring=ring)
    return float(image.mask.sum() / len(points)), float(image.mask.mean())


def sensor_row(name: str) -> dict:
    prof = sensor_profile(name)
    model_prof = sensor_profile("hdl64")
    model = ProjectionConfig.from_profile(model_prof, width=MODEL_WIDTH)
    full = ProjectionConfig.from_profile(prof)
    acc: dict[str, list[float]] = {}
    fit_ms = []
    for seed in SCENES:
        scene = make_scene(seed, SceneConfig())
        pose = scene.ego_pose(1.0)
        scan = scan_lidar(scene, lidar_preset(name), pose, seed, t=1.0)
        fast = scan_lidar(scene, lidar_preset(name, azimuth_steps=round(prof.columns * 1.01)), pose, seed, t=1.0)
        pts, ring = scan.points, scan.ring.astype(np.int64)
        fit = CloudFit(model_prof, model)
        fitted, mapped = fit(pts, ring)
        image = project_points(fitted, model, ring=mapped)
        narrow = landed(pts, ring, ProjectionConfig.from_profile(prof, width=MODEL_WIDTH))
        figures = {
            "full_ring": landed(pts, ring, full)[0],
            "full_elevation": landed(pts, None, ProjectionConfig.from_profile(prof, use_ring=False))[0],
            "full_fast_head": landed(fast.points, fast.ring, full)[0],
            f"w{MODEL_WIDTH}_landed": narrow[0],
            f"w{MODEL_WIDTH}_pixels": narrow[1],
            "model_in_fov": 1.0 - image.dropped["out_of_fov"] / len(pts),
            "model_pixels": float(image.mask.mean()),
        }
        for k, v in figures.items():
            acc.setdefault(k, []).append(v)
        fit_ms.append(time_ms(lambda: fit(pts, ring), repeat=10, warmup=2)["median_ms"])
        acc.setdefault("points", []).append(len(pts))
    row = {"sensor": name, "beams": prof.num_beams, "columns": prof.columns,
           "points": int(np.mean(acc.pop("points")))}
    row.update({k: float(np.mean(v)) for k, v in acc.items()})
    row["fit_ms"] = float(np.median(fit_ms))
    return row


def main() -> None:
    rows = [sensor_row(name) for name in SENSORS]
    print_table(rows, ["sensor", "beams", "columns", "points", "full_ring", "full_elevation", "full_fast_head",
                       f"w{MODEL_WIDTH}_landed", f"w{MODEL_WIDTH}_pixels", "model_in_fov", "model_pixels", "fit_ms"])
    goal = all(r["full_ring"] >= 0.95 and r["full_elevation"] >= 0.95 for r in rows if r["beams"] == 64)
    print(f"\ngoal: >= 95% of the points land at full width for 64 beams: {'met' if goal else 'not met'}")
    write_results("lidar_geometry", rows, scenes=list(SCENES), model="hdl64 profile, 64 x 512 (the shipped card)",
                  units={"full_*, w512_landed, model_in_fov": "fraction of the scan's points",
                         "w512_pixels, model_pixels": "fraction of the image's pixels", "fit_ms": "ms per scan"},
                  goal_95pct_64_beams_met=goal)


if __name__ == "__main__":
    main()
