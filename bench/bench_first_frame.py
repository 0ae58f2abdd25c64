"""First frame vs steady state: what a node pays once, at configure and activate, and what it pays per frame.

Per shipped model card (``models/*.card.yaml``), through the pipeline a node builds (``glassbox.stages.build``
with the node's defaults: ONNX Runtime on the CPU, library threads, entropy profile on every frame, no warm-up
at build, as ``PerceptionNode.build_pipeline``), on one synthetic input of the node benchmark (an HDL-64 sweep,
a 640 x 512 RGB + thermal pair):

* ``build``: loading the card, checking the model's sha256 and creating the inference session (a node's
  configure);
* ``warmup``: the one warm-up inference on zeros of the model's input shape (a node's activate);
* ``first``: the first real frame after that warm-up;
* ``cold_first``: the first frame of a session that was not warmed up (what the first scan or image would
  cost without it);
* ``steady``: median and min over ``--frames`` frames after those.

Each of build, warm-up, first and cold first is measured on ``--repeat`` fresh sessions (median and min of the
repeats); wall time and process CPU time (all threads) side by side. The 1-minute load average before and after
is written with the results: the machine may be shared, so compare figures of one run.

Run: ``python bench/bench_first_frame.py [--repeat N] [--frames N] [--providers tensorrt,cuda,cpu]
[--backend torch --device cuda]`` (writes bench/results/first_frame.json). On a GPU (a Jetson) this shows what
the warm-up is for: TensorRT builds its engine, CUDA and cuDNN choose their kernels in the first inference, which
the warm-up takes out of the first frame.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

from _common import ROOT, print_table, write_results
from glassbox.capabilities import all_capabilities
from glassbox.models.card import load_card
from glassbox.stages.build import build_pipeline


def capability_of(card_path: Path):
    """The capability whose pipeline runs the card's task."""
    from glassbox.export.reexport import pipeline_classes
    cls = pipeline_classes()[load_card(card_path).task]
    return next(c for c in all_capabilities() if c.load_pipeline() is cls)


def timed(fn) -> tuple[object, float, float]:
    """(result, wall ms, process CPU ms) of one call."""
    w0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, (time.perf_counter() - w0) * 1e3, (time.process_time() - c0) * 1e3


def frame_call(cap: str, pipeline, inputs: dict):
    if cap == "lidar":
        return lambda: pipeline(inputs["points"], inputs["ring"])
    if cap == "fusion":
        return lambda: pipeline(inputs["rgb"], inputs["thermal"])
    return lambda: pipeline(inputs["rgb"])


def measure(card_path: Path, inputs: dict, repeat: int, frames: int, runtime: dict) -> dict:
    """One row: ``runtime`` holds backend, providers and device, as a node's parameters."""
    cap = capability_of(card_path).name
    build = lambda: build_pipeline(cap, card_path, warmup_runs=0, **runtime)[0]  # noqa: E731  (a configure)
    phases: dict[str, list[tuple[float, float]]] = {k: [] for k in ("build", "warmup", "first", "cold_first")}
    for _ in range(repeat):
        pipeline, *t = timed(build)
        phases["build"].append(t)
        phases["warmup"].append(timed(pipeline.warmup)[1:])
        phases["first"].append(timed(frame_call(cap, pipeline, inputs))[1:])
        cold = build()
        phases["cold_first"].append(timed(frame_call(cap, cold, inputs))[1:])
    run = frame_call(cap, pipeline, inputs)
    steady = [timed(run)[1:] for _ in range(frames)]
    row = {"model": card_path.name.removesuffix(".card.yaml"), "capability": cap,
           "providers": ",".join(pipeline.runtime.providers)}
    for name, samples in {**phases, "steady": steady}.items():
        wall, cpu = [s[0] for s in samples], [s[1] for s in samples]
        row[f"{name}_median_ms"] = round(statistics.median(wall), 2)
        row[f"{name}_min_ms"] = round(min(wall), 2)
        row[f"{name}_cpu_median_ms"] = round(statistics.median(cpu), 2)
    row["first_over_steady"] = round(row["first_median_ms"] / row["steady_median_ms"], 2)
    row["cold_first_over_steady"] = round(row["cold_first_median_ms"] / row["steady_median_ms"], 2)
    return row


def main() -> None:
    import bench_nodes
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=5, help="fresh sessions per model")
    ap.add_argument("--frames", type=int, default=30, help="steady-state frames per model")
    ap.add_argument("--backend", default="onnxruntime", choices=("onnxruntime", "torch"))
    ap.add_argument("--providers", default="cpu", help="ONNX Runtime execution providers, in order")
    ap.add_argument("--device", default="cpu", help="torch device of the torch backend (cpu, cuda)")
    args = ap.parse_args()
    runtime = {"backend": args.backend, "providers": tuple(p for p in args.providers.split(",") if p),
               "device": args.device}
    inputs = bench_nodes.make_inputs()
    cards = sorted((ROOT / "models").glob("*.card.yaml"))
    load_before = os.getloadavg()[0]
    build_pipeline(capability_of(cards[0]).name, cards[0], **runtime)     # imports, the library's start: untimed
    rows = [measure(card, inputs, args.repeat, args.frames, runtime) for card in cards]
    print_table(rows, ["model", "build_median_ms", "build_min_ms", "warmup_median_ms", "first_median_ms",
                       "cold_first_median_ms", "steady_median_ms", "steady_min_ms", "steady_cpu_median_ms",
                       "first_over_steady", "cold_first_over_steady"])
    write_results("first_frame", rows, repeat=args.repeat, frames=args.frames, backend=args.backend,
                  inputs="HDL-64 sweep; 640 x 512 RGB + thermal (bench_nodes.make_inputs)",
                  load_average_1min={"before": round(load_before, 2), "after": round(os.getloadavg()[0], 2)})


if __name__ == "__main__":
    main()
