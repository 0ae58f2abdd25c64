"""Synthetic world: time per 64-beam LiDAR scan (2048 azimuth steps), per 640x512 RGB + thermal frame pair (each
lighting), and for a whole drive written to an mcap bag (default: 20 s, LiDAR 10 Hz, RGB 15 Hz, thermal 10 Hz).

Goal: the 20 s drive in <= 5 minutes on 2 cores. Wall times depend on what else runs on the machine, so each row
also gives the CPU seconds of this process (and the 1-minute load average at the start).
Run: `make bench` or `python bench/bench_sim.py [--quick] [--drive-seconds S]`.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from _common import print_table, write_results
from glassbox.sim import lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar, thermal_camera
from glassbox.sim.drive import DriveConfig, schedule, write_drive


def timed(fn, repeat: int) -> dict[str, float]:
    fn()                                                   # warm-up (imports, caches)
    wall, cpu = [], []
    for _ in range(repeat):
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall.append((time.perf_counter() - w) * 1e3)
        cpu.append((time.process_time() - c) * 1e3)
    return {"median_ms": statistics.median(wall), "min_ms": min(wall), "cpu_ms": statistics.median(cpu)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer repeats and a 4 s drive")
    parser.add_argument("--drive-seconds", type=float, default=None)
    args = parser.parse_args()
    repeat = 3 if args.quick else 10
    drive_s = args.drive_seconds or (4.0 if args.quick else 20.0)
    load0 = os.getloadavg()[0]

    scene = make_scene(0)
    pose = scene.ego_pose(2.0)
    lidar = lidar_preset("hdl64")
    rows = []
    scan = scan_lidar(scene, lidar, pose, 0, t=2.0)
    rows.append({"case": f"LiDAR hdl64 64x{lidar.azimuth_steps} scan ({len(scan)} pts)",
                 **timed(lambda: scan_lidar(scene, lidar, pose, 0, t=2.0), repeat)})
    rgb, th = rgb_camera(), thermal_camera()
    for lighting in ("day", "glare", "dusk", "night"):
        rows.append({"case": f"RGB+thermal 640x512 pair, {lighting}",
                     **timed(lambda: render_cameras(scene, rgb, th, pose, lighting, 0, t=2.0), max(repeat // 2, 2))})

    cfg = DriveConfig(seconds=drive_s)
    n_caps = len(schedule(cfg))
    children0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    with tempfile.TemporaryDirectory() as tmp:
        c0, w0 = time.process_time(), time.perf_counter()
        summary = write_drive(Path(tmp) / "drive.mcap", cfg)
        wall = time.perf_counter() - w0
        size_mb = summary.path.stat().st_size / 1e6
    parent_cpu = time.process_time() - c0
    children1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    workers_cpu = (children1.ru_utime + children1.ru_stime) - (children0.ru_utime + children0.ru_stime)
    total_cpu = parent_cpu + workers_cpu
    rows.append({"case": f"drive {drive_s:g} s -> mcap ({n_caps} captures, {cfg.workers} workers, {size_mb:.0f} MB)",
                 "median_ms": wall * 1e3, "min_ms": wall * 1e3, "cpu_ms": total_cpu * 1e3})
    scale = 20.0 / drive_s
    drive_20s_wall = wall * scale
    drive_20s_two_cores = total_cpu * scale / 2                    # all CPU work spread over 2 dedicated cores
    print_table(rows, ["case", "median_ms", "min_ms", "cpu_ms"])
    how = "measured" if drive_s == 20.0 else "extrapolated"
    print(f"\n20 s drive ({how}): {drive_20s_wall:.0f} s wall on this machine (1-min load average {load0:.1f} on "
          f"{os.cpu_count()} CPUs at the start); {total_cpu * scale:.0f} CPU-s in all, i.e. "
          f"{drive_20s_two_cores:.0f} s on 2 dedicated cores (goal <= 300 s)")
    write_results("sim", rows, drive_seconds=drive_s, drive_20s_wall_s=drive_20s_wall,
                  drive_20s_cpu_s=total_cpu * scale, drive_20s_on_2_dedicated_cores_s=drive_20s_two_cores,
                  drive_20s_measured=drive_s == 20.0, load_average_1min_at_start=load0,
                  goals={"drive_20s_on_2_dedicated_cores_s": "<= 300"},
                  notes="cpu_ms: CPU time of the benchmark process; for the drive, of the process and its rendering "
                        "workers together. Wall times include waiting for the CPU when the machine is shared.")


if __name__ == "__main__":
    main()
