"""Calibration metrics of per-detection uncertainty (``glassbox.metrics.calibration``) against closed forms,
brute force and data drawn from known distributions."""
import itertools

import numpy as np
import pytest

from glassbox.metrics import calibration as cal


def test_ece_of_hand_made_bins():
    conf = np.array([0.95] * 10 + [0.25] * 4)
    correct = np.array([1] * 9 + [0] + [1, 0, 0, 0])
    # bin 9: accuracy 0.9 vs 0.95; bin 2: accuracy 0.25 vs 0.25
    assert cal.expected_calibration_error(conf, correct) == pytest.approx(10 / 14 * 0.05)
    assert np.isnan(cal.expected_calibration_error(np.array([]), np.array([])))


def test_auroc_is_the_pairwise_probability_with_half_ties():
    rng = np.random.default_rng(0)
    u = rng.integers(0, 5, 40).astype(float)                    # many ties
    wrong = rng.random(40) < 0.4
    pairs = [(a > b) + 0.5 * (a == b) for a, b in itertools.product(u[wrong], u[~wrong])]
    assert cal.auroc(u, wrong) == pytest.approx(np.mean(pairs))
    assert cal.auroc(np.arange(4.0), np.array([False, False, True, True])) == 1.0
    assert np.isnan(cal.auroc(np.arange(3.0), np.zeros(3, bool)))


def test_platt_recovers_a_known_logistic_and_removes_miscalibration():
    rng = np.random.default_rng(1)
    z = rng.normal(0, 1.5, 20000)
    scores = 1 / (1 + np.exp(-z))
    correct = rng.random(z.size) < 1 / (1 + np.exp(-(2.0 * z + 0.5)))
    a, b = cal.platt_fit(scores, correct)
    assert (a, b) == pytest.approx((2.0, 0.5), abs=0.08)
    assert cal.expected_calibration_error(scores, correct) > 0.05
    assert cal.expected_calibration_error(cal.platt_apply(scores, a, b), correct) < 0.015


def test_ellipse_coverage_of_true_gaussians_and_the_fitted_scale():
    rng = np.random.default_rng(2)
    var = rng.uniform(0.5, 4.0, (50000, 2))
    err = rng.normal(size=var.shape) * np.sqrt(var)
    assert cal.gaussian_share(2.0, 2) == pytest.approx(1 - np.exp(-2))
    assert cal.ellipse_coverage(err, var) == pytest.approx(cal.gaussian_share(), abs=0.005)
    s = cal.covariance_scale(err, var / 4.0, share=0.95)       # variances 4x too small
    # 95% of chi2(2) is at 5.99 = 4 * 1.498: the scale is 4 * 1.498 / 1 on the shrunk variances
    assert s == pytest.approx(4 * 5.991 / 4.0, rel=0.03)
    assert cal.ellipse_coverage(err, s * var / 4.0) == pytest.approx(0.95, abs=0.002)


def test_match_detections_greedy_by_score_class_aware_with_ignore():
    gt = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], float)
    gt_cls = np.array([0, 0, 1])
    ignored = np.array([False, True, False])
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [40, 0, 50, 10], [60, 0, 70, 10]], float)
    scores = np.array([0.5, 0.9, 0.8, 0.7, 0.6])
    classes = np.array([0, 0, 0, 0, 1])
    matched, kept = cal.match_detections(boxes, scores, classes, gt, gt_cls, ignored)
    # the 0.9 box takes gt 0, the exact 0.5 box comes later and finds it taken; gt 1 is ignored; the class-0 box
    # on the class-1 gt matches nothing
    assert matched.tolist() == [-1, 0, -1, -1, -1]
    assert kept.tolist() == [True, True, False, True, True]
