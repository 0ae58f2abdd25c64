"""Synthetic world: time per 64-beam LiDAR scan (2048 azimuth steps), per 640x512 RGB + thermal frame pair (each
lighting) and per drive written to an mcap bag, for today's renderer and a baseline (by default the renderer before
the static scene was kept, the moving objects culled and the per-frame work cached: commit 55ab44c), in one run.

Each variant renders in its own process (the baseline's package is taken from git into a temporary folder), pinned
to one CPU core with one thread for numpy, OpenMP, OpenCV and torch; the two processes take turns call by call, so
both see the same machine load. Every call uses a new time stamp (as every capture of a drive does), so the moving
objects' ray-casting structure is rebuilt each time. Rows give the median and min wall time and the median CPU time;
``speedup`` is baseline / today on the min wall time (the least disturbed figure on a shared machine). The drives
(default 4 s: 140 captures) run with one worker process each, and today's also with one worker per core.
Goals: a scan <= 50 ms and a pair <= 200 ms on one core.
Run: `make bench` or `python bench/bench_sim.py [--quick] [--baseline REF] [--drive-seconds S]`.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path

from _common import print_table, write_results

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "ros2_ws/src/glassbox"
LIGHTINGS = ("day", "glare", "dusk", "night")
ONE_THREAD = {k: "1" for k in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS")}


# ------------------------------------------------------------------------------------- the rendering process
def worker() -> None:
    """Answer one JSON request per stdin line with one JSON line: the wall and CPU seconds of one call."""
    import cv2
    import torch

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    from glassbox.sim import lidar_preset, make_scene, render_cameras, rgb_camera, scan_lidar, thermal_camera
    from glassbox.sim.drive import DriveConfig, write_drive

    scene = make_scene(0)
    lidar, rgb, th = lidar_preset("hdl64"), rgb_camera(), thermal_camera()
    calls = 0
    for line in sys.stdin:
        req = json.loads(line)
        calls += 1
        t = 2.0 + 0.01 * calls                        # a new time stamp per call, as in a drive
        pose = scene.ego_pose(t)
        if req["case"] == "lidar":
            def fn():
                return len(scan_lidar(scene, lidar, pose, 0, t=t))
        elif req["case"] == "pair":
            def fn():
                return render_cameras(scene, rgb, th, pose, req["lighting"], 0, t=t).rgb.shape
        else:
            def fn():
                with tempfile.TemporaryDirectory() as tmp:
                    return write_drive(Path(tmp) / "drive.mcap", DriveConfig(seconds=req["seconds"],
                                                                             workers=req["workers"])).messages
        if req.get("cores"):
            os.sched_setaffinity(0, req["cores"])
        ch0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w, c = time.perf_counter(), time.process_time()
        fn()
        wall, cpu = time.perf_counter() - w, time.process_time() - c
        ch1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu += (ch1.ru_utime + ch1.ru_stime) - (ch0.ru_utime + ch0.ru_stime)
        print(json.dumps({"wall_s": wall, "cpu_s": cpu}), flush=True)


class Variant:
    """A rendering process running the package at ``src`` (a folder holding ``glassbox``)."""

    def __init__(self, name: str, src: Path, core: int) -> None:
        self.name, self.core = name, core
        env = {**os.environ, **ONE_THREAD, "PYTHONPATH": f"{src}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)

    def call(self, **req) -> dict[str, float]:
        req.setdefault("cores", [self.core])
        self.proc.stdin.write(json.dumps(req) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.name} rendering process ended early")
        return json.loads(line)

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def baseline_source(ref: str, dest: Path) -> Path | None:
    """The package at git ``ref``, extracted under ``dest``; None when git or the commit is not at hand."""
    try:
        data = subprocess.run(["git", "archive", "--format=tar", ref, f"{PACKAGE}/glassbox"], cwd=ROOT,
                              capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"baseline {ref} not available ({exc}); timing today's renderer only")
        return None
    with tarfile.open(fileobj=BytesIO(data)) as tar:
        tar.extractall(dest, filter="data")
    return dest / PACKAGE


def summary(samples: list[dict[str, float]]) -> dict[str, float]:
    wall = [s["wall_s"] * 1e3 for s in samples]
    return {"median_ms": statistics.median(wall), "min_ms": min(wall),
            "cpu_ms": statistics.median(s["cpu_s"] * 1e3 for s in samples)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="3 calls per case and a 1 s drive")
    parser.add_argument("--baseline", default="55ab44c", help="git commit of the baseline renderer")
    parser.add_argument("--drive-seconds", type=float, default=None, help="drive length (default 4 s)")
    args = parser.parse_args()
    repeat = 3 if args.quick else 7
    drive_s = args.drive_seconds or (1.0 if args.quick else 4.0)
    cores = sorted(os.sched_getaffinity(0))
    load0 = os.getloadavg()[0]

    with tempfile.TemporaryDirectory() as tmp:
        old_src = baseline_source(args.baseline, Path(tmp))
        variants = [Variant("today", ROOT / PACKAGE, cores[-1])]
        if old_src is not None:
            variants.append(Variant("baseline", old_src, cores[0]))
        cases = [("LiDAR hdl64 64x2048 scan", {"case": "lidar"})]
        cases += [(f"RGB+thermal 640x512 pair, {li}", {"case": "pair", "lighting": li}) for li in LIGHTINGS]
        rows = []
        try:
            for v in variants:                                          # warm-up: imports, caches, static scene
                for _, req in cases:
                    v.call(**req)
            for label, req in cases:
                samples = {v.name: [] for v in variants}
                for i in range(repeat):                                  # alternate, and alternate who goes first
                    for v in variants if i % 2 == 0 else variants[::-1]:
                        samples[v.name].append(v.call(**req))
                rows += _rows(label + ", 1 core", samples)
            n_cores = len(cores)
            for v, workers in [(v, 1) for v in variants[::-1]] + [(variants[0], n_cores)]:
                sample = v.call(case="drive", seconds=drive_s, workers=workers, cores=cores if workers > 1 else
                                [v.core])
                rows.append({"case": f"drive {drive_s:g} s -> mcap, {workers} worker{'s' if workers > 1 else ''}",
                             "variant": v.name, **summary([sample])})
        finally:
            for v in variants:
                v.close()

    _speedups(rows)
    print_table(rows, ["case", "variant", "median_ms", "min_ms", "cpu_ms", "speedup"])
    drive_one = {r["variant"]: r for r in rows if r["case"].startswith("drive") and r["case"].endswith("1 worker")}
    drive_all = [r for r in rows if r["case"].startswith("drive") and not r["case"].endswith("1 worker")][0]
    scale = 20.0 / drive_s
    print(f"\n20 s drive (extrapolated from {drive_s:g} s): today {drive_one['today']['min_ms'] * scale / 1e3:.0f} s "
          f"on 1 core, {drive_all['min_ms'] * scale / 1e3:.0f} s with {len(cores)} workers on {len(cores)} cores "
          f"(1-min load average {load0:.1f} at the start)")
    write_results("sim", rows, baseline=args.baseline if len(variants) > 1 else None, drive_seconds=drive_s,
                  drive_20s_one_core_s=drive_one["today"]["min_ms"] * scale / 1e3,
                  drive_20s_all_cores_s=drive_all["min_ms"] * scale / 1e3, cores=len(cores),
                  load_average_1min_at_start=load0, goals={"scan_one_core_ms": "<= 50", "pair_one_core_ms": "<= 200"},
                  notes="Each variant in its own process pinned to one core (one thread everywhere), alternating call "
                        "by call; speedup = baseline min_ms / today min_ms. cpu_ms: CPU time of the process (for "
                        "the drives with its rendering workers). Wall times include waiting for the CPU when the "
                        "machine is shared.")


def _rows(label: str, samples: dict[str, list[dict[str, float]]]) -> list[dict]:
    return [{"case": label, "variant": name, **summary(s)} for name, s in samples.items()]


def _speedups(rows: list[dict]) -> None:
    """``speedup`` on today's rows: the baseline's min time over today's, for the same case."""
    base = {r["case"]: r for r in rows if r["variant"] == "baseline"}
    for r in rows:
        if r["variant"] == "today" and r["case"] in base:
            r["speedup"] = base[r["case"]]["min_ms"] / r["min_ms"]


if __name__ == "__main__":
    if "--worker" in sys.argv:
        worker()
    else:
        main()
