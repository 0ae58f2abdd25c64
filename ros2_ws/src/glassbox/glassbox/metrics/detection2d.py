"""COCO-style 2D detection metrics: exact box IoU, AP per class at IoU 0.5 and mAP over IoU 0.50:0.05:0.95.

Boxes are pixel xyxy in continuous coordinates (area = (x2 - x1) * (y2 - y1), no "+1"). Matching follows the
COCO evaluator: per image and class, detections in descending score order each take the unmatched ground-truth
box of highest IoU if that IoU is >= the threshold; everything else is a false positive. AP is the area under
the precision envelope sampled at 101 recall points (0, 0.01, ..., 1). A class with no ground-truth box in the
whole set has an undefined AP (NaN) and is left out of the mean; detections of such a class are ignored.
Ground-truth boxes flagged ``ignore`` (e.g. below the evaluated size range, like COCO's area ranges and
KITTI's minimum height) count neither as misses nor as hits: a detection that matches no regular box but
overlaps an ignored one at the threshold is dropped instead of counted as a false positive.
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

    def ignored(self) -> np.ndarray:
        return np.zeros(len(self.classes), bool) if self.ignore is None else np.asarray(self.ignore, bool)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, 4) x (M, 4) xyxy -> (N, M) IoU; zero-area boxes have IoU 0 with everything."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = iw * ih
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
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


def _match(det: Detections2D, gt: GroundTruth2D, cls: int, thresholds: np.ndarray
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TP flags and kept flags (T, n_det_of_class), and the scores of this class's detections in one image."""
    dsel = det.classes == cls
    boxes, scores = det.boxes[dsel], det.scores[dsel]
    order = np.argsort(-scores, kind="mergesort")
    boxes, scores = boxes[order], scores[order]
    gsel = gt.classes == cls
    gboxes, gign = gt.boxes[gsel], gt.ignored()[gsel]
    tp = np.zeros((len(thresholds), len(scores)), bool)
    keep = np.ones((len(thresholds), len(scores)), bool)
    if len(gboxes) == 0 or len(scores) == 0:
        return tp, keep, scores
    iou = box_iou(boxes, gboxes)                                                # (n, m)
    regular = np.where(gign[None, :], -1.0, iou)
    ignored = np.where(gign[None, :], iou, -1.0).max(axis=1)
    for t, thr in enumerate(thresholds):
        taken = np.zeros(len(gboxes), bool)
        for i in range(len(scores)):
            cand = np.where(taken, -1.0, regular[i])
            j = int(np.argmax(cand))
            if cand[j] >= thr:
                taken[j] = True
                tp[t, i] = True
            elif ignored[i] >= thr:
                keep[t, i] = False
    return tp, keep, scores


def evaluate_detections_2d(detections: Sequence[Detections2D], ground_truth: Sequence[GroundTruth2D],
                           num_classes: int, iou_thresholds: Sequence[float] = COCO_IOU_THRESHOLDS
                           ) -> dict[str, object]:
    """AP per class and threshold over a whole set of images.

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
            num_gt += int(np.sum((gt.classes == c) & ~gt.ignored()))
            f, k, s = _match(det, gt, c, thr)
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
