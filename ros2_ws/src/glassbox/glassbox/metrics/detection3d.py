"""KITTI-style average precision of 3D detections: BEV and 3D boxes, exact rotated IoU, R40 interpolation.

For each class, metric (``bev`` or ``3d``) and IoU threshold:

1. per frame, detections of the class in decreasing score order each take the not-yet-matched ground-truth
   box with the highest IoU >= threshold (a true positive); a detection without one is a false positive,
   unless it overlaps (IoU >= threshold) an *ignored* ground-truth box, in which case it is left out entirely;
   ignored boxes do not count as positives (KITTI's DontCare / other-difficulty handling);
2. all frames' detections are pooled and sorted by score, giving precision and recall at every rank;
3. AP|R40 = mean over the 40 recall levels 1/40, 2/40, ..., 1 of the interpolated precision
   max{precision(r') : r' >= r} (0 where that recall is never reached), the rule of the KITTI benchmark since
   2019 (Simonelli et al.).

Thresholds are stated explicitly per class: car 0.7 (strict) and 0.5 (loose), pedestrian and cyclist 0.5 and
0.25. The seed's Table 23 appears to swap the 0.7 and 0.5 labels of its BEV/3D columns, so every key here carries
its threshold, e.g. ``car/bev@0.5``. KITTI's easy/moderate/hard levels rest on image-box height, occlusion and
truncation, which synthetic scans do not label; the caller instead marks ground truth to ignore (for example
boxes with fewer than a minimum number of LiDAR points).

Boxes are any objects with ``centers`` (M, 3), ``sizes`` (M, 3) l/w/h, ``yaw`` (M,), ``classes`` (M,) and, for
detections, ``scores`` (M,): ``glassbox.sim.Boxes3D`` and ``glassbox.lidar.Detections3D`` both qualify.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from glassbox.classes import DETECTION_CLASSES
from glassbox.lidar.iou import bev_iou, iou_3d

#: IoU thresholds per class: (strict, loose).
KITTI_IOU_THRESHOLDS: dict[str, tuple[float, ...]] = {
    "car": (0.7, 0.5), "pedestrian": (0.5, 0.25), "cyclist": (0.5, 0.25)}
R40 = np.arange(1, 41) / 40.0
IOU_FUNCTIONS = {"bev": bev_iou, "3d": iou_3d}


class MetricsError(ValueError):
    """Inputs the detection metrics cannot evaluate."""


def boxes7(boxes: Any) -> np.ndarray:
    """(M, 7) x, y, z, l, w, h, yaw from a Boxes3D-like object."""
    centers = np.asarray(boxes.centers, dtype=np.float64).reshape(-1, 3)
    sizes = np.asarray(boxes.sizes, dtype=np.float64).reshape(-1, 3)
    yaw = np.asarray(boxes.yaw, dtype=np.float64).reshape(-1, 1)
    if not (len(centers) == len(sizes) == len(yaw)):
        raise MetricsError(f"centers/sizes/yaw lengths differ: {len(centers)}, {len(sizes)}, {len(yaw)}")
    return np.concatenate([centers, sizes, yaw], axis=1)


def average_precision_r40(scores: np.ndarray, is_tp: np.ndarray, num_positives: int) -> float:
    """AP|R40 of pooled detections (scores, TP flags; ignored detections already removed)."""
    if num_positives <= 0:
        return float("nan")
    order = np.argsort(-np.asarray(scores), kind="stable")
    tp = np.asarray(is_tp, dtype=bool)[order]
    tp_cum = np.cumsum(tp)
    fp_cum = np.cumsum(~tp)
    if tp_cum.size == 0:
        return 0.0
    precision = tp_cum / np.maximum(tp_cum + fp_cum, 1)
    recall = tp_cum / num_positives
    interp = np.maximum.accumulate(precision[::-1])[::-1]
    idx = np.searchsorted(recall, R40 - 1e-12, side="left")
    reached = idx < recall.size
    return float(np.where(reached, interp[np.minimum(idx, recall.size - 1)], 0.0).mean())


def match_frame(det: np.ndarray, det_scores: np.ndarray, gt: np.ndarray, gt_ignore: np.ndarray,
                iou_threshold: float, metric: str = "bev") -> tuple[np.ndarray, np.ndarray]:
    """Match one frame's detections of one class. Returns (is_tp (D,), counted (D,)); detections matched to
    ignored ground truth are not counted."""
    d = len(det)
    is_tp = np.zeros(d, dtype=bool)
    counted = np.ones(d, dtype=bool)
    if d == 0 or len(gt) == 0:
        return is_tp, counted
    iou = IOU_FUNCTIONS[metric](det, gt)                                   # (D, G)
    taken = np.zeros(len(gt), dtype=bool)
    for i in np.argsort(-det_scores, kind="stable"):  # per detection of one frame and class
        cand = np.where(~taken & ~gt_ignore & (iou[i] >= iou_threshold), iou[i], -1.0)
        j = int(np.argmax(cand))
        if cand[j] >= 0:
            taken[j] = True
            is_tp[i] = True
        elif np.any(gt_ignore & (iou[i] >= iou_threshold)):
            counted[i] = False
    return is_tp, counted


def evaluate_detections(detections: Sequence[Any], ground_truth: Sequence[Any],
                        gt_ignore: Sequence[np.ndarray] | None = None,
                        metrics: Sequence[str] = ("bev", "3d"),
                        thresholds: Mapping[str, Sequence[float]] = KITTI_IOU_THRESHOLDS,
                        class_names: Sequence[str] = DETECTION_CLASSES,
                        range_m: tuple[float, float] | None = None) -> dict[str, float]:
    """AP|R40 (in [0, 1]) per ``<class>/<metric>@<iou>``, plus ``<class>/num_gt`` (non-ignored boxes).

    ``detections[f]`` and ``ground_truth[f]`` are frame f's boxes; ``gt_ignore[f]`` (M_f,) bool marks boxes to
    ignore. A class without (non-ignored) ground truth gets NaN APs. ``range_m`` = (near, far) evaluates one
    distance bin (bird's-eye distance of the box centre from the sensor, near <= d < far), the way COCO treats
    its area ranges: ground truth outside the bin is ignored (a detection matching it is not counted), and so is
    an unmatched detection outside the bin.
    """
    if len(detections) != len(ground_truth):
        raise MetricsError(f"{len(detections)} detection frames but {len(ground_truth)} ground-truth frames")
    for m in metrics:
        if m not in IOU_FUNCTIONS:
            raise MetricsError(f"unknown metric '{m}' (known: {', '.join(IOU_FUNCTIONS)})")
    frames = []
    def outside(boxes: np.ndarray) -> np.ndarray:
        if range_m is None:
            return np.zeros(len(boxes), bool)
        d = np.hypot(boxes[:, 0], boxes[:, 1])
        return (d < range_m[0]) | (d >= range_m[1])

    for f, (det, gt) in enumerate(zip(detections, ground_truth)):
        ign = np.zeros(len(np.asarray(gt.classes).reshape(-1)), dtype=bool) if gt_ignore is None \
            else np.asarray(gt_ignore[f], dtype=bool).reshape(-1)
        db, gb = boxes7(det), boxes7(gt)
        frames.append((db, np.asarray(det.scores, dtype=np.float64).reshape(-1),
                       np.asarray(det.classes).reshape(-1), gb, np.asarray(gt.classes).reshape(-1),
                       ign | outside(gb), outside(db)))
    out: dict[str, float] = {}
    for c, name in enumerate(class_names):
        if name not in thresholds:
            continue
        npos = int(sum(np.count_nonzero((gc == c) & ~ig) for _, _, _, _, gc, ig, _ in frames))
        out[f"{name}/num_gt"] = float(npos)
        for metric in metrics:
            for thr in thresholds[name]:
                scores, tps = [], []
                for db, ds, dc, gb, gc, ig, dout in frames:
                    dm, gm = dc == c, gc == c
                    is_tp, counted = match_frame(db[dm], ds[dm], gb[gm], ig[gm], thr, metric)
                    counted = counted & (is_tp | ~dout[dm])
                    scores.append(ds[dm][counted])
                    tps.append(is_tp[counted])
                ap = average_precision_r40(np.concatenate(scores) if scores else np.zeros(0),
                                           np.concatenate(tps) if tps else np.zeros(0, bool), npos)
                out[f"{name}/{metric}@{thr:g}"] = ap
    return out
