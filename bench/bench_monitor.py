"""Fault benchmark of the entropy monitor: per fault class and severity, AUROC of the monitor's score against
nominal frames, detection delay at the shipped thresholds, false alarms on nominal drives, and the same AUROC for
simple baselines (output-only uncertainty, input statistics) on the same frames. Method: ``glassbox.monitor_eval``.

Writes ``bench/results/monitor.json`` (the report's fault-detection section reads it), the fault signatures the
monitor names (``config/fault_signatures.yaml``), the ROC figure ``docs/img/monitor_roc.png``, and prints the
tables of docs/monitor.md. Run: ``python bench/bench_monitor.py [--quick]`` (full: ~10-25 min on 2 cores).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, write_results  # noqa: E402

from glassbox.bag.monitor_section import plot_roc, summary_rows  # noqa: E402
from glassbox.faults import FAULTS  # noqa: E402
from glassbox.monitor_eval import EvalConfig, evaluate_sensor  # noqa: E402

QUICK = EvalConfig(calib_seeds=(100, 101), calib_frames_per_seed=6, test_seeds=(200, 201), test_frames_per_seed=16,
                   fault_every=2, severities=(1.0,))


def class_summary(faults: dict) -> dict[str, dict]:
    """Per fault class: monitor and best-baseline AUROC (mean over severities and at the strongest), delay."""
    out = {}
    for name, fault in faults.items():
        sev = fault["severities"]
        base_names = [k for k in next(iter(sev.values()))["auroc"] if k != "monitor"]
        mean = {k: float(np.mean([v["auroc"][k] for v in sev.values()])) for k in ["monitor", *base_names]}
        best = max(base_names, key=lambda k: mean[k])
        strongest = sev[max(sev, key=float)]
        out[name] = {"sensor": fault["sensor"], "per_frame": not FAULTS[name].temporal,
                     "monitor_auroc_mean": round(mean["monitor"], 4), "best_baseline": best,
                     "best_baseline_auroc_mean": round(mean[best], 4),
                     "monitor_auroc_strongest": strongest["auroc"]["monitor"],
                     "delay_frames_strongest": strongest["delay_frames"]}
    return out


def goals(classes: dict, sensors: dict) -> dict:
    """The issue's three goals, evaluated on the classes a per-frame score can see (not frozen_frame)."""
    seen = {n: c for n, c in classes.items() if c["per_frame"]}
    margin = np.mean([c["monitor_auroc_mean"] - c["best_baseline_auroc_mean"] for c in seen.values()])
    events = sum(s["false_alarms"]["events"] for s in sensors.values())
    hours = sum(s["false_alarms"]["hours"] for s in sensors.values())
    return {"classes_auroc_ge_0.95": sorted(n for n, c in seen.items() if c["monitor_auroc_mean"] >= 0.95),
            "goal_six_classes": sum(c["monitor_auroc_mean"] >= 0.95 for c in seen.values()) >= 6,
            "mean_margin_over_best_baseline": round(float(margin), 4), "goal_margin_0.05": bool(margin >= 0.05),
            "false_alarm_events": events, "nominal_hours": round(hours, 4),
            "false_alarms_per_hour": round(events / hours, 1) if hours else None,
            "goal_false_alarms_verified": False}


def write_signatures(sensors: dict, path: Path) -> None:
    table = {s["model"]: s["signatures"] for s in sensors.values() if s["signatures"]}
    path.write_text("# Fault signatures of the entropy monitor: model -> fault class -> layer -> mean z-score of that\n"
                    "# fault in the fault benchmark (bench/bench_monitor.py writes this file; docs/monitor.md).\n"
                    + yaml.safe_dump({"signatures": table}, sort_keys=False))


def markdown(classes: dict, sensors: dict, rows: list) -> str:
    lines = ["| fault | sensor | severity | monitor AUROC | best baseline AUROC | delay (frames) |",
             "|---|---|---|---|---|---|"] + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    lines += ["", "| fault | monitor AUROC (mean) | best baseline (mean) | margin |", "|---|---|---|---|"]
    lines += [f"| {n} | {c['monitor_auroc_mean']:.3f} | {c['best_baseline_auroc_mean']:.3f} ({c['best_baseline']}) | "
              f"{c['monitor_auroc_mean'] - c['best_baseline_auroc_mean']:+.3f} |" for n, c in classes.items()]
    lines += ["", "| sensor | model | nominal frames | alarms | WARN share of frames | signature accuracy |",
              "|---|---|---|---|---|---|"]
    lines += [f"| {k} | {s['model']} | {s['nominal_frames']} | {s['false_alarms']['events']} | "
              f"{s['false_alarms']['warn_frame_share']:.3f} | {s['signature_accuracy']} |" for k, s in sensors.items()]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="a few frames per case (a smoke run, not the numbers)")
    ap.add_argument("--sensors", default="lidar,rgb,thermal")
    args = ap.parse_args()
    cfg = QUICK if args.quick else EvalConfig()
    t0 = time.perf_counter()
    sensors = {s: evaluate_sensor(s, cfg, log=lambda m: print(m, flush=True)) for s in args.sensors.split(",")}
    faults = {n: f for s in sensors.values() for n, f in s.pop("faults").items()}
    classes = class_summary(faults)
    bench = {"faults": faults}
    rows = summary_rows(bench)
    name = "monitor_quick" if args.quick else "monitor"
    write_results(name, [dict(zip(["fault", "sensor", "severity", "monitor_auroc", "best_baseline_auroc",
                                   "delay_frames"], r)) for r in rows],
                  config={"calib_seeds": cfg.calib_seeds, "calib_frames_per_seed": cfg.calib_frames_per_seed,
                          "test_seeds": cfg.test_seeds, "test_frames_per_seed": cfg.test_frames_per_seed,
                          "rate_hz": cfg.rate_hz, "fault_every": cfg.fault_every, "severities": cfg.severities,
                          "monitor": vars(cfg.monitor)},
                  wall_s=round(time.perf_counter() - t0, 1), sensors=sensors, faults=faults, classes=classes,
                  goals=goals(classes, sensors))
    if not args.quick:
        write_signatures(sensors, ROOT / "config" / "fault_signatures.yaml")
        (ROOT / "docs" / "img").mkdir(parents=True, exist_ok=True)
        plot_roc(bench, ROOT / "docs" / "img" / "monitor_roc.png")
    print(markdown(classes, sensors, rows))


if __name__ == "__main__":
    main()
