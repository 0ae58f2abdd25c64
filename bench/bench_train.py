"""Training-step time of the engine: task loss only vs + Eloss vs + distillation (KD, SRM, MOSAKD).

For the segmentation (BiSeNet, ResNet-18-context teacher) and LiDAR (SPI, larger teacher) tasks, one fixed
batch is pushed through the engine's own step (``StepModule`` forward, ``WeightedSum``, backward, AdamW step)
with each combination of terms; the median step time and its ratio to the task-only step (same run, same
batch, variants timed round-robin) are reported, with the teacher's forward pass alone for reference. Goal
from the design: Eloss + distillation add at most 30% to a step. KD/SRM include the teacher's forward pass,
so their overhead grows with the teacher's size; the loss terms themselves are the difference.

    python bench/bench_train.py [--steps 10] [--threads 1] [--tasks segmentation lidar]
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.losses import SRMLoss, WeightedSum
from glassbox_trainer.task import build_task
from glassbox_trainer.train import StepModule, build_weights

TASKS = {
    "segmentation": ({"mode": "multiclass", "loss": "ce", "input_size": [160, 128], "train_frames": 4,
                      "val_frames": 1}, 4, ["context4"]),
    "lidar": ({"train_frames": 2, "val_frames": 1, "crop_width": 256, "augment": False}, 2, None),
}
VARIANTS = {
    "task only": {},
    "+ eloss": {"eloss": {"weight": 0.1}},
    "+ kd": {"distill": {"kd_weight": 0.5}},
    "+ kd + srm": {"distill": {"kd_weight": 0.5, "srm_weight": 1.0}},
    "+ mosakd": {"distill": {"mosakd_weight": 0.1}},
    "+ eloss + kd + srm": {"eloss": {"weight": 0.1}, "distill": {"kd_weight": 0.5, "srm_weight": 1.0}},
}


def build_variant(task, batch, base: dict, variant: dict, teacher, srm_pairs, mosakd_layers):
    """(step function, ) for one combination of terms: forward, WeightedSum, backward, AdamW step."""
    data = {**base, **{k: v for k, v in variant.items() if k != "distill"}}
    distill = dict(variant.get("distill", {}))
    if "mosakd_weight" in distill:
        distill.update(mosakd_layers=mosakd_layers, mosakd_k=8, mosakd_max_samples=512)
    if "srm_weight" in distill and srm_pairs:
        distill["srm_pairs"] = [[p, p] for p in srm_pairs]
    cfg = train_config_from_dict({**data, "distill": distill})
    torch.manual_seed(0)
    model = task.build_model("default")
    criterion = WeightedSum(build_weights(cfg))
    srm = None
    if "srm" in criterion.active:
        with torch.no_grad():
            _, _, s_out = task.loss(model, batch)
            _, _, t_out = task.loss(teacher, batch)
        srm = SRMLoss.from_features(s_out["features"], t_out["features"], cfg.distill.srm_pairs or None,
                                    cfg.distill.srm_mu, cfg.distill.srm_sparsity)
        srm.teacher_dicts.requires_grad_(False)
    use_teacher = teacher if {"kd", "srm"} & set(criterion.active) else None
    step_module = StepModule(task, model, cfg, criterion.active, use_teacher, srm)
    opt = torch.optim.AdamW([p for p in step_module.parameters() if p.requires_grad], lr=1e-4)

    def step(i: int) -> None:
        terms, _ = step_module(batch, i)
        total, _ = criterion(terms)
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
    return step


def teacher_forward(task, teacher, batch):
    """The teacher's no-grad forward alone (the part of KD/SRM that scales with the teacher)."""
    def step(i: int) -> None:
        with torch.no_grad():
            task.loss(teacher, batch)
    return step


def interleaved_medians(steps: dict, rounds: int) -> dict[str, float]:
    """Median seconds per step of every variant, timed round-robin (one step each per round) so that a
    change in machine load affects all variants alike; two warm-up rounds are discarded."""
    times: dict[str, list[float]] = {k: [] for k in steps}
    for r in range(rounds + 2):
        for label, fn in steps.items():
            t0 = time.perf_counter()
            fn(r)
            if r >= 2:
                times[label].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory() as cache:
        for name in args.tasks:
            cfg, batch_size, mosakd_layers = TASKS[name]
            if name == "lidar":
                cfg = {**cfg, "cache_dir": cache}
            task = build_task(name, cfg)
            train_set, _ = task.datasets()
            batch = task.collate([train_set[i % len(train_set)] for i in range(batch_size)])
            torch.manual_seed(1)
            teacher = task.build_model("teacher").eval().requires_grad_(False)
            base = {"task": name, name: cfg, "batch_size": batch_size}
            srm_pairs = [task.eloss_groups[-1][-1]] if task.eloss_groups else None
            steps = {}
            for label, variant in VARIANTS.items():
                if "mosakd_weight" in variant.get("distill", {}) and not mosakd_layers:
                    continue
                steps[label] = build_variant(task, batch, base, variant, teacher, srm_pairs, mosakd_layers)
            steps["teacher forward alone"] = teacher_forward(task, teacher, batch)
            rows = interleaved_medians(steps, args.steps)
            ref = rows["task only"]
            teacher_t = rows["teacher forward alone"]
            results[name] = {label: {"step_ms": 1e3 * t, "ratio": t / ref} for label, t in rows.items()}
            for label, r in results[name].items():
                if "+ kd" in label:                                  # the loss terms without the teacher forward
                    r["ratio_without_teacher_forward"] = (rows[label] - teacher_t) / ref
            results[name]["_setup"] = {"batch_size": batch_size, "srm_pairs": srm_pairs, "mosakd_layers": mosakd_layers,
                                       "student_params": sum(p.numel() for p in task.build_model().parameters()),
                                       "teacher_params": sum(p.numel() for p in teacher.parameters())}
    print(f"{'task':<14}{'variant':<22}{'step (ms)':>12}{'vs task only':>14}{'without teacher fwd':>21}")
    for name, rows in results.items():
        for label, r in rows.items():
            if not label.startswith("_"):
                extra = r.get("ratio_without_teacher_forward")
                tail = f"{extra:>20.2f}x" if extra is not None else ""
                print(f"{name:<14}{label:<22}{r['step_ms']:>12.1f}{r['ratio']:>13.2f}x{tail}")
    out = Path(__file__).resolve().parent / "results" / "train.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "benchmark": "training step time: task loss only vs + Eloss vs + distillation",
        "units": {"step_ms": "milliseconds (median)", "ratio": "step time / task-only step time",
                  "ratio_without_teacher_forward": "(step time - teacher forward time) / task-only step time"},
        "steps": args.steps, "threads": args.threads, "results": results,
        "machine": {"platform": platform.platform(), "processor": platform.processor(),
                    "python": platform.python_version(), "torch": torch.__version__},
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
