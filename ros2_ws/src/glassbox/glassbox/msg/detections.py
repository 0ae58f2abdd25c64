"""Detections: vision_msgs Detection3DArray / Detection2DArray <-> numpy, and box markers for RViz.

Yaw to quaternion uses the real formula (z = sin(yaw/2), w = cos(yaw/2)); every detection carries the input's header.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from glassbox.msg.base import MessageFactory


def yaw_to_quaternion(yaw: np.ndarray) -> np.ndarray:
    """(N,) yaw about +z -> (N, 4) quaternions x, y, z, w."""
    yaw = np.asarray(yaw, dtype=np.float64)
    q = np.zeros(yaw.shape + (4,))
    q[..., 2] = np.sin(yaw / 2.0)
    q[..., 3] = np.cos(yaw / 2.0)
    return q


def quaternion_to_yaw(x: float, y: float, z: float, w: float) -> float:
    """Yaw (rotation about +z) of a quaternion."""
    return math.atan2(2.0 * (w * z + x * y), 1.0 - 2.0 * (y * y + z * z))


def _pose(factory: MessageFactory, xyz: Sequence[float], quat: Sequence[float]) -> Any:
    return factory.make(
        "geometry_msgs/msg/Pose",
        position=factory.make("geometry_msgs/msg/Point", x=float(xyz[0]), y=float(xyz[1]), z=float(xyz[2])),
        orientation=factory.make("geometry_msgs/msg/Quaternion", x=float(quat[0]), y=float(quat[1]),
                                 z=float(quat[2]), w=float(quat[3])))


def _hypotheses(factory: MessageFactory, class_names: Sequence[str], scores: np.ndarray, pose: Any) -> list:
    """One ObjectHypothesisWithPose per (class, score) pair."""
    return [factory.make("vision_msgs/msg/ObjectHypothesisWithPose",
                         hypothesis=factory.make("vision_msgs/msg/ObjectHypothesis", class_id=str(c), score=float(s)),
                         pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose,
                                           covariance=np.zeros(36, dtype=np.float64)))
            for c, s in zip(class_names, scores)]


@dataclass
class Detections3D:
    """3D boxes in one frame: centres (N,3) m, sizes (N,3) length/width/height m, yaw (N,) rad, labels, scores."""

    centers: np.ndarray
    sizes: np.ndarray
    yaw: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.scores))


def make_detection3d_array(factory: MessageFactory, dets: Detections3D, header: Any) -> Any:
    """vision_msgs/Detection3DArray: one Detection3D per box, header copied onto each detection."""
    quats = yaw_to_quaternion(dets.yaw)
    ids = dets.ids if dets.ids is not None else [str(i) for i in range(len(dets))]
    out = []
    for i in range(len(dets)):
        pose = _pose(factory, dets.centers[i], quats[i])
        bbox = factory.make("vision_msgs/msg/BoundingBox3D", center=pose,
                            size=factory.make("geometry_msgs/msg/Vector3", x=float(dets.sizes[i, 0]),
                                              y=float(dets.sizes[i, 1]), z=float(dets.sizes[i, 2])))
        out.append(factory.make("vision_msgs/msg/Detection3D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection3DArray", header=header, detections=out)


def detection3d_array_to_numpy(msg: Any) -> Detections3D:
    """Inverse of :func:`make_detection3d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    centers, sizes, yaw, scores = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n), np.zeros(n)
    names, ids = [], []
    for i, d in enumerate(msg.detections):
        c, o, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        centers[i] = (c.x, c.y, c.z)
        sizes[i] = (s.x, s.y, s.z)
        yaw[i] = quaternion_to_yaw(o.x, o.y, o.z, o.w)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        ids.append(d.id)
    return Detections3D(centers, sizes, yaw, names, scores, ids)


@dataclass
class Detections2D:
    """2D boxes in one image: (N, 4) pixel x1, y1, x2, y2, class names and scores."""

    boxes_xyxy: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None

    def __len__(self) -> int:
        return int(len(self.scores))


def make_detection2d_array(factory: MessageFactory, dets: Detections2D, header: Any) -> Any:
    """vision_msgs/Detection2DArray (4.x schema: centre as Pose2D with Point2D position)."""
    b = np.asarray(dets.boxes_xyxy, dtype=np.float64).reshape(-1, 4)
    ids = dets.ids if dets.ids is not None else [str(i) for i in range(len(dets))]
    identity = (0.0, 0.0, 0.0, 1.0)
    out = []
    for i in range(len(dets)):
        cx, cy = (b[i, 0] + b[i, 2]) / 2.0, (b[i, 1] + b[i, 3]) / 2.0
        center = factory.make("vision_msgs/msg/Pose2D",
                              position=factory.make("vision_msgs/msg/Point2D", x=float(cx), y=float(cy)), theta=0.0)
        bbox = factory.make("vision_msgs/msg/BoundingBox2D", center=center, size_x=float(b[i, 2] - b[i, 0]),
                            size_y=float(b[i, 3] - b[i, 1]))
        pose = _pose(factory, (cx, cy, 0.0), identity)
        out.append(factory.make("vision_msgs/msg/Detection2D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection2DArray", header=header, detections=out)


def detection2d_array_to_numpy(msg: Any) -> Detections2D:
    """Inverse of :func:`make_detection2d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    boxes, scores, names, ids = np.zeros((n, 4)), np.zeros(n), [], []
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2, cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        ids.append(d.id)
    return Detections2D(boxes, names, scores, ids)


def make_box_markers(factory: MessageFactory, dets: Detections3D, header: Any, namespace: str = "detections",
                     lifetime_s: float = 0.2, colors_rgba: Mapping[str, Sequence[float]] | None = None) -> Any:
    """visualization_msgs/MarkerArray: a DELETEALL, then one CUBE per 3D box (coloured by class)."""
    colors_rgba = colors_rgba or {}
    quats = yaw_to_quaternion(dets.yaw)
    sec, frac = divmod(lifetime_s, 1.0)
    lifetime = factory.make("builtin_interfaces/msg/Duration", sec=int(sec), nanosec=int(frac * 1e9))
    markers = [factory.make("visualization_msgs/msg/Marker", header=header, ns=namespace, id=0, action=3)]  # DELETEALL
    for i in range(len(dets)):
        r, g, b, a = colors_rgba.get(dets.class_names[i], (1.0, 0.8, 0.0, 0.5))
        markers.append(factory.make(
            "visualization_msgs/msg/Marker", header=header, ns=namespace, id=i + 1, type=1, action=0,  # CUBE, ADD
            pose=_pose(factory, dets.centers[i], quats[i]),
            scale=factory.make("geometry_msgs/msg/Vector3", x=float(dets.sizes[i, 0]), y=float(dets.sizes[i, 1]),
                               z=float(dets.sizes[i, 2])),
            color=factory.make("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(a)),
            lifetime=lifetime, text=f"{dets.class_names[i]} {float(dets.scores[i]):.2f}"))
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)
