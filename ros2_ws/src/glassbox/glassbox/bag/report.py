"""The replay report: ``DIR/report.html`` with PNG plots, and ``DIR/metrics.json``.

Sections: summary and warnings, metric tables per lighting segment, the entropy monitor's states over time,
per-layer entropy over time against the reference band (mean ± warn_z·std) for every model, latency per stage,
and a few frames per capability with their overlays (range image with detections, segmentation overlay, fusion
boxes on RGB and thermal).
"""
from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.bag.monitor_section import monitor_section
from glassbox.bag.replay import ReplayResult, write_metrics
from glassbox.bag.sections import Section, generic_section, pyplot, table

SEGMENT_COLORS = {"day": "#fff7d6", "glare": "#ffe0b3", "dusk": "#e0d6f5", "night": "#d6def5"}
LEVEL_NAMES = ("OK", "WARN", "ERROR", "STALE")


def _segment_spans(result: ReplayResult) -> list[tuple[float, float, str]]:
    """(t0, t1, lighting) spans in seconds from the first frame, from the frame records."""
    frames = sorted(result.frames, key=lambda f: f["stamp_ns"])
    if not frames:
        return []
    t0 = frames[0]["stamp_ns"]
    spans, start, current = [], 0.0, frames[0]["lighting"]
    for f in frames[1:]:
        if f["lighting"] != current:
            t = (f["stamp_ns"] - t0) * 1e-9
            spans.append((start, t, current))
            start, current = t, f["lighting"]
    spans.append((start, (frames[-1]["stamp_ns"] - t0) * 1e-9, current))
    return spans


def _shade(ax, spans) -> None:
    for a, b, name in spans:
        if name:
            ax.axvspan(a, b, color=SEGMENT_COLORS.get(name, "#eeeeee"), zorder=0)
            ax.text((a + b) / 2, 0.98, name, transform=ax.get_xaxis_transform(), ha="center", va="top", fontsize=7,
                    color="#555")


def plot_entropy(result: ReplayResult, out: Path, warn_z: float) -> list[Path]:
    """One figure per model: each probed layer's entropy over time with its reference band."""
    plt = pyplot()
    spans = _segment_spans(result)
    t0 = min((f["stamp_ns"] for f in result.frames), default=0)
    paths = []
    for model, series in result.entropy.items():
        layers = list(series[0][1]) if series else []
        if not layers:
            continue
        cols = min(3, len(layers))
        rows = int(np.ceil(len(layers) / cols))
        fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.4 * rows), squeeze=False)
        t = np.array([(s - t0) * 1e-9 for s, _ in series])
        ref = result.references.get(model, {})
        for ax, layer in zip(axes.ravel(), layers):
            y = np.array([v.get(layer, np.nan) for _, v in series])
            _shade(ax, spans)
            if layer in ref:
                mean, std = ref[layer]
                ax.axhspan(mean - warn_z * std, mean + warn_z * std, color="#4caf50", alpha=0.25, zorder=1,
                           label=f"reference ±{warn_z:g}σ")
                ax.axhline(mean, color="#2e7d32", lw=0.8, zorder=1)
            ax.plot(t, y, ".-", ms=3, lw=1, color="#1f4e9c", zorder=2)
            ax.set_title(layer, fontsize=9)
            ax.tick_params(labelsize=7)
        for ax in axes.ravel()[len(layers):]:
            ax.axis("off")
        fig.suptitle(f"{model}: per-layer entropy (nats) over time (s)", fontsize=10)
        fig.tight_layout()
        path = out / f"entropy_{model}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


def plot_monitor(result: ReplayResult, out: Path) -> Path | None:
    if not result.monitor:
        return None
    plt = pyplot()
    spans = _segment_spans(result)
    t0 = min((f["stamp_ns"] for f in result.frames), default=0)
    fig, ax = plt.subplots(figsize=(10, 0.6 + 0.5 * len(result.monitor)))
    _shade(ax, spans)
    colors = {0: "#2e7d32", 1: "#f9a825", 2: "#c62828", 3: "#757575"}
    for i, (model, states) in enumerate(sorted(result.monitor.items())):
        t = np.array([(s - t0) * 1e-9 for s, _, _ in states])
        lv = np.array([lvl for _, lvl, _ in states])
        ax.scatter(t, np.full(len(t), i), c=[colors[int(v)] for v in lv], s=18, marker="s", zorder=2)
    ax.set_yticks(range(len(result.monitor)), sorted(result.monitor))
    ax.set_xlabel("time (s)")
    ax.set_title("entropy monitor: green OK, amber WARN, red ERROR", fontsize=10)
    fig.tight_layout()
    path = out / "monitor.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_latency(result: ReplayResult, out: Path) -> Path | None:
    lat = result.metrics.get("latency_ms", {})
    if not lat:
        return None
    plt = pyplot()
    caps = sorted(lat)
    stages = sorted({k for c in caps for k in lat[c] if k != "total"})
    fig, ax = plt.subplots(figsize=(7, 0.8 + 0.6 * len(caps)))
    left = np.zeros(len(caps))
    for stage in stages:
        vals = np.array([lat[c].get(stage, 0.0) for c in caps])
        ax.barh(caps, vals, left=left, label=stage)
        left += vals
    ax.set_xlabel("mean latency per frame (ms)")
    ax.legend(fontsize=7, ncol=4, loc="lower right")
    fig.tight_layout()
    path = out / "latency.png"
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def capability_sections(result: ReplayResult, out: Path) -> list[tuple[str, Section]]:
    """(title, section) of every registered capability the replay ran or has metrics for, in table order."""
    from glassbox import capabilities
    sections = []
    for cap in capabilities.all_capabilities():
        metrics, samples = result.metrics.get(cap.name), result.samples.get(cap.name, [])
        if metrics is None and not samples:
            continue
        render = capabilities.load(cap.report) if cap.report else generic_section
        sections.append((cap.title, render(cap.title, metrics, samples, out)))
    return sections


def _monitor_table(metrics: dict[str, Any]) -> str:
    mon = metrics.get("monitor", {})
    if not mon:
        return ""
    rows = [[model, s, v["OK"], v["WARN"], v["ERROR"]] for model, segs in mon.items() for s, v in segs.items()]
    return ("<h3>Entropy monitor: share of frames per level</h3>" +
            table(rows, ["model", "segment", "OK", "WARN", "ERROR"]))


CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;max-width:1200px;margin:24px auto;
padding:0 16px;color:#222}h1{margin-bottom:4px}h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:32px}
table{border-collapse:collapse;margin:8px 0 16px}td,th{border:1px solid #ccc;padding:4px 10px;text-align:right}
th{background:#f3f3f3}td.text,th:first-child{text-align:left}img{max-width:100%;border:1px solid #ddd;
margin:6px 0}.warn{background:#fff3cd;border:1px solid #e0c36a;padding:8px 12px;border-radius:4px}
.muted{color:#666;font-size:90%}figure{margin:0 0 14px}figcaption{font-size:90%;color:#444}"""


def write_report(result: ReplayResult, out_dir: str | Path, warn_z: float = 3.0) -> Path:
    """Write report.html, metrics.json and the plots into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_metrics(result, out / "metrics.json")
    ent = plot_entropy(result, out, warn_z)
    mon = plot_monitor(result, out)
    lat = plot_latency(result, out)
    sections = capability_sections(result, out)
    samples = [fig for _, sec in sections for fig in sec.figures]
    metric_html = "\n".join([sec.metrics_html for _, sec in sections] + [_monitor_table(result.metrics)])
    frames = result.metrics.get("frames", {})
    summary = table([[k, v] for k, v in frames.items()], ["pipeline", "frames"])
    topics = table([[r, t] for r, t in sorted(result.topics.items())], ["role", "topic"])
    warn = "".join(f"<li>{html.escape(w)}</li>" for w in result.warnings)
    rejected = result.metrics.get("rejected", {})
    rej = "".join(f"<li>{html.escape(k)}: {v}</li>" for k, v in rejected.items())
    img = lambda p, cap="": f"<figure><img src='{p.name}' alt='{html.escape(cap)}'><figcaption>{html.escape(cap)}</figcaption></figure>"  # noqa: E731
    body = [f"<h1>glassbox replay report</h1><p class='muted'>{html.escape(result.bag)} → "
            f"{html.escape(result.out_bag)} · {result.messages_written} messages written · "
            f"{result.wall_time_s:.1f} s</p>",
            "<h2>Summary</h2>", summary, topics,
            (f"<div class='warn'><b>Warnings</b><ul>{warn}</ul></div>" if warn else ""),
            (f"<div class='warn'><b>Rejected input</b><ul>{rej}</ul></div>" if rej else ""),
            "<h2>Metrics</h2>", metric_html.strip() or "<p>No metrics (no ground truth).</p>",
            "<h2>Entropy monitor</h2>", img(mon, "monitor level per entropy profile") if mon else "<p>No profiles.</p>",
            monitor_section(result, out),
            "<h2>Per-layer entropy</h2><p class='muted'>Green band: the model card's reference profile "
            f"(mean ± {warn_z:g} std on validation data); background: lighting segment.</p>",
            *[img(p, f"per-layer entropy of {p.stem[len('entropy_'):]}") for p in ent],
            "<h2>Latency per stage</h2>", img(lat, "mean latency per stage") if lat else "",
            "<h2>Frames</h2>", *[img(p, cap) for cap, p in samples]]
    path = out / "report.html"
    path.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>glassbox replay report</title>"
                    f"<style>{CSS}</style></head><body>{''.join(body)}</body></html>\n")
    return path
