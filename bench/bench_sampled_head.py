"""Cost of a sampled (variational / MC dropout) output head: a card against a deterministic card of the same
trunk, through the pipeline a node runs (ONNX Runtime, entropy probe on, in the graph where the card has it).

    python bench/bench_sampled_head.py --card models/gem.card.yaml --baseline /tmp/old/models/gem.card.yaml
        [--reps 40] [--threads 1]

The baseline is the deterministic card the sampled head was fitted on (e.g. from an earlier commit:
``git worktree add /tmp/old <rev>``). The two pipelines are called alternately on the same seeded camera frame
(640x512 RGB, and thermal for a fusion card) or, for a LiDAR card, the same simulated scan of the card's sensor
(written to ``bench/results/sampled_head_lidar.json``), after warm-up; per variant the median and minimum of the total
and of each stage (``timings_ms``), the process CPU time per call, and the sampled / deterministic ratios.
Without ``--baseline`` it says so and measures nothing. Writes ``bench/results/sampled_head.json``.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from _common import print_table, write_results


def open_pipeline(card: Path, threads: int):
    from glassbox.models import load_card
    from glassbox.pipelines import FusionPipeline, LidarDetectionPipeline, SegmentationPipeline

    task = load_card(card).task
    if task == "lidar":
        return LidarDetectionPipeline.from_card(card, threads=threads)
    if task == "rgbt_detection":
        return FusionPipeline.from_card(card, threads=threads, rgb_fallback_card="")
    if task == "semantic_segmentation":
        return SegmentationPipeline.from_card(card, threads=threads)
    raise SystemExit(f"{card}: a {task} card has no sampled head to measure")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--card", type=Path, default=Path(__file__).resolve().parents[1] / "models/gem.card.yaml")
    parser.add_argument("--baseline", type=Path, default=None, help="the deterministic card (required to measure)")
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    if args.baseline is None:                     # `make bench` runs every benchmark without arguments
        print("bench_sampled_head: no --baseline deterministic card given; nothing measured")
        return
    pipes = {"sampled": open_pipeline(args.card, args.threads), "deterministic": open_pipeline(args.baseline,
                                                                                                 args.threads)}
    rng = np.random.default_rng(0)
    rgb, thermal = rng.integers(0, 255, (512, 640, 3), np.uint8), rng.integers(0, 255, (512, 640), np.uint8)
    fusion = hasattr(pipes["sampled"], "fallback")
    lidar = hasattr(pipes["sampled"], "fit")
    if lidar:
        from glassbox.datasets.synthetic import SyntheticLidarDataset
        scan = SyntheticLidarDataset("val", size=1, lidar=pipes["sampled"].fit.profile.name, seed=0).arrays(0)
        call = {k: (lambda p=p: p(scan["points"], scan["ring"])) for k, p in pipes.items()}
    else:
        call = {k: (lambda p=p: p(rgb, thermal)) if fusion else (lambda p=p: p(rgb)) for k, p in pipes.items()}
    for fn in call.values():
        for _ in range(5):
            fn()
    stages: dict[str, dict[str, list[float]]] = {k: {} for k in call}
    cpu: dict[str, list[float]] = {k: [] for k in call}
    for i in range(args.reps):
        for k in (("sampled", "deterministic") if i % 2 else ("deterministic", "sampled")):
            c0 = time.process_time()
            result = call[k]()
            cpu[k].append((time.process_time() - c0) * 1e3)
            for name, ms in result.timings_ms.items():
                stages[k].setdefault(name, []).append(ms)
    rows = []
    for k in call:
        row = {"variant": k, "card": str(args.card if k == "sampled" else args.baseline),
               "cpu_ms": statistics.median(cpu[k])}
        for name, ms in stages[k].items():
            row[f"{name}_ms"], row[f"{name}_min_ms"] = statistics.median(ms), min(ms)
        rows.append(row)
    s, d = rows
    ratios = {"total": s["total_ms"] / d["total_ms"], "total_min": s["total_min_ms"] / d["total_min_ms"],
              "network": s["network_ms"] / d["network_ms"], "cpu": s["cpu_ms"] / d["cpu_ms"]}
    last = "decode_ms" if lidar else "post_ms"
    print_table(rows, ["variant", "total_ms", "total_min_ms", "network_ms", "entropy_ms", last, "cpu_ms"])
    print("sampled / deterministic: " + ", ".join(f"{k} x{v:.3f}" for k, v in ratios.items()))
    frame = {"points": int(len(scan["points"]))} if lidar else {"frame": [640, 512]}
    write_results("sampled_head_lidar" if lidar else "sampled_head", rows, ratios=ratios, reps=args.reps,
                  threads=args.threads, backend="onnxruntime", **frame)


if __name__ == "__main__":
    main()
