"""The replay report's fault-detection section: injected faults caught, the fault benchmark's table and ROC curves.

Two sources. The recording's calibration sidecar (``<bag>.calib.yaml``, written by ``glassbox sim``) lists the
faults injected into a synthetic drive (``DriveConfig.faults``); for each, the section says when the monitor of
the sensor's models first raised WARN or ERROR inside the fault window. The fault benchmark's results
(``bench/results/monitor.json``, or ``$GLASSBOX_MONITOR_BENCH``) give the per-fault table and ROC curves of the
shipped monitor on synthetic faults, measured once and shipped with the code.
"""
from __future__ import annotations

import html
import json
import os
from pathlib import Path
from typing import Any

import yaml

from glassbox.bag.sections import table

def default_benchmark_path() -> Path:
    env = os.environ.get("GLASSBOX_MONITOR_BENCH")
    return Path(env) if env else Path(__file__).resolve().parents[5] / "bench" / "results" / "monitor.json"


def load_benchmark(path: str | Path | None = None) -> dict[str, Any] | None:
    path = Path(path) if path else default_benchmark_path()
    return json.loads(path.read_text()) if path.is_file() else None


def summary_rows(bench: dict[str, Any]) -> list[list[Any]]:
    """fault, sensor, then per severity: monitor AUROC / best baseline AUROC (its name) / delay in frames."""
    rows = []
    for name, fault in bench["faults"].items():
        for sev, v in fault["severities"].items():
            base = {k: a for k, a in v["auroc"].items() if k != "monitor"}
            best = max(base, key=base.get)
            delay = v["delay_frames"]
            rows.append([name, fault["sensor"], sev, f"{v['auroc']['monitor']:.3f}", f"{base[best]:.3f} ({best})",
                         "—" if delay is None else delay])
    return rows


def plot_roc(bench: dict[str, Any], path: str | Path, severity: str = "1.0") -> Path:
    """One panel per sensor: the monitor's ROC curve per fault at ``severity`` (solid) and the best baseline's
    (dashed, same colour)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    sensors = sorted({f["sensor"] for f in bench["faults"].values()}, key=["lidar", "rgb", "thermal"].index)
    fig, axes = plt.subplots(1, len(sensors), figsize=(4.4 * len(sensors), 4.2), squeeze=False)
    for ax, sensor in zip(axes[0], sensors):
        faults = [(n, f) for n, f in bench["faults"].items() if f["sensor"] == sensor]
        for i, (name, fault) in enumerate(faults):
            v = fault["severities"].get(severity) or next(iter(fault["severities"].values()))
            colour = plt.cm.tab10(i % 10)
            ax.plot(*v["roc"]["monitor"], "-", color=colour, lw=1.5, label=f"{name} {v['auroc']['monitor']:.2f}")
            base = {k: a for k, a in v["auroc"].items() if k != "monitor"}
            ax.plot(*v["roc"][max(base, key=base.get)], "--", color=colour, lw=0.8)
        ax.plot([0, 1], [0, 1], ":", color="#999")
        ax.set_title(f"{sensor}: monitor (solid) vs best baseline (dashed)", fontsize=9)
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def injected_faults(bag: str | Path) -> list[dict[str, Any]]:
    """The faults listed in the recording's calibration sidecar (empty when there is none)."""
    bag = Path(bag)
    for path in (bag.with_suffix(".calib.yaml"), bag / f"{bag.name}.calib.yaml"):
        if path.is_file():
            return list((yaml.safe_load(path.read_text()) or {}).get("faults", []))
    return []


def caught_rows(result: Any, faults: list[dict[str, Any]]) -> list[list[Any]]:
    """Per injected fault and monitored model: the first WARN/ERROR inside the fault window (seconds after its
    start), and whether the model was alarmed before the window already. Every model is listed: the models of
    the faulty sensor should react, the others should not."""
    t0 = min((f["stamp_ns"] for f in result.frames), default=0)
    rows = []
    for fault in faults:
        start, end = float(fault["start_s"]), float(fault["end_s"])
        for model, states in sorted(result.monitor.items()):
            alarms = [(s - t0) * 1e-9 for s, lv, _ in states if lv in (1, 2)]
            hit = next((t for t in alarms if start <= t <= end), None)
            rows.append([f"{fault['name']} ({fault['sensor']}, severity {fault['severity']:g})",
                         f"{start:g}–{end:g} s", model,
                         "not caught" if hit is None else f"caught after {hit - start:.1f} s",
                         "yes" if any(t < start for t in alarms) else "no"])
    return rows


def monitor_section(result: Any, out: Path) -> str:
    """HTML of the section (empty when there is neither an injected fault nor a benchmark)."""
    parts = []
    faults = injected_faults(result.bag)
    if faults:
        parts.append("<h3>Injected sensor faults</h3>" + table(
            caught_rows(result, faults), ["fault", "window", "model", "monitor", "alarm before the window"]))
    bench = load_benchmark()
    if bench is not None:
        path = plot_roc(bench, Path(out) / "monitor_roc.png")
        parts.append("<h3>Fault benchmark (synthetic drives, shipped thresholds)</h3>"
                     f"<p class='muted'>{html.escape(bench.get('date', ''))}; AUROC of the monitor's max |z| against "
                     "nominal frames, the best of the simple baselines, and the detection delay in frames at the "
                     "shipped thresholds (docs/monitor.md).</p>"
                     + table(summary_rows(bench), ["fault", "sensor", "severity", "monitor AUROC",
                                                   "best baseline AUROC", "delay (frames)"])
                     + f"<figure><img src='{path.name}' alt='ROC curves'><figcaption>ROC curves at full severity"
                       "</figcaption></figure>")
    return "".join(parts)

