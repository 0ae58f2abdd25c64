"""Camera model latency: refiner, BiSeNet and GEM, eager PyTorch vs ONNX Runtime, at 160x128 to 1280x720.

For each model and resolution: the median network time (ms) over ``--reps`` runs after a warm-up, with both
backends on the same inputs and the same number of threads; the ORT/torch ratio; and the refiner's time as a
share of the downstream model's at the same resolution (goal <= 15 %). The refiner predicts its correction on a
``grid`` x ``grid`` resample and applies it at full resolution; ``refiner_full`` is the same network with
``grid = 0`` (histograms and gate over every pixel, as the seed), for comparison. 160x128 is the shipped models' input
size: chained in a pipeline, the refiner runs on the resized image in front of the network. BiSeNet needs
sides divisible by 32, so 1280x720 is measured at 1280x736 (the next such height). A second table times the
whole pipelines (ONNX Runtime, entropy probe on) on camera frames of both sizes; there the segmentation and
fusion networks run at their trained input size, so their cost is nearly independent of the camera resolution.

Models: the shipped ones in ``models/`` (cards ``refiner``, ``bisenet``, ``gem``) when present, else freshly
initialised networks of the default configs. GPU rows are added when CUDA is available.

    python bench/bench_camera.py [--reps 5] [--threads 2] [--baseline-models DIR]

With ``--baseline-models`` (e.g. the ``models/`` of an earlier commit: ``git worktree add /tmp/old <rev>``) the
pipelines of both sets of cards are timed alternately and each shipped pipeline is given as a ratio of the
baseline's.

Writes ``bench/results/camera.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from glassbox.config import from_dict
from glassbox.export import export_with_features
from glassbox.models import load_card
from glassbox.runtime import OrtBackend, RuntimeConfig, load_state
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig
from glassbox.vision.gem import Gem, GemConfig
from glassbox.vision.refiner import Refiner, RefinerConfig

ROOT = Path(__file__).resolve().parents[1]
MODELS = ROOT / "models"
RESOLUTIONS = {"160x128": (160, 128), "320x256": (320, 256), "640x512": (640, 512), "1280x720": (1280, 720)}


def load_model(name: str, cls, cfg_cls, default_cfg):
    pt, card = MODELS / f"{name}.pt", MODELS / f"{name}.card.yaml"
    if pt.is_file():
        saved, state = load_state(pt)
        if not saved and card.is_file():            # a trainer's plain state dict: the card has the config
            saved = load_card(card).extra.get("model_config", {})
        model = cls(from_dict(cfg_cls, saved, str(pt)) if saved else default_cfg)
        model.load_state_dict(state)
        return model.eval(), str(pt.relative_to(ROOT))
    torch.manual_seed(0)
    return cls(default_cfg).eval(), "untrained (no shipped model)"


def inputs_for(name: str, w: int, h: int) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(0)
    if name == "bisenet":
        h = -(-h // 32) * 32
    if name == "gem":
        return torch.rand(1, 3, h, w, generator=g), torch.rand(1, 1, h, w, generator=g)
    return (torch.rand(1, 3, h, w, generator=g),)


def median_ms(fn, reps: int) -> float:
    fn()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1e3)


def bench_networks(reps: int, threads: int, tmp: Path) -> tuple[list[dict], dict]:
    torch.set_num_threads(threads)
    specs = {
        "refiner": (Refiner, RefinerConfig, RefinerConfig(), ["image"]),
        "bisenet": (BiSeNet, BiSeNetConfig, BiSeNetConfig(), ["image"]),
        "gem": (Gem, GemConfig, GemConfig(), ["rgb", "thermal"]),
    }
    rows, sources, by_name = [], {}, {}
    for name, (cls, cfg_cls, default, in_names) in {**specs, "refiner_full": specs["refiner"]}.items():
        if name == "refiner_full":       # the same weights, every pixel read
            model = Refiner(replace(by_name["refiner"].cfg, grid=0))
            model.load_state_dict(by_name["refiner"].state_dict())
            model.eval()
            sources[name] = sources["refiner"] + " with grid = 0"
        else:
            model, sources[name] = load_model(name, cls, cfg_cls, default)
        by_name[name] = model
        onnx_path = tmp / f"{name}.onnx"
        example = inputs_for(name, 64, 64)
        export_with_features(model, dict(zip(in_names, example)), onnx_path, feature_names=[], dynamic_spatial=True)
        session = OrtBackend(onnx_path, RuntimeConfig(backend="onnxruntime", threads=threads))
        for res, (w, h) in RESOLUTIONS.items():
            xs = inputs_for(name, w, h)
            feeds = {n: x.numpy() for n, x in zip(in_names, xs)}
            with torch.no_grad():
                t_torch = median_ms(lambda: model(*xs), reps)
            t_ort = median_ms(lambda: session.run(feeds), reps)
            row = {"model": name, "resolution": res, "input_hw": list(xs[0].shape[2:]), "device": "cpu",
                   "torch_ms": t_torch, "ort_ms": t_ort, "ort_over_torch": t_ort / t_torch}
            if torch.cuda.is_available():
                gm = model.to("cuda")
                gx = tuple(x.to("cuda") for x in xs)

                def run_gpu():
                    with torch.no_grad():
                        gm(*gx)
                    torch.cuda.synchronize()

                row["torch_cuda_ms"] = median_ms(run_gpu, reps)
                model.to("cpu")
            rows.append(row)
    return rows, sources


def bench_pipelines(reps: int, threads: int, model_dirs: dict[str, Path]) -> list[dict]:
    """Whole pipelines of the cards in each of ``model_dirs`` (label -> folder), the folders' calls alternated
    frame by frame so that load changes hit them alike; rows carry the folder's label."""
    from glassbox.pipelines import FusionPipeline, RefinerPipeline, SegmentationPipeline

    pipes: dict[tuple[str, str], Any] = {}
    for label, folder in model_dirs.items():
        cards = {n: folder / f"{n}.card.yaml" for n in ("refiner", "bisenet", "gem")}
        if not all(c.is_file() for c in cards.values()):
            continue
        pipes[label, "refiner"] = RefinerPipeline.from_card(cards["refiner"], threads=threads)
        pipes[label, "segmentation"] = SegmentationPipeline.from_card(cards["bisenet"], threads=threads)
        pipes[label, "fusion"] = FusionPipeline.from_card(cards["gem"], threads=threads)
    rows = []
    rng = np.random.default_rng(0)
    for res, (w, h) in list(RESOLUTIONS.items())[2:]:
        rgb = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        thermal = rng.integers(0, 256, (h, w), dtype=np.uint8)
        for name in ("refiner", "segmentation", "fusion"):
            calls = {label: ((lambda p=p: p(rgb, thermal)) if name == "fusion" else (lambda p=p: p(rgb)))
                     for (label, n), p in pipes.items() if n == name}
            stages: dict[str, list] = {label: [] for label in calls}
            for call in calls.values():
                call()
            for _ in range(reps):
                for label, call in calls.items():
                    stages[label].append(call().timings_ms)
            for label, st in stages.items():
                rows.append({"pipeline": name, "models": label, "resolution": res, "backend": "onnxruntime",
                             "total_ms": float(np.median([s["total"] for s in st])),
                             "total_min_ms": float(np.min([s["total"] for s in st])),
                             "network_ms": float(np.median([s["network"] for s in st])),
                             "entropy_ms": float(np.median([s["entropy"] for s in st]))})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-models", type=Path, default=None, metavar="DIR",
                        help="also time the pipelines of the cards in DIR (e.g. an earlier release's models/), "
                             "alternated with the shipped ones, and report the ratio")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        rows, sources = bench_networks(args.reps, args.threads, Path(tmp))
    by = {(r["model"], r["resolution"]): r for r in rows}
    shares = []
    for res in RESOLUTIONS:
        for down in ("bisenet", "gem"):
            for backend in ("torch_ms", "ort_ms"):
                shares.append({"resolution": res, "downstream": down, "backend": backend[:-3],
                               "refiner_share": by[("refiner", res)][backend] / by[(down, res)][backend],
                               "refiner_full_share": by[("refiner_full", res)][backend] / by[(down, res)][backend]})
    dirs = {"shipped": MODELS, **({"baseline": args.baseline_models} if args.baseline_models else {})}
    pipes = bench_pipelines(args.reps, args.threads, dirs)
    base = {(p["pipeline"], p["resolution"]): p for p in pipes if p["models"] == "baseline"}
    for p in pipes:
        if p["models"] == "shipped" and (p["pipeline"], p["resolution"]) in base:
            p["over_baseline"] = p["total_ms"] / base[p["pipeline"], p["resolution"]]["total_ms"]

    print(f"{'model':12s} {'resolution':10s} {'input':>10s} {'torch ms':>9s} {'ORT ms':>9s} {'ORT/torch':>9s}")
    for r in rows:
        hw = "x".join(str(v) for v in r["input_hw"][::-1])
        print(f"{r['model']:12s} {r['resolution']:10s} {hw:>10s} {r['torch_ms']:9.1f} {r['ort_ms']:9.1f} "
              f"{r['ort_over_torch']:9.2f}")
    print("\nrefiner time / downstream time (same backend, same resolution; goal <= 0.15): refiner, refiner_full")
    for s in shares:
        print(f"  {s['resolution']:10s} {s['downstream']:8s} {s['backend']:6s} {s['refiner_share']:.3f} "
              f"{s['refiner_full_share']:.3f}")
    if pipes:
        print("\nwhole pipelines (ONNX Runtime, entropy probe on): median ms")
        for p in pipes:
            ratio = f"  x{p['over_baseline']:.2f} of baseline" if "over_baseline" in p else ""
            print(f"  {p['pipeline']:13s} {p['models']:9s} {p['resolution']:10s} total {p['total_ms']:8.1f} (min "
                  f"{p['total_min_ms']:6.1f})  network {p['network_ms']:8.1f}  entropy {p['entropy_ms']:6.1f}{ratio}")
    result = {
        "benchmark": "camera", "date_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.cuda.is_available(), "threads": args.threads},
        "reps": args.reps, "models": sources,
        "baseline_models": str(args.baseline_models) if args.baseline_models else None,
        "units": {"*_ms": "milliseconds, median", "share": "ratio"},
        "networks": rows, "refiner_share": shares, "pipelines": pipes,
    }
    out = ROOT / "bench" / "results" / "camera.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"\nwrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
