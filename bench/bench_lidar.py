"""LiDAR front end and detection pipeline timings.

1. Spherical projection to the 5-channel network input (range, x, y, z, intensity; closest point wins):
   a 64-beam scan of 131,072 points to 5 x 64 x 2048 (goal <= 10 ms on the 2-core dev CPU) and a 128-beam scan
   of 262,144 points to 5 x 128 x 2048 (goal <= 2.3x the 64-beam time), rows from the ring field and from
   the elevation (beam table).
2. Pipeline stages for 64 x 1024 and 64 x 2048 range images: PointCloud2 bytes -> xyzi (decode), projection,
   network in eager PyTorch vs ONNX Runtime (one intra-op thread each), entropy profile, decode + rotated NMS.
   The network is the shipped ``models/spi_lidar.pt`` when present (else fresh weights, said in the output).
3. Decoding real detections: the shipped card on simulated HDL-64E streets (its sensor, 64 x 2048), decoded with
   the card's decoder (gated box voting, ``glassbox.lidar.decode``) and with the peak boxes alone, alternated in
   one run; the ratio is what the voting adds to the decode step.

Run: ``python bench/bench_lidar.py`` (writes ``bench/results/lidar.json``).
"""
from __future__ import annotations

import math
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

from _common import print_table, time_ms, write_results
from glassbox.config import from_dict
from glassbox.export import export_with_features
from glassbox.lidar import (DecodeConfig, ProjectionConfig, SpiConfig, build_model, decode, normalise,
                            project_points)
from glassbox.msg import pointcloud2_fields_from_dtype, pointcloud2_to_xyzi, xyz_to_structured
from glassbox.pipelines.lidar import INPUT_NAME, LidarDetectionConfig, LidarDetectionPipeline
from glassbox.runtime import load_state

ROOT = Path(__file__).resolve().parents[1]


def spinning_scan(beams: int, steps: int, fov=(2.0, -24.9), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A full-return sweep: every beam fires at every azimuth step; ranges of a street-like mix (ground, walls)."""
    rng = np.random.default_rng(seed)
    elev = np.radians(np.linspace(fov[0], fov[1], beams))
    az = np.linspace(-math.pi, math.pi, steps, endpoint=False) + rng.uniform(0, 2 * math.pi / steps)
    e, a = np.meshgrid(elev, az, indexing="ij")
    ground = np.where(e < -0.01, 1.73 / np.maximum(-np.sin(e), 1e-3), 200.0)
    wall = 6.0 / np.maximum(np.abs(np.sin(a)), 0.05)
    r = np.minimum(np.minimum(ground, wall), rng.uniform(5, 80, e.shape)) + rng.normal(0, 0.02, e.shape)
    pts = np.stack([r * np.cos(e) * np.cos(a), r * np.cos(e) * np.sin(a), r * np.sin(e),
                    rng.random(e.shape)], -1).reshape(-1, 4).astype(np.float32)
    ring = np.broadcast_to((beams - 1 - np.arange(beams))[:, None], e.shape).reshape(-1).astype(np.uint16)
    perm = rng.permutation(len(pts))
    return pts[perm], ring[perm]


def projection_rows() -> list[dict]:
    rows = []
    for beams, n_steps in ((64, 2048), (128, 2048)):
        pts, ring = spinning_scan(beams, n_steps)
        for mode in ("ring", "elevation"):
            beams_deg = tuple(np.linspace(2.0, -24.9, beams))
            cfg = ProjectionConfig(height=beams, width=2048, beam_elevations_deg=beams_deg,
                                   fov_up_deg=2.3, fov_down_deg=-25.2, ring_order="bottom_first",
                                   use_ring=mode == "ring")
            r = ring if mode == "ring" else None
            t = time_ms(lambda: normalise(project_points(pts, cfg, ring=r)), repeat=30)
            t["cpu_ms"] = cpu_ms(lambda: normalise(project_points(pts, cfg, ring=r)), repeat=30)
            kept = int(project_points(pts, cfg, ring=r).mask.sum())
            rows.append({"case": f"{beams}-beam {len(pts)} pts -> 5x{beams}x2048 ({mode})", "points": len(pts),
                         "pixels_filled": kept, **t})
    return rows


def cpu_ms(fn, repeat: int = 30) -> float:
    """Mean process CPU time of ``fn`` in ms: less sensitive than wall time to other jobs on a shared machine."""
    fn()
    t0 = time.process_time()
    for _ in range(repeat):
        fn()
    return (time.process_time() - t0) / repeat * 1e3


def fake_pointcloud2(points: np.ndarray, ring: np.ndarray) -> SimpleNamespace:
    cloud = xyz_to_structured(points, extra={"ring": ring})
    fields = [SimpleNamespace(name=n, offset=o, datatype=d, count=c) for n, o, d, c in
              pointcloud2_fields_from_dtype(cloud.dtype)]
    return SimpleNamespace(height=1, width=len(cloud), point_step=cloud.dtype.itemsize,
                           row_step=cloud.dtype.itemsize * len(cloud), is_bigendian=False, fields=fields,
                           data=cloud.tobytes())


def pipeline_rows(tmp: Path) -> tuple[list[dict], str]:
    weights = ROOT / "models" / "spi_lidar.pt"
    model_cfg = SpiConfig()
    card = ROOT / "models" / "spi_lidar.card.yaml"
    if card.exists():
        from glassbox.models.card import load_card
        model_cfg = from_dict(SpiConfig, load_card(card).extra["model_config"])
    source = str(weights.relative_to(ROOT)) if weights.exists() else "fresh weights (no models/spi_lidar.pt)"
    model = build_model("spi", model_cfg).eval()
    if weights.exists():
        model.load_state_dict(load_state(weights)[1])
    else:
        torch.save(model.state_dict(), tmp / "spi.pt")
        weights = tmp / "spi.pt"
    onnx_path = tmp / "spi.onnx"
    export_with_features(model, {INPUT_NAME: torch.zeros(1, model_cfg.in_channels, 64, 1024)}, onnx_path,
                         dynamic_spatial=True)
    pts, ring = spinning_scan(64, 2048)
    msg = fake_pointcloud2(pts, ring)
    rows = []
    for width in (1024, 2048):
        beams_deg = tuple(np.linspace(2.0, -24.9, 64))
        proj = ProjectionConfig(height=64, width=width, beam_elevations_deg=beams_deg, ring_order="bottom_first")
        base = LidarDetectionConfig(projection=proj, model=model_cfg, decode=DecodeConfig(), threads=1)
        pipes = {"torch": LidarDetectionPipeline(replace(base, backend="torch", model_path=str(weights))),
                 "onnxruntime": LidarDetectionPipeline(replace(base, backend="onnxruntime",
                                                               model_path=str(onnx_path)))}
        image, x = pipes["torch"].project(pts, ring)
        heads, inference = pipes["onnxruntime"].network(x)
        row = {"input": f"64x{width}", "points": len(pts),
               "decode_pc2_ms": time_ms(lambda: pointcloud2_to_xyzi(msg))["median_ms"],
               "project_ms": time_ms(lambda: pipes["torch"].project(pts, ring))["median_ms"]}
        for name, pipe in pipes.items():
            row[f"net_{name}_ms"] = time_ms(lambda: pipe.network(x), repeat=10, warmup=2)["median_ms"]
        row["ort_speedup"] = row["net_torch_ms"] / row["net_onnxruntime_ms"]
        row["entropy_ms"] = time_ms(lambda: pipes["onnxruntime"].entropy(inference), repeat=10)["median_ms"]
        row["decode_nms_ms"] = time_ms(lambda: decode(heads, image.xyz, image.mask, base.decode),
                                       repeat=20)["median_ms"]
        rows.append(row)
    return rows, source


def decoder_rows(streets: int = 4, repeat: int = 10) -> list[dict]:
    """Decode time of the shipped card's outputs on ``streets`` simulated HDL-64E scans, voting on and off."""
    from glassbox.datasets.synthetic import SyntheticLidarDataset
    card = ROOT / "models" / "spi_lidar.card.yaml"
    if not card.exists():
        return []
    pipe = LidarDetectionPipeline.from_card(card, threads=1)
    scans = SyntheticLidarDataset("val", size=streets, lidar="hdl64", seed=0)
    cases = []
    for i in range(streets):
        a = scans.arrays(i)
        image, x = pipe.project(a["points"], a["ring"])
        cases.append((pipe.network(x)[0], image))
    variants = {"card decoder (gated voting)": pipe.cfg.decode,
                "peak boxes only": replace(pipe.cfg.decode, box_vote_classes=())}
    times: dict[str, list[float]] = {k: [] for k in variants}
    cpu: dict[str, float] = {k: 0.0 for k in variants}
    for _ in range(repeat):                                   # alternate the variants, every scan each round
        for name, cfg in variants.items():
            for heads, image in cases:
                t0, c0 = time.perf_counter(), time.process_time()
                decode(heads, image.xyz, image.mask, cfg)
                times[name].append((time.perf_counter() - t0) * 1e3)
                cpu[name] += (time.process_time() - c0) * 1e3
    n = len(decode(cases[0][0], cases[0][1].xyz, cases[0][1].mask, pipe.cfg.decode))
    rows = [{"case": f"decode, {streets} HDL-64E streets", "variant": name,
             "median_ms": float(np.median(t)), "min_ms": float(np.min(t)), "cpu_ms": cpu[name] / len(t),
             "detections_first_scan": n} for name, t in times.items()]
    rows[0]["ratio_to_peak_only"] = rows[0]["median_ms"] / rows[1]["median_ms"]
    return rows


def main() -> int:
    torch.set_num_threads(1)
    proj = projection_rows()
    print("Projection to the 5-channel network input (median of 30 runs)")
    print_table(proj, ["case", "points", "pixels_filled", "median_ms", "min_ms", "cpu_ms"])
    by = {r["case"]: r["median_ms"] for r in proj}
    ratio = {mode: by[f"128-beam 262144 pts -> 5x128x2048 ({mode})"] / by[f"64-beam 131072 pts -> 5x64x2048 ({mode})"]
             for mode in ("ring", "elevation")}
    print(f"(load average at start: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores)")
    print(f"\n128-beam / 64-beam time: ring {ratio['ring']:.2f}x, elevation {ratio['elevation']:.2f}x (goal <= 2.3x); "
          f"64-beam ring projection {by['64-beam 131072 pts -> 5x64x2048 (ring)']:.2f} ms (goal <= 10 ms)")
    with tempfile.TemporaryDirectory() as d:
        pipe, source = pipeline_rows(Path(d))
    print(f"\nPipeline stages, ms (median; one intra-op thread; network: {source})")
    cols = ["input", "points", "decode_pc2_ms", "project_ms", "net_torch_ms", "net_onnxruntime_ms", "ort_speedup",
            "entropy_ms", "decode_nms_ms"]
    print_table(pipe, cols)
    dec = decoder_rows()
    if dec:
        print("\nDecoding the shipped card's outputs on simulated HDL-64E streets, ms per scan (alternated)")
        print_table(dec, ["case", "variant", "median_ms", "min_ms", "cpu_ms", "detections_first_scan",
                          "ratio_to_peak_only"])
    write_results("lidar", proj + pipe + dec, scaling_128_over_64=ratio, network=source,
                  goals={"projection_64_ms": 10.0, "scaling_ratio": 2.3})
    return 0


if __name__ == "__main__":
    sys.exit(main())
