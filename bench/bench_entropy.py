"""Benchmark of the entropy core: kNN estimator cost and probe overhead.

1. Per-layer cost of ``knn_entropy`` (k = 1) at (n, d) in {(128, 4096), (1024, 64), (1024, 256), (4096, 256)}
   against (a) a loop-per-sample implementation of the same formula (one distance row per sample, torch,
   same dtype) and (b) scipy's ``cKDTree`` (float64, the same formula); all three results are compared.
2. Overhead of an ``EntropyProbe`` with the default ``ProbeConfig`` on a small CNN's forward pass (no grad),
   measured by interleaving forwards with and without the probe, plus ``every_n = 4``.

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

from glassbox.entropy import EntropyProbe, ProbeConfig, knn_entropy

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
    """Median wall time (ms) over ``repeats`` calls, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), out


def bench_estimator(quick: bool) -> list[dict]:
    rows = []
    for n, d in SIZES:
        x = torch.randn(n, d, generator=torch.Generator().manual_seed(n + d))
        x64 = x.double()
        ours_ms, ours = timed(lambda: float(knn_entropy(x)), 3 if quick else 7)
        ours64_ms, ours64 = timed(lambda: float(knn_entropy(x64)), 3 if quick else 5)
        loop_ms, loop = timed(lambda: loop_knn_entropy(x), 1)
        tree_ms, tree = timed(lambda: kdtree_knn_entropy(x64.numpy()), 1 if quick or n * d > 500_000 else 3)
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
    """A small conv net on a 3 x 128 x 256 image (about 0.1 M parameters, 7 conv layers)."""

    def __init__(self) -> None:
        super().__init__()
        chans = [3, 16, 32, 32, 64, 64, 64, 64]
        strides = [2, 1, 2, 1, 2, 1, 1]
        self.layers = nn.ModuleList(
            nn.Sequential(nn.Conv2d(a, b, 3, stride=s, padding=1), nn.BatchNorm2d(b), nn.ReLU())
            for a, b, s in zip(chans[:-1], chans[1:], strides))
        self.head = nn.Conv2d(64, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return self.head(x)


def bench_probe(quick: bool) -> dict:
    model = SmallCnn().eval()
    x = torch.randn(1, 3, 128, 256, generator=torch.Generator().manual_seed(0))
    layers = [f"layers.{i}" for i in range(1, 7)]
    params = sum(p.numel() for p in model.parameters())
    iters = 15 if quick else 40
    result = {"model_params": params, "input_shape": list(x.shape), "probed_layers": len(layers),
              "iterations": iters}
    for label, cfg in (("default", ProbeConfig()), ("default_every_4", ProbeConfig(every_n=4))):
        probe = EntropyProbe(model, layers, cfg)
        probe.remove()
        bare, probed, probe_ms = [], [], []
        with torch.no_grad():
            for _ in range(3):
                model(x)
            for _ in range(iters):                  # interleaved, so load changes hit both alike
                start = time.perf_counter()
                model(x)
                bare.append(1e3 * (time.perf_counter() - start))
                probe = EntropyProbe(model, layers, cfg)
                probe.forward_count = len(probed)
                start = time.perf_counter()
                model(x)
                probed.append(1e3 * (time.perf_counter() - start))
                if probe.profile is not None:
                    probe_ms.append(probe.profile.compute_time_ms)
                probe.remove()
        bare_ms, probed_ms = statistics.median(bare), statistics.median(probed)
        result[label] = {
            "config": {k: getattr(cfg, k) for k in ("estimator", "k", "sample_mode", "max_samples", "max_dim",
                                                    "every_n")},
            "forward_ms": bare_ms, "forward_with_probe_ms": probed_ms,
            "overhead_pct": 100.0 * (probed_ms - bare_ms) / bare_ms,
            "mean_overhead_pct": 100.0 * (statistics.mean(probed) - statistics.mean(bare)) / statistics.mean(bare),
            "profile_compute_ms": statistics.median(probe_ms) if probe_ms else 0.0,
            "profile_compute_pct_of_forward": 100.0 * sum(probe_ms) / len(probed) / bare_ms,
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = bench_estimator(args.quick)
    probe = bench_probe(args.quick)

    print(f"kNN entropy (k=1), one layer, torch threads={args.threads}")
    print(f"{'n':>5} {'d':>5} | {'ours f32':>9} {'ours f64':>9} {'loop':>9} {'cKDTree':>9} | "
          f"{'x loop':>7} {'x tree':>7} {'x tree64':>8} | {'rel diff f64':>12}")
    for r in rows:
        print(f"{r['n']:>5} {r['d']:>5} | {r['ours_float32_ms']:>7.2f}ms {r['ours_float64_ms']:>7.2f}ms "
              f"{r['loop_ms']:>7.1f}ms {r['kdtree_ms']:>7.1f}ms | {r['speedup_vs_loop']:>6.1f}x "
              f"{r['speedup_vs_kdtree']:>6.1f}x {r['speedup64_vs_kdtree']:>7.1f}x | "
              f"{r['rel_diff_float64_vs_kdtree']:>12.1e}")
    print(f"\nEntropyProbe on a small CNN ({probe['model_params']} params, input {probe['input_shape']}, "
          f"{probe['probed_layers']} probed layers, median of {probe['iterations']})")
    for label in ("default", "default_every_4"):
        p = probe[label]
        print(f"  {label:<16} forward {p['forward_ms']:7.2f} ms, with probe {p['forward_with_probe_ms']:7.2f} ms, "
              f"overhead {p['overhead_pct']:+5.1f}% (mean {p['mean_overhead_pct']:+5.1f}%), profile "
              f"{p['profile_compute_ms']:.2f} ms = {p['profile_compute_pct_of_forward']:.1f}% of forward per frame")

    out = {
        "benchmark": "entropy",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "python": platform.python_version(), "cpu_count": os.cpu_count(),
                    "torch": torch.__version__, "torch_threads": args.threads},
        "units": {"*_ms": "milliseconds (median wall time)", "speedup_*": "ratio of times in the same run",
                  "*_pct": "percent of the bare forward time", "rel_diff_*": "relative difference of entropies"},
        "knn_entropy": rows,
        "probe_overhead": probe,
    }
    path = Path(__file__).resolve().parent / "results" / "entropy.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    main()
