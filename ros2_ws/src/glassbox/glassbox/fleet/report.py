"""The fleet report: ``DIR/fleet.html`` with PNG plots and ``DIR/fleet.json`` for dashboards.

Per unit (bag or chunk): status and reason, duration, frames, the headline metric of each capability where the
bag has ground truth, the entropy monitor's WARN+ERROR share, mean latency. Across the fleet: the mean of each
figure over the units that replayed fully, with a 95 % bootstrap confidence interval (percentile method, seeded,
so the same records give the same report). Worst first: failed units, then partial ones, then by their quality
(mean of the headline metrics, then the monitor's share); and the worst lighting segments per capability.
"""
from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.bag.report import CSS
from glassbox.bag.sections import pyplot, table

SCHEMA = "glassbox.fleet/1"
# quality figure (higher is better) -> (capability, metric key in its per-segment dict)
HEADLINES = {"lidar car BEV AP@0.5": ("lidar", "car/bev@0.5"), "segmentation mIoU": ("segmentation", "miou"),
             "fusion mAP@0.5": ("fusion", "map50")}
EXTRA = ("monitor WARN+ERROR share", "mean latency (ms)", "wall time (s)")
STATUS_RANK = {"failed": 0, "partial": 1, "ok": 2}


def bootstrap_ci(values: list[float], level: float = 0.95, resamples: int = 2000, seed: int = 0) -> tuple | None:
    """Percentile bootstrap interval of the mean; None for fewer than two values."""
    x = np.asarray([v for v in values if v is not None], np.float64)
    if x.size < 2:
        return None
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (resamples, x.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def unit_row(rec: dict[str, Any]) -> dict[str, Any]:
    """The figures of one unit (None where it has no such figure)."""
    row: dict[str, Any] = {"name": rec["name"], "status": rec["status"], "reason": rec.get("reason", ""),
                           "duration_s": rec.get("duration_s", 0.0), "frames": sum(rec.get("frames", {}).values())}
    for label, (cap, key) in HEADLINES.items():
        m = rec.get("metrics", {}).get(cap)
        row[label] = m["all"].get(key) if isinstance(m, dict) and "all" in m else None
    shares = [s["all"]["WARN"] + s["all"]["ERROR"] for s in rec.get("monitor", {}).values() if "all" in s]
    row["monitor WARN+ERROR share"] = round(float(np.mean(shares)), 4) if shares else None
    lat = [v["total"] for v in rec.get("timing", {}).get("latency_ms", {}).values() if "total" in v]
    row["mean latency (ms)"] = round(float(np.mean(lat)), 2) if lat else None
    row["wall time (s)"] = rec.get("timing", {}).get("wall_s")
    return row


def _badness(row: dict[str, Any]) -> tuple:
    quality = [row[k] for k in HEADLINES if row[k] is not None]
    return (STATUS_RANK.get(row["status"], 0), float(np.mean(quality)) if quality else 1.0,
            -(row["monitor WARN+ERROR share"] or 0.0))


def worst_segments(records: list[dict], top: int = 10) -> list[dict[str, Any]]:
    """The lowest headline metric per (unit, capability, lighting segment), worst first."""
    out = []
    for rec in records:
        for label, (cap, key) in HEADLINES.items():
            m = rec.get("metrics", {}).get(cap)
            if not isinstance(m, dict):
                continue
            for seg, v in m.items():
                if seg != "all" and v.get(key) is not None:
                    out.append({"unit": rec["name"], "figure": label, "segment": seg, "value": v[key],
                                "frames": v.get("frames")})
    return sorted(out, key=lambda s: s["value"])[:top]


def aggregate(records: list[dict]) -> dict[str, Any]:
    """Fleet totals and, for every figure, n / mean / 95 % CI over the units that replayed fully."""
    rows = [unit_row(r) for r in records]
    ok = [r for r in rows if r["status"] == "ok"]
    figures = {}
    for label in (*HEADLINES, *EXTRA):
        vals = [r[label] for r in ok if r[label] is not None]
        ci = bootstrap_ci(vals)
        figures[label] = {"n": len(vals), "mean": round(float(np.mean(vals)), 4) if vals else None,
                          "ci95": [round(ci[0], 4), round(ci[1], 4)] if ci else None}
    wall = sum(r.get("timing", {}).get("wall_s") or 0.0 for r in records)
    return {"units": len(rows), **{s: sum(r["status"] == s for r in rows) for s in STATUS_RANK},
            "bag_seconds": round(sum(r["duration_s"] for r in rows), 2), "frames": sum(r["frames"] for r in rows),
            "task_wall_s": round(wall, 2), "task_cpu_s": round(sum(r.get("timing", {}).get("cpu_s") or 0.0
                                                                   for r in records), 2),
            "figures": figures}


def fleet_summary(records: list[dict], meta: dict[str, Any] | None = None) -> dict[str, Any]:
    """What ``fleet.json`` holds: units worst first, aggregates, worst segments."""
    rows = sorted((unit_row(r) for r in records), key=_badness)
    return {"schema": SCHEMA, "generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **(meta or {}),
            "aggregates": aggregate(records), "units": rows, "worst_segments": worst_segments(records)}


def _plot_figures(summary: dict[str, Any], out: Path) -> Path | None:
    """One panel per figure: every unit's value (worst first, left), the fleet mean and its CI band."""
    plt = pyplot()
    labels = [k for k in (*HEADLINES, *EXTRA) if any(r[k] is not None for r in summary["units"])]
    if not labels:
        return None
    fig, axes = plt.subplots(len(labels), 1, figsize=(9, 1.9 * len(labels)), squeeze=False)
    names = [r["name"] for r in summary["units"]]
    for ax, label in zip(axes[:, 0], labels):
        y = [np.nan if r[label] is None else r[label] for r in summary["units"]]
        agg = summary["aggregates"]["figures"][label]
        if agg["ci95"]:
            ax.axhspan(*agg["ci95"], color="#90caf9", alpha=0.4, label="95 % CI of the mean")
        if agg["mean"] is not None:
            ax.axhline(agg["mean"], color="#1565c0", lw=1)
        colors = ["#c62828" if r["status"] != "ok" else "#1f4e9c" for r in summary["units"]]
        ax.scatter(range(len(y)), y, c=colors, s=22, zorder=3)
        ax.set_ylabel(label, fontsize=7)
        last = ax is axes[-1, 0]
        ax.set_xticks(range(len(names)), names if last and len(names) <= 40 else [""] * len(names), rotation=60,
                      fontsize=6)
        ax.tick_params(axis="y", labelsize=7)
    fig.suptitle("per unit, worst first (red: not fully replayed); line and band: fleet mean and 95 % CI",
                 fontsize=9)
    fig.tight_layout()
    path = out / "fleet_figures.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_fleet_report(records: list[dict], out_dir: str | Path, meta: dict[str, Any] | None = None) -> Path:
    """Write fleet.json, fleet.html and the plot into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = fleet_summary(records, meta)
    (out / "fleet.json").write_text(json.dumps(summary, indent=1, default=str) + "\n")
    plot = _plot_figures(summary, out)
    agg = summary["aggregates"]
    totals = table([[k, agg[k]] for k in ("units", "ok", "partial", "failed", "bag_seconds", "frames",
                                           "task_wall_s", "task_cpu_s")], ["", "value"])
    figs = table([[k, v["n"], v["mean"], *(v["ci95"] or (None, None))] for k, v in agg["figures"].items()],
                  ["figure", "units", "mean", "95 % CI low", "95 % CI high"])
    cols = ["name", "status", "duration_s", "frames", *HEADLINES, *EXTRA]
    units = table([[r[c] for c in cols] for r in summary["units"]], cols)
    bad = [[r["name"], r["status"], r["reason"]] for r in summary["units"] if r["status"] != "ok"]
    segs = table([[s["unit"], s["figure"], s["segment"], s["value"], s["frames"]] for s in summary["worst_segments"]],
                  ["unit", "figure", "segment", "value", "frames"])
    body = [(f"<h1>glassbox fleet report</h1><p class='muted'>{agg['units']} units · {agg['ok']} ok · "
             f"{agg['partial']} partial · {agg['failed']} failed · {html.escape(summary['generated'])}</p>"),
            "<h2>Not fully replayed</h2>" + (table(bad, ["unit", "status", "reason"]) if bad else "<p>None.</p>"),
            "<h2>Fleet</h2>", totals, figs,
            "<p class='muted'>Means over the fully replayed units; intervals: 95 % percentile bootstrap.</p>",
            f"<figure><img src='{plot.name}' alt='figures per unit'></figure>" if plot else "",
            "<h2>Worst segments</h2>", segs if summary["worst_segments"] else "<p>No ground truth.</p>",
            "<h2>Units, worst first</h2>", units]
    path = out / "fleet.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>glassbox fleet report</title>"
                    f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    return path
