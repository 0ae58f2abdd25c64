"""Frames per second of the offline bag replay, per capability alone and for the whole suite.

``glassbox.bag.replay.replay`` runs on a short synthetic drive (``glassbox sim``: HDL-64 LiDAR at 10 Hz, 640 x 512
RGB at 15 Hz and thermal at 10 Hz, with ground truth), once with ``capabilities=("lidar",)``, once per camera
capability, and once with all four. Frames per second = frames the replay processed (LiDAR scans, RGB frames,
fused RGB-thermal pairs) / wall time of the ``replay`` call, which includes reading and decoding the bag,
writing every output topic to the output mcap, the entropy monitor and the metrics against ground truth. The
real-time factor is the drive's duration over that wall time (>= 1: faster than the sensors record).
The per-frame pipeline times the replay recorded (``timings_ms["total"]`` of each result) are summed per
capability to show how much of the wall time is the pipelines themselves (``pipeline_share``); the wall time is also split
into setup (opening the bag, building the pipelines), the frame loop and the finish (metrics, closing), and
``loop_fps`` counts the frame loop alone.

Models: the shipped cards in ``models/`` where they exist, else untrained networks of the same architecture
(``tests/support/support_models.py``), which run exactly as long. Backend: ONNX Runtime on the CPU.

The drive is generated once (about a minute per simulated second on the 2-core machine) and cached in
``$TMPDIR/glassbox_bench/``; ``--bag`` replays an existing one instead.
Run: ``.venv/bin/python bench/bench_replay.py`` (writes ``bench/results/replay.json``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "support"))

from _common import print_table, write_results, model_cards  # noqa: E402
from glassbox.bag.replay import ReplayConfig, replay  # noqa: E402

RUNS = (("lidar",), ("refiner",), ("segmentation",), ("fusion",), ("lidar", "refiner", "segmentation", "fusion"))


def drive_bag(seconds: float, seed: int) -> tuple[Path, float]:
    """The cached synthetic drive (generated on first use) and the seconds its generation took (0 if cached)."""
    cache = Path(tempfile.gettempdir()) / "glassbox_bench"
    bag = cache / f"drive_{seconds:g}s_seed{seed}.mcap"
    if bag.is_file():
        return bag, 0.0
    cache.mkdir(parents=True, exist_ok=True)
    exe = shutil.which("glassbox") or str(Path(sys.executable).parent / "glassbox")
    partial = bag.with_name(bag.stem + ".partial.mcap")
    partial.unlink(missing_ok=True)
    print(f"generating a {seconds:g} s synthetic drive into {bag} (about a minute per simulated second) ...",
          flush=True)
    t0 = time.perf_counter()
    subprocess.run([exe, "sim", "--seconds", str(seconds), "--seed", str(seed), "--out", str(partial), "--quiet"],
                   check=True)
    partial.rename(bag)
    calib = partial.with_suffix(".calib.yaml")
    if calib.is_file():
        calib.rename(bag.with_suffix(".calib.yaml"))
    return bag, time.perf_counter() - t0


def bag_facts(bag: Path) -> dict:
    from rosbags.highlevel import AnyReader
    with AnyReader([bag]) as reader:
        counts = {c.topic: c.msgcount for c in reader.connections}
        duration_s = (reader.end_time - reader.start_time) * 1e-9
    return {"duration_s": duration_s, "lidar_scans": counts.get("/sensors/lidar/points", 0),
            "rgb_frames": counts.get("/sensors/camera/rgb/image_raw", 0),
            "thermal_frames": counts.get("/sensors/camera/thermal/image_raw", 0), "size_mb": bag.stat().st_size / 1e6}


def run_once(bag: Path, caps: tuple[str, ...], cards: dict, threads: int, out_dir: Path, drive_s: float) -> dict:
    cfg = ReplayConfig(capabilities=caps, threads=threads, **{f"{c}_card": str(cards[c][0]) for c in caps})
    out = out_dir / f"replay_{'_'.join(caps)}"        # rosbag2 folder holding the mcap
    ticks: list[float] = []                        # first and latest message read: the frame loop's span
    t0 = time.perf_counter()
    result = replay(bag, out, cfg, overwrite=True,
                    progress=lambda done, total: ticks.append(time.perf_counter()) if not ticks else
                    ticks.__setitem__(slice(1, None), [time.perf_counter()]))
    wall = time.perf_counter() - t0
    setup_s, loop_s = ticks[0] - t0, ticks[-1] - ticks[0]
    frames = Counter(f["capability"] for f in result.frames)
    pipeline_s = {c: sum(f["timings_ms"].get("total", 0.0) for f in result.frames if f["capability"] == c) * 1e-3
                  for c in frames}
    parts: dict[str, dict[str, float]] = {}
    for c in frames:
        fs = [f["timings_ms"] for f in result.frames if f["capability"] == c]
        parts[c] = {k: round(sum(t.get(k, 0.0) for t in fs) / len(fs), 3) for k in fs[0]}
    n = sum(frames.values())
    row = {"capabilities": "+".join(caps) if len(caps) < 4 else "suite (all four)", "frames": n,
           "frames_by_capability": dict(frames), "wall_s": wall, "fps": n / wall if wall > 0 else 0.0,
           "realtime_factor": drive_s / wall if wall > 0 else 0.0,
           "setup_s": setup_s, "loop_s": loop_s, "finish_s": wall - setup_s - loop_s,
           "loop_fps": n / loop_s if loop_s > 0 else 0.0,
           "pipeline_s_by_capability": {c: round(v, 3) for c, v in pipeline_s.items()},
           "pipeline_share": sum(pipeline_s.values()) / wall if wall > 0 else 0.0,
           "pipeline_parts_mean_ms": parts,
           "messages_written": result.messages_written, "rejected": dict(result.rejected),
           "warnings": list(result.warnings)}
    for c in frames:
        row[f"{c}_fps"] = frames[c] / wall if wall > 0 else 0.0
    shutil.rmtree(out, ignore_errors=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=2.0, help="length of the synthetic drive (default 2 s)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bag", type=Path, default=None, help="replay this bag instead of the synthetic drive")
    ap.add_argument("--threads", type=int, default=0, help="ONNX Runtime intra-op threads (0 = library default)")
    args = ap.parse_args()
    t_bench = time.perf_counter()
    bag, gen_s = (args.bag, 0.0) if args.bag else drive_bag(args.seconds, args.seed)
    facts = bag_facts(bag)
    rows = []
    with tempfile.TemporaryDirectory(prefix="glassbox_bench_replay_") as tmp:
        cards = model_cards(Path(tmp))
        for caps in RUNS:
            row = run_once(bag, caps, cards, args.threads, Path(tmp), facts["duration_s"])
            rows.append(row)
            print(f"{row['capabilities']}: {row['frames']} frames in {row['wall_s']:.1f} s = {row['fps']:.2f} fps",
                  flush=True)
    print()
    print_table(rows, ["capabilities", "frames", "wall_s", "fps", "setup_s", "loop_fps", "realtime_factor",
                       "pipeline_share",
                       "lidar_fps", "refiner_fps", "segmentation_fps", "fusion_fps"])
    write_results("replay", rows, bag={"path": str(bag), "generated_in_s": gen_s, **facts},
                  models={c: src for c, (_, src) in cards.items()}, threads=args.threads,
                  units={"wall_s": "seconds", "fps": "frames per second", "*_fps": "frames per second",
                         "realtime_factor": "drive seconds per wall second", "setup_s": "seconds",
                         "loop_s": "seconds", "finish_s": "seconds", "loop_fps": "frames per second",
                         "pipeline_share": "summed per-frame pipeline time / wall time"},
                  notes=["frames = LiDAR scans, RGB frames or fused RGB-thermal pairs processed; wall time of the "
                         "whole replay() call (bag read + decode, stages, output bag, entropy monitor, metrics)",
                         "setup_s = replay() start -> first message read (bag open, topic discovery, pipelines "
                         "built); loop_s = first -> last message read; finish_s = the rest (last frame, metrics, "
                         "closing the output bag); loop_fps = frames / loop_s",
                         "the suite run refines each RGB frame before segmentation (refine_before_segmentation)"],
                  load_average=os.getloadavg(), total_wall_s=time.perf_counter() - t_bench)


if __name__ == "__main__":
    main()
