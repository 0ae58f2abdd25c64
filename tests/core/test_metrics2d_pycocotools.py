"""The 2D detection metric against the reference implementation, pycocotools' COCOeval, on the same random
detections: AP per class and IoU threshold to 1e-6, with crowd regions, area ranges, the per-image detection
limit, and images with no ground truth, no detections or neither."""
import contextlib
import io

import numpy as np
import pytest

from glassbox.metrics.detection2d import COCO_IOU_THRESHOLDS, Detections2D, GroundTruth2D, evaluate_detections_2d

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

K = 3
AREA_RANGES = {"all": (0.0, 1e10), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e10)}


def random_boxes(rng, n: int) -> np.ndarray:
    xy = rng.uniform(0, 400, (n, 2))
    wh = np.exp(rng.uniform(np.log(4), np.log(200), (n, 2)))
    return np.concatenate([xy, xy + wh], 1)


def random_set(seed: int, images: int = 30):
    """Ground truth with crowd regions, and detections: jittered copies (hits at various IoU), duplicates and
    clutter, scores partly informative. Every fifth image has no ground truth, every seventh no detection."""
    rng = np.random.default_rng(seed)
    gts, dets = [], []
    for i in range(images):
        m = 0 if i % 5 == 0 else int(rng.integers(1, 12))
        gboxes, gcls = random_boxes(rng, m), rng.integers(0, K, m)
        crowd = rng.random(m) < 0.1
        gts.append(GroundTruth2D(gboxes, gcls, crowd=crowd))
        if i % 7 == 0:
            dets.append(Detections2D(np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64)))
            continue
        keep = rng.random(m) < 0.8
        hits = gboxes[keep] + rng.normal(0, 1, (int(keep.sum()), 4)) * (gboxes[keep, 2:] - gboxes[keep, :2]).repeat(
            2, 1) * rng.uniform(0.02, 0.3)
        hits[:, 2:] = np.maximum(hits[:, 2:], hits[:, :2] + 1.0)
        hcls = np.where(rng.random(len(hits)) < 0.9, gcls[keep], rng.integers(0, K, len(hits)))
        dup = hits[rng.random(len(hits)) < 0.3] + rng.normal(0, 2, (1, 4))
        dup[:, 2:] = np.maximum(dup[:, 2:], dup[:, :2] + 1.0)
        clutter = random_boxes(rng, int(rng.integers(0, 8)))
        boxes = np.concatenate([hits, dup, clutter])
        cls = np.concatenate([hcls, rng.integers(0, K, len(dup)), rng.integers(0, K, len(clutter))])
        scores = np.concatenate([rng.uniform(0.3, 1, len(hits)), rng.uniform(0, 0.8, len(dup)),
                                 rng.uniform(0, 0.7, len(clutter))])
        dets.append(Detections2D(boxes, scores, cls))
    return dets, gts


def coco_eval(dets, gts, area: tuple[float, float], max_dets: int) -> np.ndarray:
    """pycocotools' per-class AP (T, K) for one area range and detection limit (NaN where a class has no
    ground truth)."""
    def xywh(b):
        return [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])]
    anns = [{"id": len(gts) * 100 + i * 100 + j + 1, "image_id": i, "category_id": int(c) + 1, "bbox": xywh(b),
             "area": float((b[2] - b[0]) * (b[3] - b[1])), "iscrowd": int(cr)}
            for i, g in enumerate(gts) for j, (b, c, cr) in enumerate(zip(g.boxes, g.classes, g.crowds()))]
    coco_gt = COCO()
    coco_gt.dataset = {"images": [{"id": i} for i in range(len(gts))], "annotations": anns,
                       "categories": [{"id": k + 1} for k in range(K)]}
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes([{"image_id": i, "category_id": int(c) + 1, "bbox": xywh(b), "score": float(s)}
                                   for i, d in enumerate(dets) for b, c, s in zip(d.boxes, d.classes, d.scores)])
        ev = COCOeval(coco_gt, coco_dt, "bbox")
        ev.params.areaRng, ev.params.areaRngLbl = [list(area)], ["x"]
        ev.params.maxDets = [max_dets]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, :, 0, 0]                   # (T, R, K)
    return np.where((precision > -1).all(axis=1), precision.mean(axis=1), np.nan)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("area", list(AREA_RANGES))
def test_ap_matches_pycocotools(seed, area):
    dets, gts = random_set(seed)
    max_dets = 100 if seed != 2 else 5                                 # seed 2: the per-image limit bites
    want = coco_eval(dets, gts, AREA_RANGES[area], max_dets)
    got = evaluate_detections_2d(dets, gts, K, COCO_IOU_THRESHOLDS, area_range=AREA_RANGES[area],
                                 max_dets=max_dets)["ap"]
    assert np.isfinite(want).any()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
    np.testing.assert_allclose(got, want, atol=1e-6, equal_nan=True)


def test_crowd_region_absorbs_many_detections_and_uses_detection_area():
    crowd = GroundTruth2D(np.array([[0, 0, 100, 100], [200, 200, 240, 240]], float), np.array([0, 0]),
                          crowd=np.array([True, False]))
    inside = np.array([[10, 10, 30, 30], [50, 50, 70, 90], [200, 200, 240, 240]], float)
    dets = [Detections2D(inside, np.array([0.9, 0.8, 0.7]), np.zeros(3, np.int64))]
    # both detections inside the crowd region are absorbed (IoU over their own area = 1): AP 1, not 1/3
    assert evaluate_detections_2d(dets, [crowd], 1)["map50"] == pytest.approx(1.0)
