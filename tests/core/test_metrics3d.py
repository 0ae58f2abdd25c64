"""Rotated IoU against hand-computed cases, and KITTI AP|R40 against hand counting."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from glassbox.lidar import bev_iou, iou_3d
from glassbox.lidar.iou import polygon_intersection_area
from glassbox.metrics import average_precision_r40, evaluate_detections


def box(x=0.0, y=0.0, z=0.0, l=4.0, w=2.0, h=1.5, yaw=0.0):
    return np.array([[x, y, z, l, w, h, yaw]])


@pytest.mark.parametrize("yaw", [0.0, 0.3, math.pi / 2, -2.5])
def test_identical_boxes_have_iou_one(yaw):
    b = box(3.0, -1.0, 0.5, yaw=yaw)
    assert bev_iou(b, b)[0, 0] == pytest.approx(1.0, abs=1e-12)
    assert iou_3d(b, b)[0, 0] == pytest.approx(1.0, abs=1e-12)


def test_disjoint_boxes_have_iou_zero():
    assert bev_iou(box(), box(x=4.01))[0, 0] == 0.0
    assert bev_iou(box(yaw=0.7), box(x=10.0, yaw=-0.2))[0, 0] == 0.0
    # overlapping footprints but separated in height: BEV > 0, 3D = 0
    assert bev_iou(box(), box(z=2.0))[0, 0] == pytest.approx(1.0)
    assert iou_3d(box(), box(z=2.0))[0, 0] == 0.0


def test_square_against_its_45_degree_rotation():
    # unit-half-side squares: the intersection is a regular octagon of area 8 (sqrt 2 - 1)
    inter = 8 * (math.sqrt(2) - 1)
    expected = inter / (8 - inter)
    assert bev_iou(box(l=2, w=2), box(l=2, w=2, yaw=math.pi / 4))[0, 0] == pytest.approx(expected, rel=1e-12)


def test_shifted_and_rotated_by_90_degrees():
    # 4x2 box vs the same box turned 90 degrees: overlap is a 2x2 square -> 4 / (8 + 8 - 4)
    assert bev_iou(box(), box(yaw=math.pi / 2))[0, 0] == pytest.approx(4 / 12, rel=1e-12)
    # shift by half a length along x: overlap 2x2 -> 4 / 12
    assert bev_iou(box(), box(x=2.0))[0, 0] == pytest.approx(4 / 12, rel=1e-12)
    # 3D: same BEV overlap, half the height overlapping -> (4 * 0.75) / (12 + 12 - 3)
    assert iou_3d(box(), box(x=2.0, z=0.75))[0, 0] == pytest.approx(3 / 21, rel=1e-12)


def test_containment():
    small, big = box(0.3, 0.2, 0, 1.0, 1.0, 1.0, 0.4), box(0, 0, 0, 6.0, 5.0, 3.0, 1.1)
    assert bev_iou(small, big)[0, 0] == pytest.approx(1.0 / 30.0, rel=1e-12)
    assert iou_3d(big, small)[0, 0] == pytest.approx(1.0 / 90.0, rel=1e-12)


def test_iou_matches_a_fine_raster_on_random_pairs():
    rng = np.random.default_rng(0)
    a = np.column_stack([rng.uniform(-1, 1, (20, 2)), np.zeros(20), rng.uniform(1, 4, (20, 2)), np.ones(20),
                         rng.uniform(-3, 3, 20)])
    b = np.column_stack([rng.uniform(-1, 1, (20, 2)), np.zeros(20), rng.uniform(1, 4, (20, 2)), np.ones(20),
                         rng.uniform(-3, 3, 20)])
    exact = np.diag(bev_iou(a, b))
    g = np.linspace(-4, 4, 801)
    gx, gy = np.meshgrid(g, g)

    def inside(bx):
        c, s = math.cos(bx[6]), math.sin(bx[6])
        lx = c * (gx - bx[0]) + s * (gy - bx[1])
        ly = -s * (gx - bx[0]) + c * (gy - bx[1])
        return (np.abs(lx) <= bx[3] / 2) & (np.abs(ly) <= bx[4] / 2)

    raster = np.array([(inside(p) & inside(q)).sum() / (inside(p) | inside(q)).sum() for p, q in zip(a, b)])
    np.testing.assert_allclose(exact, raster, atol=0.01)
    assert (exact > 0).sum() >= 10


def test_polygon_area_is_symmetric():
    from glassbox.lidar import bev_corners
    rng = np.random.default_rng(1)
    boxes = np.column_stack([rng.normal(0, 1, (50, 2)), rng.uniform(0.5, 4, (50, 2)), rng.uniform(-3, 3, 50)])
    pa, pb = bev_corners(boxes[:25]), bev_corners(boxes[25:])
    np.testing.assert_allclose(polygon_intersection_area(pa, pb), polygon_intersection_area(pb, pa), atol=1e-12)


def _frame(boxes, classes, scores=None):
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 7)
    out = SimpleNamespace(centers=boxes[:, :3], sizes=boxes[:, 3:6], yaw=boxes[:, 6], classes=np.asarray(classes))
    if scores is not None:
        out.scores = np.asarray(scores, dtype=np.float64)
    return out


def test_ground_truth_against_itself_is_ap_one():
    rng = np.random.default_rng(2)
    gts, dets = [], []
    for _ in range(5):
        m = 6
        b = np.column_stack([rng.uniform(-30, 30, (m, 2)), rng.uniform(-1, 1, m), rng.uniform(0.6, 4.5, (m, 3)),
                             rng.uniform(-3, 3, m)])
        b[:, 0] += np.arange(m) * 70.0                               # keep them apart
        c = rng.integers(0, 3, m)
        gts.append(_frame(b, c))
        dets.append(_frame(b, c, rng.uniform(0.1, 1.0, m)))
    res = evaluate_detections(dets, gts)
    aps = [v for k, v in res.items() if "@" in k and not math.isnan(v)]
    assert len(aps) == 12 and all(v == 1.0 for v in aps)


def test_missed_box_and_false_positive_by_hand():
    gt = _frame(np.vstack([box(0), box(10), box(20), box(30)]), [0, 0, 0, 0])
    # three hits at scores .9, .8, .5; one FP at .7 (far away); the box at x=30 is missed
    det = _frame(np.vstack([box(0), box(10), box(100), box(20)]), [0, 0, 0, 0], [0.9, 0.8, 0.7, 0.5])
    res = evaluate_detections([det], [gt], metrics=("bev",))
    # ranks: TP (P=1, R=.25), TP (1, .5), FP (2/3, .5), TP (3/4, .75); recall 1.0 never reached.
    # R40: levels 1..10 -> 1.0, 11..20 -> 1.0, 21..30 -> 0.75, 31..40 -> 0
    expected = (20 * 1.0 + 10 * 0.75) / 40
    assert res["car/bev@0.7"] == pytest.approx(expected, abs=1e-12)
    assert res["car/bev@0.5"] == pytest.approx(expected, abs=1e-12)
    assert res["car/num_gt"] == 4.0
    assert math.isnan(res["pedestrian/bev@0.5"])


def test_iou_threshold_decides_a_true_positive():
    gt = _frame(box(0), [0])
    det = _frame(box(x=1.2), [0], [0.9])                            # BEV IoU = 2.8*2 / (16 - 5.6) = 0.538
    res = evaluate_detections([det], [gt], metrics=("bev",))
    assert res["car/bev@0.5"] == 1.0 and res["car/bev@0.7"] == 0.0


def test_ignored_ground_truth_and_wrong_class():
    gt = _frame(np.vstack([box(0), box(10)]), [0, 0])
    det = _frame(np.vstack([box(0), box(10), box(50)]), [0, 0, 1], [0.9, 0.95, 0.8])
    res = evaluate_detections([det], [gt], gt_ignore=[np.array([False, True])], metrics=("3d",))
    # the detection on the ignored box is left out; the pedestrian detection has no pedestrian GT
    assert res["car/3d@0.7"] == 1.0 and res["car/num_gt"] == 1.0


def test_r40_helper_edge_cases():
    assert average_precision_r40(np.array([]), np.array([], bool), 3) == 0.0
    assert math.isnan(average_precision_r40(np.array([0.5]), np.array([False]), 0))
    # one positive found at rank 2 after one FP: precision 1/2 for all 40 levels
    assert average_precision_r40(np.array([0.9, 0.8]), np.array([False, True]), 1) == pytest.approx(0.5)


def test_distance_bins_by_hand():
    # cars at 10 m and 30 m; the near one found, the far one missed; a false positive at 50 m; a hit at 19.5 m on
    # a car at 20.5 m (across the 20 m boundary): in the near bin it matches an ignored box (not counted), in the
    # middle bin it is the match of a regular box
    gt = _frame(np.vstack([box(10), box(30), box(20.5)]), [0, 0, 0])
    det = _frame(np.vstack([box(10), box(50), box(19.5, l=5.0)]), [0, 0, 0], [0.9, 0.8, 0.7])
    near = evaluate_detections([det], [gt], metrics=("bev",), range_m=(0.0, 20.0))
    mid = evaluate_detections([det], [gt], metrics=("bev",), range_m=(20.0, 40.0))
    far = evaluate_detections([det], [gt], metrics=("bev",), range_m=(40.0, math.inf))
    assert near["car/num_gt"] == 1.0 and near["car/bev@0.5"] == 1.0          # the 50 m FP is outside: dropped
    assert mid["car/num_gt"] == 2.0
    assert mid["car/bev@0.5"] == pytest.approx(20 / 40)                      # one of two found, precision 1
    assert far["car/num_gt"] == 0.0 and math.isnan(far["car/bev@0.5"])
    whole = evaluate_detections([det], [gt], metrics=("bev",))
    assert whole["car/num_gt"] == 3.0 and whole["car/bev@0.5"] < near["car/bev@0.5"]
