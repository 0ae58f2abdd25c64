"""Ground-truth sampling on real synthetic scans: pasted objects keep their exact points and place, never
overlap a box already in the scan or each other, the scan's own points inside them are removed and nothing else
changes; the same generator gives the same scan."""
import numpy as np
import pytest

from glassbox.lidar import bev_iou, points_in_boxes
from glassbox.lidar.gt_sampling import GtSamplingConfig, ObjectBank
from glassbox.sim import SceneConfig, lidar_preset, make_scene, scan_lidar

CFG = GtSamplingConfig(per_scan=(2, 4, 4), min_points=(30, 10, 10))


def _scan(seed):
    scene = make_scene(seed, SceneConfig(length_m=120.0))
    s = scan_lidar(scene, lidar_preset("hdl64"), scene.ego_pose(0.0), seed)
    b = s.boxes
    return (s.points, s.ring.astype(np.int64), np.concatenate([b.centers, b.sizes, b.yaw[:, None]], 1).astype(
        np.float64), b.classes.astype(np.int64))


@pytest.fixture(scope="module")
def bank_and_scan():
    bank = ObjectBank(CFG)
    for seed in (41, 42, 43):
        bank.add_scan(*_scan(seed))
    return bank, _scan(44)


def test_bank_holds_objects_with_enough_points_above_the_ground(bank_and_scan):
    bank, _ = bank_and_scan
    counts = bank.counts()
    assert counts[0] > 0 and counts[1] > 0, counts
    for k, objs in enumerate(bank.by_class):
        for box, pts in zip(objs.boxes, objs.points):
            assert len(pts) >= CFG.min_points[k]
            assert points_in_boxes(pts[:, :3].astype(np.float64), box[None, :3], box[None, 3:6], box[None, 6],
                                   CFG.margin_m + 1e-6).all()
            assert (pts[:, 2] >= box[2] - box[5] / 2 + CFG.ground_clearance_m - 1e-6).all()


def test_paste_keeps_points_and_place_without_overlaps(bank_and_scan):
    bank, (points, ring, boxes, classes) = bank_and_scan
    out_p, out_r, out_b, out_c, n = bank.paste(points, ring, boxes, classes, np.random.default_rng(0))
    assert 0 < n <= sum(CFG.per_scan) and len(out_b) == len(boxes) + n and len(out_c) == len(out_b)
    np.testing.assert_array_equal(out_b[:len(boxes)], boxes)
    new = out_b[len(boxes):]
    iou = bev_iou(new, out_b)
    iou[np.arange(n), len(boxes) + np.arange(n)] = 0.0                # a box with itself
    assert iou.max() == 0.0
    for k in range(len(CFG.per_scan)):
        assert (out_c[len(boxes):] == k).sum() <= CFG.per_scan[k]
    # every pasted box holds exactly one bank object's points (same rows), and the scan's rows outside the new
    # boxes are untouched
    inside = points_in_boxes(points[:, :3].astype(np.float64), new[:, :3], new[:, 3:6], new[:, 6], CFG.margin_m)
    above = points[:, 2:3] >= new[:, 2] - new[:, 5] / 2 + CFG.ground_clearance_m
    kept = ~(inside & above).any(1)
    np.testing.assert_array_equal(out_p[:kept.sum()], points[kept])
    np.testing.assert_array_equal(out_r[:kept.sum()], ring[kept])
    added = out_p[kept.sum():]
    bank_rows = {tuple(r) for objs in bank.by_class for pts in objs.points for r in pts.tolist()}
    assert all(tuple(r) in bank_rows for r in added.tolist())
    assert len(out_r) == len(out_p)


def test_paste_is_deterministic_for_a_generator(bank_and_scan):
    bank, scan = bank_and_scan
    a = bank.paste(*scan, np.random.default_rng(5))
    b = bank.paste(*scan, np.random.default_rng(5))
    c = bank.paste(*scan, np.random.default_rng(6))
    assert all(np.array_equal(x, y) for x, y in zip(a[:4], b[:4]))
    assert a[2].shape != c[2].shape or not np.array_equal(a[2], c[2])     # another draw, other objects


def test_nothing_pasted_when_the_bank_is_empty():
    points, ring, boxes, classes = _scan(45)
    out = ObjectBank(CFG).paste(points, ring, boxes, classes, np.random.default_rng(0))
    assert out[4] == 0 and out[0] is points
    np.testing.assert_array_equal(out[2], boxes)
