"""COCO 2D detection metrics: exact box IoU, AP per class at IoU 0.5 and mAP over IoU 0.50:0.05:0.95.

Boxes are pixel xyxy in continuous coordinates (area = (x2 - x1) * (y2 - y1), no "+1"). The evaluation is the
COCO evaluator's (and agrees with pycocotools to 1e-6, tested), written for arrays:

* per image and class, at most ``max_dets`` detections of highest score are evaluated;
* ground-truth boxes flagged ``ignore``, ``crowd`` or outside ``area_range`` are *ignored*: they count neither
  as misses nor as hits, and a detection matched to one is dropped from the ranking;
* detections in descending score order each take the free ground-truth box of highest IoU (>= the threshold;
  the last of equal ones), regular boxes before ignored ones; a crowd region may absorb any number of
  detections and its IoU is intersection over the detection's area; a non-crowd box is taken at most once;
* unmatched detections whose area lies outside ``area_range`` are dropped, the others are false positives;
* AP is the area under the precision envelope sampled at 101 recall points (0, 0.01, ..., 1). A class without a
  regular ground-truth box in the whole set has an undefined AP (NaN) and is left out of the means.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

COCO_IOU_THRESHOLDS: tuple[float, ...] = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())


class DetectionMetricError(ValueError):
    """Detections or ground truth are malformed."""


@dataclass(frozen=True)
class Detections2D:
    boxes: np.ndarray      # (N, 4) xyxy
    scores: np.ndarray     # (N,)
    classes: np.ndarray    # (N,) int


@dataclass(frozen=True)
class GroundTruth2D:
    boxes: np.ndarray      # (M, 4) xyxy
    classes: np.ndarray    # (M,) int
    ignore: np.ndarray | None = None   # (M,) bool; None = no box ignored
    crowd: np.ndarray | None = None    # (M,) bool: crowd regions (COCO iscrowd); None = none

    def ignored(self) -> np.ndarray:
        return np.zeros(len(self.classes), bool) if self.ignore is None else np.asarray(self.ignore, bool)

    def crowds(self) -> np.ndarray:
        return np.zeros(len(self.classes), bool) if self.crowd is None else np.asarray(self.crowd, bool)


def box_area(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def box_iou(a: np.ndarray, b: np.ndarray, crowd: np.ndarray | None = None) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU; zero-area boxes have IoU 0 with everything. For the ``b`` boxes flagged
    ``crowd`` (M,) the overlap is intersection over the area of the ``a`` box (COCO's crowd rule)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a, area_b = box_area(a), box_area(b)
    union = area_a[:, None] + area_b[None, :] - inter
    if crowd is not None:
        union = np.where(np.asarray(crowd, bool)[None, :], area_a[:, None], union)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def average_precision_101(tp: np.ndarray, scores: np.ndarray, num_gt: int) -> float:
    """COCO 101-point interpolated AP from per-detection TP flags and scores (all images pooled)."""
    if num_gt == 0:
        return float("nan")
    if tp.size == 0:
        return 0.0
    order = np.argsort(-scores, kind="mergesort")
    tps = np.cumsum(tp[order])
    fps = np.cumsum(~tp[order])
    recall = tps / num_gt
    precision = tps / np.maximum(tps + fps, np.finfo(np.float64).eps)
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    points = np.linspace(0.0, 1.0, 101)
    idx = np.searchsorted(recall, points, side="left")
    sampled = np.where(idx < len(envelope), envelope[np.minimum(idx, len(envelope) - 1)], 0.0)
    return float(sampled.mean())


def _match(det: Detections2D, gt: GroundTruth2D, cls: int, thresholds: np.ndarray,
           area_range: tuple[float, float], max_dets: int | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP flags and kept flags (T, n) of this class's (at most ``max_dets``) detections in one image, and their
    scores, in descending score order."""
    dsel = det.classes == cls
    order = np.argsort(-det.scores[dsel], kind="mergesort")[:max_dets]
    boxes, scores = det.boxes[dsel][order], det.scores[dsel][order]
    gsel = gt.classes == cls
    area = box_area(gt.boxes[gsel])
    gign = gt.ignored()[gsel] | gt.crowds()[gsel] | (area < area_range[0]) | (area > area_range[1])
    gorder = np.argsort(gign, kind="mergesort")                                # regular boxes first
    gboxes, gign, gcrowd = gt.boxes[gsel][gorder], gign[gorder], gt.crowds()[gsel][gorder]
    tp = np.zeros((len(thresholds), len(scores)), bool)
    keep = np.ones((len(thresholds), len(scores)), bool)
    darea = box_area(boxes)
    outside = (darea < area_range[0]) | (darea > area_range[1])
    if len(scores) == 0:
        return tp, keep, scores
    iou = box_iou(boxes, gboxes, gcrowd)                                        # (n, m)
    last = np.arange(len(gboxes))
    for t, thr in enumerate(thresholds):
        thr = min(float(thr), 1 - 1e-10)
        taken = np.zeros(len(gboxes), bool)
        for i in range(len(scores)):
            free = (~taken | gcrowd) & (iou[i] >= thr)
            pool = free & ~gign if (free & ~gign).any() else free
            if not pool.any():
                keep[t, i] = not outside[i]
                continue
            best = iou[i] == iou[i][pool].max()
            j = int(last[pool & best][-1])                                      # the last of equal overlaps
            taken[j] = True
            tp[t, i] = not gign[j]
            keep[t, i] = not gign[j]
    return tp, keep, scores


def evaluate_detections_2d(detections: Sequence[Detections2D], ground_truth: Sequence[GroundTruth2D],
                           num_classes: int, iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS,
                           area_range: tuple[float, float] = (0.0, float("inf")), max_dets: int | None = None
                           ) -> dict[str, object]:
    """AP per class and threshold over a whole set of images.

    ``area_range`` (px², inclusive) and ``max_dets`` (per image and class; None = all) are COCO's: e.g.
    ``(0, 32**2)`` with ``max_dets=100`` is its AP_small.

    Returns ``ap`` (T, K) with NaN for classes without ground truth, ``ap50`` (K,) at IoU 0.5, ``map50`` (mean
    of ``ap50`` over classes with ground truth) and ``map`` (mean over thresholds and those classes).
    """
    if len(detections) != len(ground_truth):
        raise DetectionMetricError(f"{len(detections)} detection sets for {len(ground_truth)} images")
    thr = np.asarray(iou_thresholds, np.float64)
    ap = np.full((len(thr), num_classes), np.nan)
    for c in range(num_classes):
        flags, kept, scores, num_gt = [], [], [], 0
        for det, gt in zip(detections, ground_truth):
            area = box_area(gt.boxes)
            regular = ~gt.ignored() & ~gt.crowds() & (area >= area_range[0]) & (area <= area_range[1])
            num_gt += int(np.sum((gt.classes == c) & regular))
            f, k, s = _match(det, gt, c, thr, area_range, max_dets)
            flags.append(f)
            kept.append(k)
            scores.append(s)
        if num_gt == 0:
            continue
        all_flags = np.concatenate(flags, axis=1)
        all_kept = np.concatenate(kept, axis=1)
        all_scores = np.concatenate(scores)
        for t in range(len(thr)):
            ap[t, c] = average_precision_101(all_flags[t][all_kept[t]], all_scores[all_kept[t]], num_gt)
    i50 = int(np.argmin(np.abs(thr - 0.5)))
    has = np.isfinite(ap[i50])
    return {"ap": ap, "ap50": ap[i50], "map50": float(ap[i50][has].mean()) if has.any() else float("nan"),
            "map": float(np.nanmean(ap[:, has])) if has.any() else float("nan")}
