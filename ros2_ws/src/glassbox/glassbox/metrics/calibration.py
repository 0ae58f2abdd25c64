"""Calibration of per-detection uncertainty: score reliability (ECE), the coverage of a predicted centre
covariance, and how well an uncertainty separates wrong from right detections (AUROC).

A detection is *right* when it matches a ground-truth box of its class at IoU >= ``iou`` (greedy in score
order, each box matched once, as COCO does); one that matches only an ignored box is neither and is dropped.
Recalibration maps fitted on one split and measured on another: Platt scaling of the score
(``sigmoid(a logit(s) + b)``, the logistic regression of right/wrong on the score's logit) and one scale of the
centre covariance (the one that puts the wanted share of true centres inside its ellipse).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import minimize
from scipy.special import expit, logit
from scipy.stats import chi2, mannwhitneyu

from glassbox.metrics.detection2d import box_iou


def match_detections(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, gt_boxes: np.ndarray,
                     gt_classes: np.ndarray, gt_ignored: np.ndarray | None = None,
                     iou: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """Per detection: the index of its matched ground-truth box (-1 = none) and whether it is kept (False: it
    matched an ignored box only)."""
    n = len(scores)
    matched, kept = np.full(n, -1, np.int64), np.ones(n, bool)
    ignored = np.zeros(len(gt_boxes), bool) if gt_ignored is None else np.asarray(gt_ignored, bool)
    if n == 0 or len(gt_boxes) == 0:
        return matched, kept
    overlap = box_iou(np.asarray(boxes, np.float64), np.asarray(gt_boxes, np.float64))
    overlap[np.asarray(classes)[:, None] != np.asarray(gt_classes)[None, :]] = 0.0
    taken = np.zeros(len(gt_boxes), bool)
    for i in np.argsort(-np.asarray(scores), kind="mergesort"):
        free = ~taken & (overlap[i] >= iou)
        if (free & ~ignored).any():
            j = int(np.argmax(np.where(free & ~ignored, overlap[i], -1.0)))
            taken[j], matched[i] = True, j
        elif free.any():
            kept[i] = False
    return matched, kept


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = 10) -> float:
    """ECE over ``bins`` equal-width confidence bins: sum_b (n_b / n) |accuracy_b - mean confidence_b|."""
    c, y = np.asarray(confidence, np.float64), np.asarray(correct, np.float64)
    if len(c) == 0:
        return float("nan")
    which = np.minimum((c * bins).astype(np.int64), bins - 1)
    total = 0.0
    for b in range(bins):
        sel = which == b
        if sel.any():
            total += sel.sum() * abs(y[sel].mean() - c[sel].mean())
    return float(total / len(c))


def auroc(uncertainty: np.ndarray, wrong: np.ndarray) -> float:
    """P(u of a wrong detection > u of a right one), ties counting 1/2 (the Mann-Whitney U statistic)."""
    u, w = np.asarray(uncertainty, np.float64), np.asarray(wrong, bool)
    if w.all() or not w.any():
        return float("nan")
    return float(mannwhitneyu(u[w], u[~w]).statistic / (w.sum() * (~w).sum()))


def platt_fit(scores: np.ndarray, correct: np.ndarray) -> tuple[float, float]:
    """(a, b) of ``sigmoid(a logit(s) + b)`` by maximum likelihood (a small L2 pull to (1, 0))."""
    z = logit(np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6))
    y = np.asarray(correct, np.float64)

    def nll(ab: np.ndarray) -> tuple[float, np.ndarray]:
        t = ab[0] * z + ab[1]
        p = expit(t)
        loss = np.sum(np.logaddexp(0.0, t) - y * t) + 1e-3 * ((ab[0] - 1) ** 2 + ab[1] ** 2)
        g = p - y
        return loss, np.array([np.sum(g * z) + 2e-3 * (ab[0] - 1), np.sum(g) + 2e-3 * ab[1]])

    res = minimize(nll, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B")
    return float(res.x[0]), float(res.x[1])


def platt_apply(scores: np.ndarray, a: float, b: float) -> np.ndarray:
    z = logit(np.clip(np.asarray(scores, np.float64), 1e-6, 1 - 1e-6))
    return expit(a * z + b)


def mahalanobis_sq(error: np.ndarray, variance: np.ndarray) -> np.ndarray:
    """(N,) squared Mahalanobis distance of (N, D) errors under diagonal (N, D) variances."""
    return np.sum(np.square(error) / np.maximum(variance, 1e-12), axis=1)


def ellipse_coverage(error: np.ndarray, variance: np.ndarray, k: float = 2.0) -> float:
    """Share of errors inside the k-sigma ellipse (Mahalanobis distance <= k); 86.5% for a true 2-D Gaussian
    and k = 2."""
    return float(np.mean(mahalanobis_sq(error, variance) <= k * k)) if len(error) else float("nan")


def covariance_scale(error: np.ndarray, variance: np.ndarray, share: float = 0.95, k: float = 2.0) -> float:
    """The factor of the variances that puts ``share`` of the errors inside the k-sigma ellipse."""
    if len(error) == 0:
        return 1.0
    return float(np.quantile(mahalanobis_sq(error, variance), share) / (k * k))


def gaussian_share(k: float = 2.0, dims: int = 2) -> float:
    """The share of a true ``dims``-D Gaussian inside its k-sigma ellipse."""
    return float(chi2.cdf(k * k, dims))


def summarise_detection_calibration(rows: np.ndarray) -> dict:
    """The calibration report of a sampled detection head from one row per detection: (split, raw score, right,
    epistemic part of the score entropy, centre error (2), centre variance (2)); split 0 rows fit the Platt
    scaling and the centre variance scale, split 1 rows measure them. Returns score ECE before and after Platt
    scaling, the share of right detections inside the predicted 2-sigma centre ellipse as predicted and after
    the fitted scale, and the AUROC (wrong vs right) of the calibrated score's entropy, its epistemic part, the
    centre std and 1 - calibrated score."""
    r = np.asarray(rows, np.float64).reshape(-1, 8)
    fit, test = r[r[:, 0] == 0], r[r[:, 0] == 1]
    a, b = platt_fit(fit[:, 1], fit[:, 2])
    score = platt_apply(test[:, 1], a, b)
    right, fit_right = test[:, 2] > 0, fit[:, 2] > 0
    scale = covariance_scale(fit[fit_right, 4:6], fit[fit_right, 6:8])
    centre_std = np.sqrt(test[:, 6:8].sum(axis=1))
    sc = np.clip(score, 1e-12, 1 - 1e-12)
    entropy = -(sc * np.log(sc) + (1 - sc) * np.log(1 - sc))
    return {"detections": int(len(test)), "right": int(right.sum()), "fit_detections": int(len(fit)),
            "platt": [a, b], "ece_raw": expected_calibration_error(test[:, 1], right),
            "ece": expected_calibration_error(score, right),
            "centre_coverage_2sigma_raw": ellipse_coverage(test[right, 4:6], test[right, 6:8]),
            "centre_variance_scale": scale,
            "centre_coverage_2sigma": ellipse_coverage(test[right, 4:6], scale * test[right, 6:8]),
            "auroc_score_entropy": auroc(entropy, ~right), "auroc_epistemic": auroc(test[:, 3], ~right),
            "auroc_centre_std": auroc(centre_std, ~right), "auroc_one_minus_score": auroc(1 - score, ~right)}
