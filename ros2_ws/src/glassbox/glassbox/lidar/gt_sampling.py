"""Ground-truth sampling (SECOND's "GT-AUG"): objects cut out of training scans with their points, pasted into
other training scans, so that rare classes (pedestrians, cyclists) are seen several times per scan.

An :class:`ObjectBank` holds, per class, every training object with at least ``min_points`` LiDAR points: its
box and the points inside it (box enlarged by ``margin_m``, ground returns below ``ground_clearance_m`` above the
box bottom left out), with their ring (beam) numbers. :meth:`ObjectBank.paste` adds objects to a scan:

* each pasted object keeps its original position in the LiDAR frame. Every street of the synthetic world has
  the same layout seen from the ego lane (lanes, parking rows and sidewalks at the same lateral offsets), so an
  object's original place is a plausible place in any scan, and its points keep the range, incidence and beam
  pattern they were measured with: nothing is re-sampled;
* an object whose bird's-eye box overlaps a box already in the scan (or an earlier pasted one) is skipped;
* the scan's own points inside a pasted box are removed. Points the pasted object hides (behind it along the
  same rays) are left: the range image keeps the nearest return per pixel, which hides them as the sensor would.

Deterministic for a given generator; the trainer draws it per (seed, epoch, item).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from glassbox.lidar.iou import bev_iou
from glassbox.lidar.targets import points_in_boxes


@dataclass(frozen=True)
class GtSamplingConfig:
    """How many objects of each class are pasted into a scan (at most; collisions skip some), and which
    objects enter the bank."""

    per_scan: tuple[int, ...] = (0, 4, 4)             # by detection class (car, pedestrian, cyclist)
    min_points: tuple[int, ...] = (30, 15, 15)
    margin_m: float = 0.1
    ground_clearance_m: float = 0.1
    tries_per_object: int = 3

    def __post_init__(self) -> None:
        if len(self.per_scan) != len(self.min_points) or min(self.per_scan, default=0) < 0:
            raise ValueError(f"per_scan {self.per_scan} and min_points {self.min_points} need one non-negative "
                             "entry per class")


@dataclass
class _Objects:
    boxes: np.ndarray                 # (M, 7)
    points: list[np.ndarray]          # M x (n, 4) xyzi
    rings: list[np.ndarray]           # M x (n,)


class ObjectBank:
    """Objects of each class cut out of scans (see the module docstring)."""

    def __init__(self, cfg: GtSamplingConfig = GtSamplingConfig()) -> None:
        self.cfg = cfg
        self.by_class = [_Objects(np.zeros((0, 7)), [], []) for _ in cfg.per_scan]

    def __len__(self) -> int:
        return sum(len(o.points) for o in self.by_class)

    def counts(self) -> list[int]:
        return [len(o.points) for o in self.by_class]

    def add_scan(self, points: np.ndarray, ring: np.ndarray, boxes: np.ndarray, classes: np.ndarray) -> None:
        """Cut every object of ``boxes`` (M, 7) / ``classes`` (M,) with enough points out of one scan."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        wanted = [m for m, k in enumerate(classes) if 0 <= k < len(self.by_class) and self.cfg.per_scan[k] > 0]
        if not wanted:
            return
        b = boxes[wanted]
        inside = points_in_boxes(points[:, :3].astype(np.float64), b[:, :3], b[:, 3:6], b[:, 6], self.cfg.margin_m)
        bottom = b[:, 2] - b[:, 5] / 2 + self.cfg.ground_clearance_m
        inside &= points[:, 2:3] >= bottom[None, :]
        for j, m in enumerate(wanted):
            k = classes[m]
            sel = inside[:, j]
            if sel.sum() < self.cfg.min_points[k]:
                continue
            objs = self.by_class[k]
            objs.boxes = np.concatenate([objs.boxes, boxes[m:m + 1]])
            objs.points.append(points[sel].astype(np.float32))
            objs.rings.append(np.asarray(ring)[sel])

    def paste(self, points: np.ndarray, ring: np.ndarray, boxes: np.ndarray, classes: np.ndarray,
              rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        """(points, ring, boxes, classes, pasted count) of the scan with objects added."""
        boxes = np.asarray(boxes, np.float64).reshape(-1, 7)
        classes = np.asarray(classes).reshape(-1).astype(np.int64)
        occupied = boxes.copy()
        new_boxes, new_classes, new_points, new_rings = [], [], [], []
        for k, wanted in enumerate(self.cfg.per_scan):
            objs = self.by_class[k]
            if wanted == 0 or not objs.points:
                continue
            picks = rng.choice(len(objs.points), size=min(len(objs.points), wanted * self.cfg.tries_per_object),
                               replace=False)
            placed = 0
            for i in picks:
                if placed == wanted:
                    break
                box = objs.boxes[i:i + 1]
                if len(occupied) and bev_iou(box, occupied).max() > 0.0:
                    continue
                occupied = np.concatenate([occupied, box])
                new_boxes.append(box[0])
                new_classes.append(k)
                new_points.append(objs.points[i])
                new_rings.append(objs.rings[i])
                placed += 1
        if not new_boxes:
            return points, ring, boxes, classes, 0
        nb = np.stack(new_boxes)
        inside = points_in_boxes(points[:, :3].astype(np.float64), nb[:, :3], nb[:, 3:6], nb[:, 6],
                                 self.cfg.margin_m)
        bottom = nb[:, 2] - nb[:, 5] / 2 + self.cfg.ground_clearance_m
        keep = ~(inside & (points[:, 2:3] >= bottom[None, :])).any(axis=1)
        out_points = np.concatenate([points[keep], *new_points]).astype(points.dtype, copy=False)
        out_ring = np.concatenate([np.asarray(ring)[keep], *new_rings])
        return (out_points, out_ring, np.concatenate([boxes, nb]).astype(np.float64),
                np.concatenate([classes, np.asarray(new_classes, np.int64)]), len(new_boxes))
