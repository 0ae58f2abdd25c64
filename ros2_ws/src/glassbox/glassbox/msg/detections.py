"""Detections: vision_msgs Detection3DArray / Detection2DArray <-> numpy, LabelInfo, and box markers for RViz.

Yaw to quaternion uses the real formula (z = sin(yaw/2), w = cos(yaw/2)); every detection carries the input's header.
``ObjectHypothesis.class_id`` is the class *name* ("car"); the detector's ``vision_msgs/LabelInfo`` maps the
class indices of its model to those names. The pose covariance of a hypothesis (row-major 6x6 over x, y, z and
rotations about x, y, z, in the header's frame) comes from the detection's spreads
(:func:`pose_covariance_from_spreads`; for 2D detections the centre's variances in px^2,
:func:`centre_covariance_2d`), zeros where the detector estimates none.
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


def _hypotheses(factory: MessageFactory, class_names: Sequence[str], scores: np.ndarray, pose: Any,
                covariance: np.ndarray | None = None) -> list:
    """One ObjectHypothesisWithPose per (class, score) pair, all with the same pose and covariance (36,)."""
    cov = np.zeros(36) if covariance is None else np.asarray(covariance, np.float64).reshape(36)
    return [factory.make("vision_msgs/msg/ObjectHypothesisWithPose",
                         hypothesis=factory.make("vision_msgs/msg/ObjectHypothesis", class_id=str(c), score=float(s)),
                         pose=factory.make("geometry_msgs/msg/PoseWithCovariance", pose=pose,
                                           covariance=np.ascontiguousarray(cov)))
            for c, s in zip(class_names, scores)]


def pose_covariance_from_spreads(center_std_m: np.ndarray, yaw_std_rad: np.ndarray) -> np.ndarray:
    """(N, 36) row-major 6x6 pose covariances from per-detection spreads.

    ``center_std_m`` is the RMS distance (m) of the box centres decoded around a detection to their mean, i.e. the
    square root of the trace of their covariance: the position block is isotropic with center_std^2 / 3 m^2 per
    axis, so that its trace is center_std^2. The yaw variance (rotation about z) is yaw_std^2 rad^2; roll and
    pitch are fixed at zero by the box model (variance 0). NaN spreads (not computed) give zeros.
    """
    c = np.nan_to_num(np.asarray(center_std_m, np.float64), nan=0.0)
    y = np.nan_to_num(np.asarray(yaw_std_rad, np.float64), nan=0.0)
    cov = np.zeros((len(c), 6, 6))
    for axis in range(3):
        cov[:, axis, axis] = c ** 2 / 3.0
    cov[:, 5, 5] = y ** 2
    return cov.reshape(-1, 36)


def pose_covariance_3d(position_cov: np.ndarray, yaw_var: np.ndarray) -> np.ndarray:
    """(N, 36) row-major 6x6 pose covariances from (N, 3, 3) position covariances (m^2, in the detections' frame)
    and (N,) yaw variances (rad^2, rotation about z); roll and pitch are fixed by the box model (variance 0).
    NaNs (not computed) give zeros."""
    pos = np.nan_to_num(np.asarray(position_cov, np.float64).reshape(-1, 3, 3), nan=0.0)
    cov = np.zeros((len(pos), 6, 6))
    cov[:, :3, :3] = pos
    cov[:, 5, 5] = np.nan_to_num(np.asarray(yaw_var, np.float64).reshape(-1), nan=0.0)
    return cov.reshape(-1, 36)


@dataclass
class Detections3D:
    """3D boxes in one frame: centres (N,3) m, sizes (N,3) length/width/height m, yaw (N,) rad, labels, scores."""

    centers: np.ndarray
    sizes: np.ndarray
    yaw: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None
    covariance: np.ndarray | None = None     # (N, 36) pose covariances (see pose_covariance_from_spreads)

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
        cov = None if dets.covariance is None else dets.covariance[i]
        out.append(factory.make("vision_msgs/msg/Detection3D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose, cov),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection3DArray", header=header, detections=out)


def detection3d_array_to_numpy(msg: Any) -> Detections3D:
    """Inverse of :func:`make_detection3d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    centers, sizes, yaw, scores = np.zeros((n, 3)), np.zeros((n, 3)), np.zeros(n), np.zeros(n)
    cov = np.zeros((n, 36))
    names, ids = [], []
    for i, d in enumerate(msg.detections):
        c, o, s = d.bbox.center.position, d.bbox.center.orientation, d.bbox.size
        centers[i] = (c.x, c.y, c.z)
        sizes[i] = (s.x, s.y, s.z)
        yaw[i] = quaternion_to_yaw(o.x, o.y, o.z, o.w)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        if best:
            cov[i] = np.asarray(best.pose.covariance, np.float64)
        ids.append(d.id)
    return Detections3D(centers, sizes, yaw, names, scores, ids, cov)


@dataclass
class Detections2D:
    """2D boxes in one image: (N, 4) pixel x1, y1, x2, y2, class names and scores."""

    boxes_xyxy: np.ndarray
    class_names: list[str]
    scores: np.ndarray
    ids: list[str] | None = None
    covariance: np.ndarray | None = None     # (N, 36) pose covariances: x, y of the centre in px^2 (cov[0], cov[7])

    def __len__(self) -> int:
        return int(len(self.scores))


def centre_covariance_2d(var_xy: np.ndarray) -> np.ndarray:
    """(N, 36) row-major 6x6 pose covariances of 2D detections from (N, 2) variances of the box centre, px^2:
    x at [0], y at [7], everything else 0 (the centre lies in the image plane; z and rotations are not
    estimated)."""
    v = np.nan_to_num(np.asarray(var_xy, np.float64).reshape(-1, 2), nan=0.0)
    cov = np.zeros((len(v), 36))
    cov[:, 0], cov[:, 7] = v[:, 0], v[:, 1]
    return cov


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
        cov = None if dets.covariance is None else dets.covariance[i]
        out.append(factory.make("vision_msgs/msg/Detection2D", header=header,
                                results=_hypotheses(factory, [dets.class_names[i]], [dets.scores[i]], pose, cov),
                                bbox=bbox, id=str(ids[i])))
    return factory.make("vision_msgs/msg/Detection2DArray", header=header, detections=out)


def detection2d_array_to_numpy(msg: Any) -> Detections2D:
    """Inverse of :func:`make_detection2d_array` (top hypothesis per detection)."""
    n = len(msg.detections)
    boxes, scores, names, ids, cov = np.zeros((n, 4)), np.zeros(n), [], [], np.zeros((n, 36))
    for i, d in enumerate(msg.detections):
        cx, cy = d.bbox.center.position.x, d.bbox.center.position.y
        boxes[i] = (cx - d.bbox.size_x / 2, cy - d.bbox.size_y / 2, cx + d.bbox.size_x / 2, cy + d.bbox.size_y / 2)
        best = max(d.results, key=lambda r: r.hypothesis.score) if d.results else None
        names.append(best.hypothesis.class_id if best else "")
        scores[i] = best.hypothesis.score if best else 0.0
        if best:
            cov[i] = np.asarray(best.pose.covariance, np.float64)
        ids.append(d.id)
    return Detections2D(boxes, names, scores, ids, cov)


def make_label_info(factory: MessageFactory, class_names: Sequence[str], threshold: float, header: Any) -> Any:
    """vision_msgs/LabelInfo: class index i -> ``class_names[i]``, and the score threshold the detector applies."""
    classes = [factory.make("vision_msgs/msg/VisionClass", class_id=i, class_name=str(n))
               for i, n in enumerate(class_names)]
    return factory.make("vision_msgs/msg/LabelInfo", header=header, class_map=classes, threshold=float(threshold))


def label_info_to_names(msg: Any) -> dict[int, str]:
    """Inverse of :func:`make_label_info`: class id -> class name."""
    return {int(c.class_id): str(c.class_name) for c in msg.class_map}


#: visualization_msgs/Marker type and action values
CUBE, TEXT_VIEW_FACING, ADD, DELETEALL = 1, 9, 0, 3


def make_box_markers(factory: MessageFactory, dets: Detections3D, header: Any, lifetime_s: float = 0.2,
                     colors_rgba: Mapping[str, Sequence[float]] | None = None, text_height_m: float = 0.6) -> Any:
    """visualization_msgs/MarkerArray for RViz: first a DELETEALL (clears the previous frame's boxes), then per
    detection i a CUBE (id 2i, coloured by class) and a TEXT_VIEW_FACING label "<class> <score>" above it
    (id 2i + 1), both in the marker namespace of the detection's class (one RViz checkbox per class)."""
    colors_rgba = colors_rgba or {}
    quats = yaw_to_quaternion(dets.yaw)
    sec, frac = divmod(lifetime_s, 1.0)
    lifetime = factory.make("builtin_interfaces/msg/Duration", sec=int(sec), nanosec=int(frac * 1e9))
    markers = [factory.make("visualization_msgs/msg/Marker", header=header, ns="", id=0, action=DELETEALL)]
    white = factory.make("std_msgs/msg/ColorRGBA", r=1.0, g=1.0, b=1.0, a=1.0)
    for i in range(len(dets)):
        name = dets.class_names[i]
        r, g, b, a = colors_rgba.get(name, (1.0, 0.8, 0.0, 0.5))
        c, s = dets.centers[i], dets.sizes[i]
        markers.append(factory.make(
            "visualization_msgs/msg/Marker", header=header, ns=name, id=2 * i, type=CUBE, action=ADD,
            pose=_pose(factory, c, quats[i]),
            scale=factory.make("geometry_msgs/msg/Vector3", x=float(s[0]), y=float(s[1]), z=float(s[2])),
            color=factory.make("std_msgs/msg/ColorRGBA", r=float(r), g=float(g), b=float(b), a=float(a)),
            lifetime=lifetime))
        above = (c[0], c[1], c[2] + s[2] / 2.0 + text_height_m)
        markers.append(factory.make(
            "visualization_msgs/msg/Marker", header=header, ns=name, id=2 * i + 1, type=TEXT_VIEW_FACING,
            action=ADD, pose=_pose(factory, above, (0.0, 0.0, 0.0, 1.0)),
            scale=factory.make("geometry_msgs/msg/Vector3", x=0.0, y=0.0, z=float(text_height_m)),
            color=white, lifetime=lifetime, text=f"{name} {float(dets.scores[i]):.2f}"))
    return factory.make("visualization_msgs/msg/MarkerArray", markers=markers)
