"""Fleet replay throughput: plain replay, the fleet path in this process, and Ray with 1 and 2 local workers.

A handful of short synthetic drives (``glassbox.sim``: VLP-16 LiDAR at 10 Hz, small RGB and thermal cameras, with
ground truth; cached in ``$TMPDIR/glassbox_bench/fleet``) is replayed through every capability four ways, each
``--repeat`` times after one untimed warm-up run (min and median reported):

- ``plain``: ``glassbox.bag.replay.replay`` per bag, one after the other (the single-bag path);
- ``fleet serial``: ``glassbox.fleet.run.run_fleet`` with the in-process executor (planning, hashing, records);
- ``ray 1 worker`` / ``ray 2 workers``: ``run_fleet`` on a local Ray instance started with 1 or 2 CPUs, one task
  per bag declaring 1 CPU. Ray's start-up is timed apart (``ray_init_s``) and not in the throughput.

Every variant runs its inference on one thread (``threads=1`` and ``torch.set_num_threads(1)``, as a Ray task
declaring one CPU does), so the per-bag overhead of a path is its wall time per bag minus plain replay's.
Throughput is bags per second and bag-seconds replayed per wall second; ``cpu_s`` sums the tasks' CPU time.
Results are a fresh run each time (``resume=False``), so no bag is skipped.
Run: ``.venv/bin/python bench/bench_fleet.py`` (writes ``bench/results/fleet.json``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from _common import model_cards, print_table, write_results  # noqa: E402
from glassbox.bag.replay import ReplayConfig, replay  # noqa: E402
from glassbox.fleet.run import RayExecutor, Resources, SerialExecutor, run_fleet  # noqa: E402


def drives(n: int, seconds: float, width: int) -> list[Path]:
    from glassbox.sim import rgb_camera, thermal_camera
    from glassbox.sim.drive import DriveConfig, write_drive
    cache = Path(tempfile.gettempdir()) / "glassbox_bench" / "fleet"
    cache.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in range(n):
        bag = cache / f"drive_{seconds:g}s_{width}px_seed{seed}.mcap"
        if not bag.is_file():
            cam = {"width": width, "height": width * 4 // 5}
            write_drive(bag, DriveConfig(seconds=seconds, seed=seed, lidar="vlp16", rgb=rgb_camera(**cam),
                                         thermal=thermal_camera(**cam), workers=1, segments=("day", "night")))
        out.append(bag)
    return out


def timed(fn, repeat: int) -> tuple[list[float], object]:
    """Wall times of ``repeat`` calls after one untimed call (model files in the page cache, Ray's workers
    started and their imports done), and the last call's result."""
    walls, last = [], fn()
    for _ in range(repeat):
        t0 = time.perf_counter()
        last = fn()
        walls.append(time.perf_counter() - t0)
    return walls, last


def row(name: str, walls: list[float], bags: int, bag_s: float, cpu_s: float, plain_per_bag: float | None) -> dict:
    best = min(walls)
    return {"variant": name, "wall_min_s": best, "wall_median_s": statistics.median(walls),
            "bags_per_s": bags / best, "bag_s_per_wall_s": bag_s / best, "cpu_s": cpu_s,
            "per_bag_s": best / bags,
            "overhead_per_bag_s": None if plain_per_bag is None else best / bags - plain_per_bag}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bags", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=1.5, help="length of each drive")
    ap.add_argument("--width", type=int, default=160, help="camera width (height = 4/5 of it)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()

    import os

    import ray
    import torch
    load_before = os.getloadavg()
    torch.set_num_threads(1)
    tmp = Path(tempfile.mkdtemp(prefix="bench_fleet_"))
    cards = model_cards(tmp)
    cfg = ReplayConfig(threads=1, **{f"{cap}_card": str(card) for cap, (card, _) in cards.items()})
    bags = drives(args.bags, args.seconds, args.width)
    counter = iter(range(10_000))

    def fleet(executor):
        return run_fleet(bags, tmp / f"run{next(counter)}", cfg, executor, resume=False)

    walls, _ = timed(lambda: [replay(b, tmp / f"plain{next(counter)}", cfg, keep_samples=0) for b in bags],
                     args.repeat)
    serial_walls, serial = timed(lambda: fleet(SerialExecutor()), args.repeat)
    bag_s = sum(r["duration_s"] for r in serial.records)
    plain_per_bag = min(walls) / len(bags)
    cpu = lambda run: sum(r["timing"]["cpu_s"] for r in run.records)  # noqa: E731
    rows = [row("plain", walls, len(bags), bag_s, float("nan"), None),
            row("fleet serial", serial_walls, len(bags), bag_s, cpu(serial), plain_per_bag)]
    init_s = {}
    for workers in (1, 2):
        t0 = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        init_s[workers] = time.perf_counter() - t0
        ray_walls, run = timed(lambda: fleet(RayExecutor(Resources(num_cpus=1))), args.repeat)
        ray.shutdown()
        assert all(r["status"] == "ok" for r in run.records), [r["reason"] for r in run.records]
        rows.append(row(f"ray {workers} worker{'s' if workers > 1 else ''}", ray_walls, len(bags), bag_s, cpu(run),
                        plain_per_bag))
    rows[0]["cpu_s"] = None
    speedup = rows[2]["wall_min_s"] / rows[3]["wall_min_s"]
    print_table(rows, ["variant", "wall_min_s", "wall_median_s", "bags_per_s", "bag_s_per_wall_s", "cpu_s",
                       "per_bag_s", "overhead_per_bag_s"])
    print(f"\n2 workers / 1 worker throughput: {speedup:.2f}x; Ray start-up: "
          + ", ".join(f"{w} CPU {s:.1f} s" for w, s in init_s.items()))
    write_results("fleet", rows, bags=len(bags), seconds_per_bag=args.seconds, camera_width=args.width,
                  repeat=args.repeat, models={c: how for c, (_, how) in cards.items()},
                  speedup_2_vs_1_workers=round(speedup, 3), ray_init_s={str(k): round(v, 2) for k, v in init_s.items()},
                  ray_version=ray.__version__,
                  load_average_1min={"before": round(load_before[0], 2), "after": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
