"""The replay report's per-capability sections: a metric table per lighting segment and a few frames.

A capability record names its section function (``Capability.report``); a capability without one gets
:func:`generic_section`, which tables whatever numeric metrics its ``metrics`` function returned. A section
function takes ``(title, metrics, samples, out)``: ``metrics`` is the capability's entry of the replay metrics
(segment -> {name: value}, a string when the bag had no ground truth, or None), ``samples`` the frames the
replay kept for it, ``out`` the report folder for its PNGs; it returns a :class:`Section`.
"""
from __future__ import annotations

import html
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Section:
    """The HTML of a capability's metric tables and its sample frames as (caption, PNG path)."""

    metrics_html: str = ""
    figures: list[tuple[str, Path]] = field(default_factory=list)


def table(rows: list[list[Any]], header: list[str]) -> str:
    """An HTML table; floats with 3 decimals, None as a dash."""
    def cell(v: Any) -> str:
        if isinstance(v, float):
            text = str(int(v)) if v.is_integer() and abs(v) > 1 else f"{v:.3f}"
            return f"<td>{text}</td>"
        if isinstance(v, int):
            return f"<td>{v}</td>"
        return f"<td class='text'>{html.escape('—' if v is None else str(v))}</td>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(cell(v) for v in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _metric_table(title: str, metrics: Any, keys: list[str], header: list[str]) -> str:
    """``<h3>title</h3>`` and one row per segment with ``keys``; a note when there was no ground truth."""
    if isinstance(metrics, str):
        return f"<p><b>{html.escape(title)}</b>: {html.escape(metrics)}</p>"
    if not isinstance(metrics, dict) or not metrics:
        return ""
    rows = [[seg, m.get("frames"), *[m.get(k) for k in keys]] for seg, m in metrics.items()]
    return f"<h3>{html.escape(title)}</h3>" + table(rows, ["segment", "frames", *header])


def generic_section(title: str, metrics: Any, samples: list[dict], out: Path) -> Section:
    """Every numeric metric of every segment, in the order the metrics function wrote them."""
    keys: list[str] = []
    if isinstance(metrics, dict):
        for m in metrics.values():
            keys += [k for k, v in m.items() if k != "frames" and isinstance(v, (int, float)) and k not in keys]
    return Section(_metric_table(title, metrics, keys, keys))


def pyplot():
    """matplotlib's pyplot on the Agg (file-only) backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def lidar_section(title: str, metrics: Any, samples: list[dict], out: Path, max_frames: int = 3) -> Section:
    """AP|R40 per class, and range images with the detections' peak pixels."""
    keys = ["car/bev@0.5", "car/3d@0.5", "car/bev@0.7", "pedestrian/bev@0.25", "cyclist/bev@0.25", "car/num_gt"]
    section = Section(_metric_table(f"{title} (AP|R40)", metrics, keys, keys[:-1] + ["car boxes"]))
    plt = pyplot()
    for i, s in enumerate(samples[:max_frames]):
        rng = s["range"]
        fig, ax = plt.subplots(figsize=(12, 2.2))
        ax.imshow(np.where(rng > 0, rng, np.nan), cmap="turbo", aspect="auto", interpolation="nearest")
        d = s["detections"]
        if len(d):
            ax.scatter(d.pixels[:, 1], d.pixels[:, 0], s=60, facecolors="none", edgecolors="white", lw=1.5)
        ax.set_title(f"range image [{s['lighting']}]: {len(d)} detections (circles at the peak pixels)", fontsize=9)
        ax.axis("off")
        fig.tight_layout()
        path = out / f"lidar_{i}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        section.figures.append((f"LiDAR, {s['lighting']}", path))
    return section


def segmentation_section(title: str, metrics: Any, samples: list[dict], out: Path, max_frames: int = 3) -> Section:
    """mIoU and pixel accuracy, and camera frames beside their class overlay."""
    import cv2

    from glassbox.stages.camera import segmentation_overlay
    section = Section(_metric_table(title, metrics, ["miou", "pixel_accuracy"], ["mIoU", "pixel accuracy"]))
    for i, s in enumerate(samples[:max_frames]):
        img = segmentation_overlay(s["rgb"], s["labels"], s["class_names"])
        path = out / f"segmentation_{i}.png"
        cv2.imwrite(str(path), np.concatenate([s["rgb"][:, :, ::-1], img], axis=1))
        section.figures.append((f"segmentation, {s['lighting']} (camera | overlay)", path))
    return section


def fusion_section(title: str, metrics: Any, samples: list[dict], out: Path, max_frames: int = 3) -> Section:
    """mAP and the RGB weight share, and RGB frames with boxes beside the thermal frame."""
    import cv2

    from glassbox.stages.camera import draw_boxes_bgr
    section = Section(_metric_table(title, metrics, ["map50", "map", "mean_rgb_share"],
                                    ["mAP@0.5", "mAP@[.5:.95]", "mean RGB weight share"]))
    for i, s in enumerate(samples[:max_frames]):
        r = s["result"]
        names = [r.class_names[int(c)] for c in r.classes]
        rgb = draw_boxes_bgr(s["rgb"], r.boxes, names, r.scores)
        th = s["thermal"]
        th8 = th if th.dtype == np.uint8 else cv2.normalize(th, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
        th_bgr = cv2.resize(cv2.applyColorMap(th8, cv2.COLORMAP_INFERNO), (rgb.shape[1], rgb.shape[0]))
        path = out / f"fusion_{i}.png"
        cv2.imwrite(str(path), np.concatenate([rgb, th_bgr], axis=1))
        section.figures.append((f"fusion, {s['lighting']}: RGB share {r.rgb_share:.2f} (RGB with boxes | thermal)",
                                path))
    return section
