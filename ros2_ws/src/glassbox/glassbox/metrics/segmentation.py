"""Semantic segmentation metrics: confusion matrix accumulated over a whole test set, per-class IoU and mIoU.

IoU_k = TP_k / (TP_k + FP_k + FN_k) from the confusion matrix summed over every image (not averaged per image).
A class that appears neither in the labels nor in the predictions has an undefined IoU (NaN) and is left out
of the mean. Pixels labelled ``ignore_index`` are not counted. Values are fractions in [0, 1].
"""
from __future__ import annotations

import numpy as np


class SegmentationMetricError(ValueError):
    """Predictions and labels do not match, or hold ids outside the class range."""


def confusion_matrix(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = true class, columns = predicted class."""
    pred, label = np.asarray(pred), np.asarray(label)
    if pred.shape != label.shape:
        raise SegmentationMetricError(f"prediction shape {pred.shape} != label shape {label.shape}")
    valid = label != ignore_index
    p, t = pred[valid].astype(np.int64), label[valid].astype(np.int64)
    if p.size and (p.min() < 0 or p.max() >= num_classes or t.min() < 0 or t.max() >= num_classes):
        raise SegmentationMetricError(f"class ids must lie in [0, {num_classes}) (or be {ignore_index} in labels)")
    return np.bincount(t * num_classes + p, minlength=num_classes ** 2).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> np.ndarray:
    """Per-class IoU (NaN where the class is absent from both labels and predictions)."""
    conf = conf.astype(np.float64)
    tp = np.diag(conf)
    union = conf.sum(axis=0) + conf.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / union, np.nan)


class SegmentationMeter:
    """Accumulates a confusion matrix over batches; ``result()`` gives per-class IoU, mIoU and pixel accuracy."""

    def __init__(self, num_classes: int, ignore_index: int = 255) -> None:
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.conf = np.zeros((num_classes, num_classes), np.int64)

    def update(self, pred: np.ndarray, label: np.ndarray) -> None:
        self.conf += confusion_matrix(pred, label, self.num_classes, self.ignore_index)

    def result(self) -> dict[str, object]:
        iou = iou_from_confusion(self.conf)
        total = self.conf.sum()
        return {"iou": iou, "miou": float(np.nanmean(iou)) if np.isfinite(iou).any() else float("nan"),
                "pixel_accuracy": float(np.trace(self.conf) / total) if total else float("nan")}


def mean_iou(pred: np.ndarray, label: np.ndarray, num_classes: int, ignore_index: int = 255) -> float:
    """mIoU of one prediction/label pair (or of stacked batches)."""
    meter = SegmentationMeter(num_classes, ignore_index)
    meter.update(pred, label)
    return float(meter.result()["miou"])


def fit_decision_bias(logits: np.ndarray, labels: np.ndarray, ignore_index: int = 255,
                      steps: tuple[float, ...] = (-1.0, -0.5, -0.25, 0.25, 0.5, 1.0),
                      rounds: int = 2) -> tuple[np.ndarray, float]:
    """Per-class offsets ``b`` (K,) of the decision ``argmax_k(logits_k + b_k)`` that maximise the mIoU of
    ``logits`` (N, K, H, W) against ``labels`` (N, H, W), by coordinate ascent from 0 over ``steps`` (``rounds``
    passes over the classes; a change is kept only when it raises the mIoU). Returns ``(b, mIoU)``.

    The probabilities are not changed: this is the decision rule for an IoU loss instead of the accuracy (for which
    the plain argmax is optimal), which favours rare, thin classes (poles, pedestrians) whose pixels an argmax of
    calibrated probabilities gives to their larger neighbours."""
    k = logits.shape[1]
    valid = labels != ignore_index
    y = labels[valid].astype(np.int64)

    def miou(b: np.ndarray) -> float:
        pred = (logits + b.astype(logits.dtype)[None, :, None, None]).argmax(1)[valid]
        conf = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
        return float(np.nanmean(iou_from_confusion(conf)))

    bias = np.zeros(k)
    best = miou(bias)
    for _ in range(rounds):
        for c in range(k):
            for step in steps:
                trial = bias.copy()
                trial[c] += step
                value = miou(trial)
                if value > best + 1e-6:
                    best, bias = value, trial
    return bias, best
