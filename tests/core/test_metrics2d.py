"""2D metrics against hand-computed values: box IoU, COCO AP, mIoU, PSNR/SSIM (vs scikit-image)."""
import numpy as np
import pytest

from glassbox.metrics.detection2d import (Detections2D, GroundTruth2D, average_precision_101, box_iou,
                                          evaluate_detections_2d)
from glassbox.metrics.image_quality import ImageQualityError, psnr, ssim
from glassbox.metrics.segmentation import SegmentationMeter, confusion_matrix, mean_iou


def test_box_iou_hand_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 4, 4]], np.float32)
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [20, 20, 30, 30], [1, 1, 1, 5]], np.float32)
    iou = box_iou(a, b)
    np.testing.assert_allclose(iou[0], [50 / 150, 1.0, 0.0, 0.0])
    np.testing.assert_allclose(iou[1], [0.0, 16 / 100, 0.0, 0.0])


def test_ap_101_point_hand_value():
    # 2 GT; ranked detections TP, FP, TP -> recall 0.5 @ precision 1, recall 1 @ precision 2/3.
    ap = average_precision_101(np.array([True, False, True]), np.array([0.9, 0.8, 0.7]), num_gt=2)
    assert ap == pytest.approx((51 * 1.0 + 50 * (2 / 3)) / 101)


def test_map_perfect_and_partial():
    gt = [GroundTruth2D(np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float32), np.array([0, 1])),
          GroundTruth2D(np.array([[0, 0, 20, 20]], np.float32), np.array([0]))]
    perfect = [Detections2D(g.boxes, np.ones(len(g.boxes)), g.classes) for g in gt]
    res = evaluate_detections_2d(perfect, gt, num_classes=3)
    assert res["map50"] == pytest.approx(1.0) and res["map"] == pytest.approx(1.0)
    assert np.isnan(res["ap50"][2])             # class 2 has no ground truth: excluded
    # Shift one class-0 box so that IoU = 0.6: a TP at 0.5 but not at 0.65 and above.
    shifted = [Detections2D(np.array([[10, 10, 50, 50], [60, 60, 90, 100]], np.float32), np.array([1.0, 1.0]),
                            np.array([0, 1])),
               Detections2D(np.array([[5, 0, 25, 20]], np.float32), np.array([0.5]), np.array([0]))]
    assert box_iou(shifted[1].boxes, gt[1].boxes)[0, 0] == pytest.approx(300 / 500)
    res = evaluate_detections_2d(shifted, gt, num_classes=3)
    assert res["ap50"][0] == pytest.approx(1.0)
    ap0 = res["ap"][:, 0]        # thresholds .50 .55 .60 -> 1; .65 .. .95 -> recall 1/2 at precision 1
    np.testing.assert_allclose(ap0[:3], 1.0)
    np.testing.assert_allclose(ap0[3:], 51 / 101)
    assert res["map"] == pytest.approx((ap0.mean() + 1.0) / 2)


def test_duplicate_detection_is_false_positive():
    gt = [GroundTruth2D(np.array([[0, 0, 10, 10]], np.float32), np.array([0]))]
    det = [Detections2D(np.array([[0, 0, 10, 10], [0, 0, 10, 10]], np.float32), np.array([0.9, 0.8]),
                        np.array([0, 0]))]
    res = evaluate_detections_2d(det, gt, num_classes=1)
    assert res["map50"] == pytest.approx(1.0)   # the FP comes after full recall: the envelope stays 1
    det = [Detections2D(det[0].boxes, np.array([0.8, 0.9]), np.array([0, 0]))]
    assert evaluate_detections_2d(det, gt, num_classes=1)["map50"] == pytest.approx(1.0)
    wrong_class = [Detections2D(gt[0].boxes, np.array([0.9]), np.array([1]))]
    assert evaluate_detections_2d(wrong_class, gt, num_classes=2)["map50"] == 0.0


def test_miou_perfect_and_all_background():
    label = np.zeros((4, 4), np.int64)
    label[:, 2:] = 1
    assert mean_iou(label, label, 2) == pytest.approx(1.0)
    pred = np.zeros_like(label)
    # IoU_bg = 8 / 16, IoU_fg = 0 -> mIoU = 0.25
    assert mean_iou(pred, label, 2) == pytest.approx(0.25)


def test_confusion_ignores_label_and_accumulates():
    label = np.array([[0, 1, 255], [2, 2, 1]])
    pred = np.array([[0, 2, 1], [2, 1, 1]])
    conf = confusion_matrix(pred, label, 3)
    assert conf.sum() == 5 and conf[1, 2] == 1 and conf[2, 1] == 1 and conf[2, 2] == 1
    meter = SegmentationMeter(3)
    meter.update(pred, label)
    meter.update(pred, label)
    res = meter.result()
    np.testing.assert_allclose(res["iou"], [1.0, 1 / 3, 1 / 3])
    assert res["miou"] == pytest.approx((1 + 2 / 3) / 3)


def test_psnr_ssim_match_scikit_image():
    from skimage.data import astronaut
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity
    a = astronaut()[100:228, 100:260]
    rng = np.random.default_rng(0)
    b = np.clip(a + rng.normal(0, 12, a.shape), 0, 255).astype(np.uint8)
    assert psnr(a, b, 255) == pytest.approx(peak_signal_noise_ratio(a, b, data_range=255), rel=1e-9)
    ref = structural_similarity(a, b, data_range=255, channel_axis=2, gaussian_weights=True, sigma=1.5,
                                use_sample_covariance=False)
    assert ssim(a, b, 255) == pytest.approx(ref, abs=1e-6)
    assert ssim(a, a, 255) == pytest.approx(1.0) and psnr(a, a, 255) == float("inf")
    # MSE of a constant offset d is d^2: PSNR = 10 log10(255^2 / d^2).
    c = a.astype(np.float64) + 5
    assert psnr(a, c, 255) == pytest.approx(10 * np.log10(255 ** 2 / 25))
    with pytest.raises(ImageQualityError):
        psnr(a, a[:10], 255)


def test_ignored_ground_truth_is_neither_hit_nor_miss():
    boxes = np.array([[0, 0, 40, 40], [100, 100, 104, 104]], np.float32)
    gt = [GroundTruth2D(boxes, np.array([0, 0]), ignore=np.array([False, True]))]
    only_big = [Detections2D(boxes[:1], np.array([0.9]), np.array([0]))]
    assert evaluate_detections_2d(only_big, gt, 1)["map50"] == pytest.approx(1.0)   # the tiny box is not missed
    both = [Detections2D(boxes[::-1].copy(), np.array([0.95, 0.5]), np.array([0, 0]))]
    assert evaluate_detections_2d(both, gt, 1)["map50"] == pytest.approx(1.0)       # hit on it is not an FP
    not_ignored = [GroundTruth2D(boxes, np.array([0, 0]))]
    assert evaluate_detections_2d(only_big, not_ignored, 1)["map50"] == pytest.approx(51 / 101)


def test_fit_decision_bias_recovers_the_offset_that_makes_every_label_right():
    """Two classes; the model's margin (class 1 - class 0) is -0.75 on class-0 pixels and -0.3, 0.2 or 0.8 on
    class-1 pixels: the plain argmax loses the -0.3 pixels, any offset of class 1 over class 0 inside (0.3, 0.75)
    labels every pixel right, and no other does."""
    from glassbox.metrics.segmentation import fit_decision_bias, mean_iou
    margin = np.array([-0.75, -0.3, 0.2, 0.8] * 50, np.float32).reshape(1, 10, 20)
    labels = (margin > -0.5).astype(np.int64)
    logits = np.stack([np.zeros_like(margin), margin], axis=1)              # (1, 2, 10, 20)
    assert mean_iou(logits.argmax(1), labels, 2) < 0.75
    bias, miou = fit_decision_bias(logits, labels)
    assert miou == pytest.approx(1.0)
    assert 0.3 < bias[1] - bias[0] < 0.75
    assert mean_iou((logits + bias[None, :, None, None]).argmax(1), labels, 2) == pytest.approx(1.0)
    ignored = labels.copy()
    ignored[:, :5] = 255                                                     # ignored pixels are not scored
    assert fit_decision_bias(logits, ignored)[1] == pytest.approx(1.0)
