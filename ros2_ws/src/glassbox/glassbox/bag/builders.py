"""Message builders that ``glassbox.msg`` does not have: TF, the simulator's ground truth and its CameraInfo.

Like ``glassbox.msg`` they work through a ``MessageFactory`` (rosbags dataclasses for bags, rclpy messages for
nodes), so they set fields by name only. Ground-truth detections use the project's class names as ``class_id``, a score of
1 and the object's instance id as the detection ``id`` (stable over a drive, like a track id).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from glassbox.calibration import pinhole
from glassbox.classes import DETECTION_CLASSES
from glassbox.msg import (Detections2D, Detections3D, MessageFactory, make_detection2d_array,
                           make_detection3d_array, make_time)
from glassbox.msg import make_camera_info as msg_camera_info


def make_camera_info(factory: MessageFactory, k: np.ndarray, width: int, height: int, header: Any) -> Any:
    """sensor_msgs/CameraInfo of an undistorted pinhole (plumb_bob with zero distortion, R = I, P = [K | 0])."""
    return msg_camera_info(factory, pinhole(k, width, height), header)


def rotation_to_quaternion(r: np.ndarray) -> np.ndarray:
    """3x3 rotation -> quaternion (x, y, z, w), w >= 0."""
    r = np.asarray(r, np.float64)
    tr = np.trace(r)
    if tr > 0:
        s = np.sqrt(tr + 1.0) * 2
        q = np.array([(r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s])
    else:
        i = int(np.argmax(np.diag(r)))
        j, k = (i + 1) % 3, (i + 2) % 3
        s = np.sqrt(1.0 + r[i, i] - r[j, j] - r[k, k]) * 2
        q = np.zeros(4)
        q[i] = 0.25 * s
        q[j] = (r[j, i] + r[i, j]) / s
        q[k] = (r[k, i] + r[i, k]) / s
        q[3] = (r[k, j] - r[j, k]) / s
    q /= np.linalg.norm(q)
    return -q if q[3] < 0 else q


def make_transform_stamped(factory: MessageFactory, parent_T_child: np.ndarray, parent: str, child: str,
                           stamp_ns: int) -> Any:
    """geometry_msgs/TransformStamped of the 4x4 pose of ``child`` in ``parent``."""
    t = np.asarray(parent_T_child, np.float64)
    q = rotation_to_quaternion(t[:3, :3])
    header = factory.make("std_msgs/msg/Header", stamp=make_time(factory, stamp_ns), frame_id=parent)
    tr = factory.make("geometry_msgs/msg/Transform",
                      translation=factory.make("geometry_msgs/msg/Vector3", x=float(t[0, 3]), y=float(t[1, 3]),
                                               z=float(t[2, 3])),
                      rotation=factory.make("geometry_msgs/msg/Quaternion", x=float(q[0]), y=float(q[1]),
                                            z=float(q[2]), w=float(q[3])))
    return factory.make("geometry_msgs/msg/TransformStamped", header=header, child_frame_id=child, transform=tr)


def make_tf_message(factory: MessageFactory, transforms: list[Any]) -> Any:
    return factory.make("tf2_msgs/msg/TFMessage", transforms=transforms)


def make_gt_detection3d_array(factory: MessageFactory, centers: np.ndarray, sizes: np.ndarray, yaw: np.ndarray,
                              classes: np.ndarray, ids: np.ndarray, header: Any) -> Any:
    """Ground-truth 3D boxes (score 1, id = instance id)."""
    dets = Detections3D(np.asarray(centers, np.float64), np.asarray(sizes, np.float64), np.asarray(yaw, np.float64),
                        [DETECTION_CLASSES[int(c)] for c in classes], np.ones(len(classes)),
                        [str(int(i)) for i in ids])
    return make_detection3d_array(factory, dets, header)


def make_gt_detection2d_array(factory: MessageFactory, boxes_xyxy: np.ndarray, classes: np.ndarray,
                              ids: np.ndarray, header: Any) -> Any:
    """Ground-truth 2D boxes (score 1, id = instance id)."""
    dets = Detections2D(np.asarray(boxes_xyxy, np.float64).reshape(-1, 4), [DETECTION_CLASSES[int(c)] for c in classes],
                        np.ones(len(classes)), [str(int(i)) for i in ids])
    return make_detection2d_array(factory, dets, header)
