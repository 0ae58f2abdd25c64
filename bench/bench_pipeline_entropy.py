"""What the per-layer entropy costs a deployed pipeline: every shipped card on ONNX Runtime (CPU), end to end.

Per card, interleaved in one run (so load changes hit all variants alike): the bare network (the card's
network exported without any entropy output, from its ``.pt`` weights), the pipeline with the probe off,
and the pipeline with the probe on at ``every_n = 1`` (the shipped graph computes the entropy statistics
itself, ``glassbox.export.entropy_graph``). Reported: wall time min and median, process CPU time median, and
the overhead of entropy on vs off (median and min). This is the figure a user sees; ``bench_entropy.py``
measures the estimator alone.

Run: ``python bench/bench_pipeline_entropy.py [--repeat N] [--threads T]`` (writes
``bench/results/pipeline_entropy.json``).
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from _common import ROOT, print_table, write_results
from glassbox.entropy import ProbeConfig
from glassbox.export import export_with_features
from glassbox.export.reexport import pipeline_classes
from glassbox.models.card import load_card
from glassbox.runtime import OrtBackend, RuntimeConfig

CARDS = ("spi_lidar", "refiner", "bisenet", "bisenet_binary", "gem", "gem_rgb", "gem_thermal")


def frame_args(card) -> tuple:
    """One input frame of the card's pipeline: a synthetic LiDAR scan, or camera images at camera size."""
    if card.task == "lidar":
        from glassbox.datasets.synthetic import SyntheticLidarDataset
        frame = SyntheticLidarDataset("test", size=1, lidar="hdl64", seed=0).arrays(0)
        return (frame["points"],), {"ring": frame["ring"]}
    w, h = card.extra.get("camera_size", (320, 256))
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return ((rgb, rng.integers(0, 256, (h, w), dtype=np.uint8)) if card.task == "rgbt_detection" else (rgb,)), {}


def timed(fn) -> tuple[float, float]:
    t0, c0 = time.perf_counter(), time.process_time()
    fn()
    return 1e3 * (time.perf_counter() - t0), 1e3 * (time.process_time() - c0)


def bench_card(name: str, repeat: int, threads: int, tmp: Path) -> dict:
    path = ROOT / "models" / f"{name}.card.yaml"
    card = load_card(path)
    cls = pipeline_classes()[card.task]
    on = cls.from_card(path, threads=threads, probe=ProbeConfig())
    off = cls.from_card(path, threads=threads, probe=ProbeConfig(enabled=False))
    model = cls.from_card(path, backend="torch", probe=ProbeConfig(enabled=False)).runtime.model
    example = {n: torch.zeros(s["shape"]) for n, s in card.inputs.items()}
    export_with_features(model, example, tmp / f"{name}_bare.onnx", list(card.outputs), [],
                         dynamic_spatial=all("dynamic" in s for s in card.inputs.values()
                                                        if len(s["shape"]) == 4))
    bare = OrtBackend(tmp / f"{name}_bare.onnx", RuntimeConfig(backend="onnxruntime", threads=threads),
                      list(card.outputs))
    args, kwargs = frame_args(card)
    net_in = {n: np.random.default_rng(0).random(s["shape"], dtype=np.float32) for n, s in card.inputs.items()}
    variants = {"bare_network": lambda: bare.run(net_in), "entropy_off": lambda: off(*args, **kwargs),
                "entropy_on": lambda: on(*args, **kwargs)}
    for fn in variants.values():
        fn(), fn()
    wall = {k: [] for k in variants}
    cpu = {k: [] for k in variants}
    for _ in range(repeat):
        for k, fn in variants.items():
            w, c = timed(fn)
            wall[k].append(w)
            cpu[k].append(c)
    row = {"card": name}
    for k in variants:
        row[f"{k}_min_ms"], row[f"{k}_median_ms"] = min(wall[k]), statistics.median(wall[k])
        row[f"{k}_cpu_ms"] = statistics.median(cpu[k])
    row["overhead_pct_median"] = 100 * (row["entropy_on_median_ms"] / row["entropy_off_median_ms"] - 1)
    row["overhead_pct_min"] = 100 * (row["entropy_on_min_ms"] / row["entropy_off_min_ms"] - 1)
    row["overhead_cpu_pct"] = 100 * (row["entropy_on_cpu_ms"] / row["entropy_off_cpu_ms"] - 1)
    row["entropy_stage_ms"] = on(*args, **kwargs).entropy.compute_time_ms
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0 = default)")
    parser.add_argument("--cards", nargs="*", default=list(CARDS))
    args = parser.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        rows = [bench_card(n, args.repeat, args.threads, Path(tmp)) for n in args.cards]
    print(f"pipeline time per frame, ONNX Runtime CPU, {args.threads} thread(s), {args.repeat} interleaved repeats")
    print_table(rows, ["card", "bare_network_median_ms", "entropy_off_median_ms", "entropy_on_median_ms",
                       "entropy_off_min_ms", "entropy_on_min_ms", "entropy_off_cpu_ms", "entropy_on_cpu_ms",
                       "overhead_pct_median", "overhead_pct_min", "overhead_cpu_pct"])
    write_results("pipeline_entropy", rows, threads=args.threads, repeat=args.repeat,
                  units={"*_ms": "milliseconds per frame (wall; *_cpu_ms: process CPU time, median)",
                         "*_pct": "entropy on (every_n=1) vs off, same run"})


if __name__ == "__main__":
    main()
