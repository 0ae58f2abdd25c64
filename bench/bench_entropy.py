"""Benchmark of the entropy core: kNN estimator cost and probe overhead.

1. Per-layer cost of ``knn_entropy`` (k = 1) at (n, d) in {(128, 4096), (1024, 64), (1024, 256), (4096, 256)}
   against (a) a loop-per-sample implementation of the same formula (one distance row per sample, torch,
   same dtype) and (b) scipy's ``cKDTree`` (float64, the same formula); all three results are compared.
2. Overhead of an ``EntropyProbe`` with the default ``ProbeConfig`` on a small CNN's forward pass (no grad),
   measured by interleaving forwards with and without the probe, plus ``every_n = 4``, on an image-sized and
   a LiDAR-range-image-sized input.

Times are the thread's CPU time with one torch thread: the fastest of several runs for the estimator table
(see ``timed``), medians of interleaved runs for the overheads.

How this relates to the deployed figure: these are the estimator's and the eager probe's costs next to an eager
forward, on one thread. A deployed pipeline runs an exported graph on ONNX Runtime, where the entropy is part
of the graph (``glassbox.export.entropy_graph``) and its cost is that of the extra graph nodes plus the
profile assembly; ``bench/bench_pipeline_entropy.py`` measures that end to end per shipped card (entropy on
vs off in one run), and its figure, not this one, is what a user sees.

Prints a table and writes ``bench/results/entropy.json``. Run: ``python bench/bench_entropy.py [--quick]``.
"""
from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial import cKDTree
from scipy.special import digamma, gammaln
from torch import nn

from glassbox.entropy import EntropyProbe, ProbeConfig, knn_entropy, profile_from_features

SIZES = [(128, 4096), (1024, 64), (1024, 256), (4096, 256)]


def loop_knn_entropy(x: torch.Tensor, k: int = 1) -> float:
    """The same Kozachenko-Leonenko formula with one Python iteration per sample."""
    n, d = x.shape
    total = 0.0
    for i in range(n):
        dist = ((x - x[i]) ** 2).sum(1)
        dist[i] = float("inf")
        total += 0.5 * math.log(float(torch.kthvalue(dist, k).values))
    log_vd = 0.5 * d * math.log(math.pi) - math.lgamma(0.5 * d + 1)
    return -float(digamma(k)) + float(digamma(n)) + log_vd + d * total / n


def kdtree_knn_entropy(x: np.ndarray, k: int = 1) -> float:
    n, d = x.shape
    dist, _ = cKDTree(x).query(x, k=k + 1)
    log_vd = 0.5 * d * math.log(math.pi) - gammaln(0.5 * d + 1)
    return float(-digamma(k) + digamma(n) + log_vd + d * np.mean(np.log(dist[:, k])))


def timed(fn, repeats: int) -> tuple[float, object]:
    """Fastest CPU time of this thread (ms) over ``repeats`` calls, and the last result.

    Thread CPU time, not wall time: the benchmark runs with one torch thread (all work on the calling thread),
    and on a shared machine wall time mostly measures the other processes; the minimum is the least disturbed
    run (as ``timeit`` recommends).
    """
    times, out = [], None
    for _ in range(repeats):
        start = time.thread_time()
        out = fn()
        times.append(1e3 * (time.thread_time() - start))
    return min(times), out


def bench_estimator(quick: bool) -> list[dict]:
    rows = []
    for n, d in SIZES:
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d))
        x64 = x.double()
        big = n * n * d > 10**9
        ours_ms, ours = timed(lambda: float(knn_entropy(x)), 3 if quick else (5 if big else 30))
        ours64_ms, ours64 = timed(lambda: float(knn_entropy(x64)), 3 if quick else (5 if big else 30))
        loop_ms, loop = timed(lambda: loop_knn_entropy(x), 1 if quick or big else 3)
        tree_ms, tree = timed(lambda: kdtree_knn_entropy(x64.numpy()), 1 if quick or big else 3)
        rows.append({
            "n": n, "d": d, "ours_float32_ms": ours_ms, "ours_float64_ms": ours64_ms, "loop_ms": loop_ms,
            "kdtree_ms": tree_ms, "speedup_vs_loop": loop_ms / ours_ms, "speedup_vs_kdtree": tree_ms / ours_ms,
            "speedup64_vs_kdtree": tree_ms / ours64_ms,
            "rel_diff_float64_vs_kdtree": abs(ours64 - tree) / abs(tree),
            "rel_diff_float32_vs_kdtree": abs(ours - tree) / abs(tree),
            "rel_diff_loop_vs_kdtree": abs(loop - tree) / abs(tree),
        })
    return rows


class SmallCnn(nn.Module):
    """A small conv net (about 0.15 M parameters, 7 conv + BN + ReLU layers, 8x total stride)."""

    def __init__(self, in_channels: int = 3) -> None:
        super().__init__()
        chans = [in_channels, 16, 32, 32, 64, 64, 64, 64]
        strides = [2, 1, 2, 1, 2, 1, 1]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=s, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for a, b, s in zip(chans[:-1], chans[1:], strides))
        self.head = nn.Conv2d(64, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


INPUTS = {"image_3x128x256": (3, 128, 256), "range_image_5x64x1024": (5, 64, 1024)}


def bench_probe(quick: bool) -> dict:
    """Per-frame cost of the probe next to the bare forward, both as thread CPU time, interleaved."""
    result: dict = {}
    iters = 15 if quick else 40
    layers = [f"layers.{i}" for i in range(1, 7)]
    for input_name, shape in INPUTS.items():
        model = SmallCnn(shape[0]).eval()
        x = torch.randn(1, *shape, generator=torch.Generator().manual_seed(0))
        entry: dict = {"model_params": sum(p.numel() for p in model.parameters()), "input_shape": list(x.shape),
                       "probed_layers": len(layers), "iterations": iters}
        for label, cfg in (("default", ProbeConfig()), ("default_every_4", ProbeConfig(every_n=4))):
            bare, probed, probe_ms = [], [], []
            with torch.no_grad():
                for _ in range(3):
                    model(x)
                for i in range(iters):              # interleaved, so load changes hit both alike
                    start = time.thread_time()
                    model(x)
                    bare.append(1e3 * (time.thread_time() - start))
                    probe = EntropyProbe(model, layers, cfg)
                    probe.forward_count = i
                    start = time.thread_time()
                    model(x)
                    probed.append(1e3 * (time.thread_time() - start))
                    if probe.profile is not None:
                        probe_ms.append(probe.profile.compute_time_ms)
                    probe.remove()
            bare_ms, probed_ms = statistics.median(bare), statistics.median(probed)
            entry[label] = {
                "config": {k: getattr(cfg, k) for k in ("estimator", "k", "sample_mode", "max_samples",
                                                        "max_dim", "every_n")},
                "forward_cpu_ms": bare_ms, "forward_with_probe_cpu_ms": probed_ms,
                "overhead_pct_median": 100.0 * (probed_ms - bare_ms) / bare_ms,
                "overhead_pct_mean": 100.0 * (statistics.mean(probed) - statistics.mean(bare))
                / statistics.mean(bare),
                "overhead_pct_min": 100.0 * (min(probed) - min(bare)) / min(bare),
                "profile_wall_ms_median": statistics.median(probe_ms) if probe_ms else 0.0,
            }
        result[input_name] = entry
    return result


def bench_project_model(quick: bool) -> dict:
    """The LiDAR detector (SPI, default size) on a 5 x 64 x 1024 range image: every feature map profiled with
    ``profile_from_features``, as the detection pipeline does, against the network's own forward."""
    from glassbox.lidar.spi import build_model as build_spi, spi_config

    model = build_spi("spi", spi_config("default")).eval()
    x = torch.randn(1, 5, 64, 1024, generator=torch.Generator().manual_seed(0))
    iters = 8 if quick else 20
    with torch.no_grad():
        feats = model.forward_features(x)
        fwd, prof = [], []
        for _ in range(iters):                      # interleaved
            start = time.thread_time()
            model(x)
            fwd.append(1e3 * (time.thread_time() - start))
            start = time.thread_time()
            profile_from_features(feats, ProbeConfig())
            prof.append(1e3 * (time.thread_time() - start))
    return {"model": "spi default", "params": sum(p.numel() for p in model.parameters()),
            "input_shape": list(x.shape), "feature_maps": len(feats),
            "feature_shapes": {k: list(v.shape) for k, v in feats.items()},
            "forward_cpu_ms": statistics.median(fwd), "profile_cpu_ms": statistics.median(prof),
            "overhead_pct": 100.0 * statistics.median(prof) / statistics.median(fwd),
            "overhead_pct_min": 100.0 * min(prof) / min(fwd)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench_estimator(args.quick)
    probe = bench_probe(args.quick)
    project = bench_project_model(args.quick)

    print(f"kNN entropy (k=1), one layer, fastest thread CPU time, torch threads={args.threads}")
    print(f"{'n':>5} {'d':>5} | {'ours f32':>9} {'ours f64':>9} {'loop':>9} {'cKDTree':>9} | "
          f"{'x loop':>7} {'x tree':>7} {'x tree64':>8} | {'rel diff f64':>12}")
    for r in rows:
        print(f"{r['n']:>5} {r['d']:>5} | {r['ours_float32_ms']:>7.2f}ms {r['ours_float64_ms']:>7.2f}ms "
              f"{r['loop_ms']:>7.1f}ms {r['kdtree_ms']:>7.1f}ms | {r['speedup_vs_loop']:>6.1f}x "
              f"{r['speedup_vs_kdtree']:>6.1f}x {r['speedup64_vs_kdtree']:>7.1f}x | "
              f"{r['rel_diff_float64_vs_kdtree']:>12.1e}")
    print("\nEntropyProbe (6 probed layers) on a small CNN, thread CPU time per frame, medians")
    for input_name, entry in probe.items():
        for label in ("default", "default_every_4"):
            p = entry[label]
            print(f"  {input_name:<22} {label:<16} forward {p['forward_cpu_ms']:7.2f} ms, with probe "
                  f"{p['forward_with_probe_cpu_ms']:7.2f} ms, overhead {p['overhead_pct_median']:+5.1f}% "
                  f"(mean {p['overhead_pct_mean']:+5.1f}%, fastest runs {p['overhead_pct_min']:+5.1f}%), "
                  f"profile wall {p['profile_wall_ms_median']:.2f} ms")

    print(f"  LiDAR detector (SPI default, {project['params']} params) on {project['input_shape']}: forward "
          f"{project['forward_cpu_ms']:.2f} ms, profile of its {project['feature_maps']} feature maps "
          f"{project['profile_cpu_ms']:.2f} ms = {project['overhead_pct']:.1f}% (fastest runs "
          f"{project['overhead_pct_min']:.1f}%)")

    out = {
        "benchmark": "entropy",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": args.threads},
        "units": {"*_ms": "milliseconds of thread CPU time (estimators: fastest run; overheads: median) "
                          "unless named wall", "speedup_*": "ratio of times in the same run",
                  "*_pct": "percent of the bare forward time", "rel_diff_*": "relative difference of entropies"},
        "knn_entropy": rows,
        "probe_overhead": probe,
        "project_model_overhead": project,
    }
    path = Path(__file__).resolve().parent / "results" / "entropy.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
