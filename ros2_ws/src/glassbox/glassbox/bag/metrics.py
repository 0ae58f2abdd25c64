"""Replay metrics: one function per capability (named in its capability record's ``metrics``), plus the monitor,
latency, frame and rejection summaries that every replay gets.

A capability's function takes its frame records (``ReplayResult.frames`` of that capability) and the bag's ground
truth by role and stamp, and returns metrics per lighting segment (``all`` = every frame), or a sentence saying
why there are none.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from glassbox import capabilities
from glassbox.classes import BINARY_CLASSES, DETECTION_CLASSES, DETECTION_ID, TRAVERSABLE_SEMANTIC_IDS
from glassbox.monitor import Level
from glassbox.msg import detection2d_array_to_numpy, detection3d_array_to_numpy, image_to_array

NO_GROUND_TRUTH = "no ground truth in the bag"
GroundTruth = dict[str, dict[int, Any]]          # role -> header stamp (ns) -> message


def _round(v: float) -> float | None:
    return None if np.isnan(v) else round(float(v), 4)


def _segments(frames: list[dict]) -> dict[str, list[dict]]:
    out = {"all": frames}
    for f in frames:
        if f["lighting"]:
            out.setdefault(f["lighting"], []).append(f)
    return out


def _per_segment(frames: list[dict], truth: dict[int, Any], score) -> dict[str, Any] | str:
    """``score(frames_of_segment)`` for every lighting segment of the frames that have ground truth, with the
    segment's frame count; ``NO_GROUND_TRUTH`` when none has."""
    matched = [f for f in frames if f["stamp_ns"] in truth]
    if not matched:
        return NO_GROUND_TRUTH
    return {seg: {**score(fs), "frames": len(fs)} for seg, fs in _segments(matched).items()}


def lidar_metrics(frames: list[dict], gt: GroundTruth) -> dict[str, Any] | str:
    """BEV and 3D AP (R40) per class against ``gt_lidar`` boxes."""
    from glassbox.metrics.detection3d import evaluate_detections
    truth = gt.get("gt_lidar", {})

    def score(fs: list[dict]) -> dict[str, Any]:
        m = evaluate_detections([f["_pred"] for f in fs], [_gt_boxes3d(truth[f["stamp_ns"]]) for f in fs])
        return {k: _round(v) for k, v in m.items()}
    return _per_segment(frames, truth, score)


def _gt_boxes3d(msg: Any) -> Any:
    from glassbox.lidar.decode import Detections3D
    g = detection3d_array_to_numpy(msg)
    classes = np.array([DETECTION_ID.get(n, -1) for n in g.class_names], np.int64)
    return Detections3D(centers=g.centers.astype(np.float32), sizes=g.sizes.astype(np.float32),
                        yaw=g.yaw.astype(np.float32), classes=classes, scores=np.ones(len(classes), np.float32))


def segmentation_metrics(frames: list[dict], gt: GroundTruth) -> dict[str, Any] | str:
    """mIoU, pixel accuracy and per-class IoU against the ``gt_semantic`` label images."""
    from glassbox.metrics.segmentation import SegmentationMeter
    truth = gt.get("gt_semantic", {})

    def score(fs: list[dict]) -> dict[str, Any]:
        names = fs[0]["_class_names"]
        meter = SegmentationMeter(len(names))
        for f in fs:
            sem = image_to_array(truth[f["stamp_ns"]])
            binary = tuple(names) == BINARY_CLASSES
            meter.update(f["_labels"], np.isin(sem, TRAVERSABLE_SEMANTIC_IDS).astype(np.uint8) if binary else sem)
        r = meter.result()
        return {"miou": round(float(r["miou"]), 4), "pixel_accuracy": round(float(r["pixel_accuracy"]), 4),
                "iou": {n: _round(v) for n, v in zip(names, r["iou"])}}
    return _per_segment(frames, truth, score)


def fusion_metrics(frames: list[dict], gt: GroundTruth) -> dict[str, Any] | str:
    """COCO-style mAP against the ``gt_rgb`` boxes, and the mean RGB share of the fusion weights."""
    from glassbox.metrics.detection2d import Detections2D, GroundTruth2D, evaluate_detections_2d
    truth = gt.get("gt_rgb", {})

    def score(fs: list[dict]) -> dict[str, Any]:
        dets = [Detections2D(f["_pred"].boxes, f["_pred"].scores, f["_pred"].classes) for f in fs]
        gts = []
        for f in fs:
            g = detection2d_array_to_numpy(truth[f["stamp_ns"]])
            gts.append(GroundTruth2D(g.boxes_xyxy, np.array([DETECTION_ID.get(n, -1) for n in g.class_names])))
        m = evaluate_detections_2d(dets, gts, len(DETECTION_CLASSES))
        return {"map50": round(float(m["map50"]), 4), "map": round(float(m["map"]), 4),
                "ap50": {n: _round(v) for n, v in zip(DETECTION_CLASSES, m["ap50"])},
                "mean_rgb_share": round(float(np.mean([f["rgb_share"] for f in fs])), 4)}
    return _per_segment(frames, truth, score)


def monitor_metrics(monitor: dict[str, list[tuple[int, int, str]]]) -> dict[str, Any]:
    """Share of profiles per monitor level, per model and lighting segment."""
    out: dict[str, Any] = {}
    for model, states in monitor.items():
        per_seg: dict[str, list[int]] = defaultdict(list)
        for _, level, seg in states:
            per_seg["all"].append(level)
            if seg:
                per_seg[seg].append(level)
        out[model] = {seg: {lv.name: round(float(np.mean(np.asarray(levels) == int(lv))), 4)
                            for lv in (Level.OK, Level.WARN, Level.ERROR)} for seg, levels in per_seg.items()}
    return out


def latency_metrics(by_cap: dict[str, list[dict]]) -> dict[str, dict[str, float]]:
    """Mean time per pipeline step, per capability, ms."""
    lat: dict[str, dict[str, float]] = {}
    for cap, fs in by_cap.items():
        keys = sorted({k for f in fs for k in f["timings_ms"]})
        lat[cap] = {k: round(float(np.mean([f["timings_ms"][k] for f in fs if k in f["timings_ms"]])), 3)
                    for k in keys}
    return lat


def compute_metrics(result: Any) -> dict[str, Any]:
    """Every metric of a ``ReplayResult``: each capability's own (from its record), monitor, latency, counts."""
    by_cap: dict[str, list[dict]] = defaultdict(list)
    for f in result.frames:
        by_cap[f["capability"]].append(f)
    metrics: dict[str, Any] = {}
    for cap in capabilities.all_capabilities():
        if cap.metrics and cap.name in by_cap:
            metrics[cap.name] = capabilities.load(cap.metrics)(by_cap[cap.name], result.frames_gt)
    mon = monitor_metrics(result.monitor)
    if mon:
        metrics["monitor"] = mon
    metrics["latency_ms"] = latency_metrics(by_cap)
    metrics["frames"] = {cap: len(fs) for cap, fs in by_cap.items()}
    metrics["rejected"] = dict(result.rejected)
    return metrics
