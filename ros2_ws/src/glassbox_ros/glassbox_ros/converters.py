"""The only module of the nodes that turns messages into numpy arrays and back.

Decoders read by field name, so they accept rclpy messages and rosbags dataclasses alike. Builders produce
rclpy messages by default; pass ``factory=RosbagsFactory(typestore)`` (from ``glassbox.msgcodec``) for rosbags
dataclasses. The codecs themselves live in ``glassbox.msgcodec`` so the ROS-free bag replay uses the very same code.
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

import numpy as np

from glassbox import msgcodec
from glassbox.msgcodec import (  # noqa: F401  (re-exported for node code)
    ConversionError,
    Detections2D,
    Detections3D,
    DetectionUncertainties,
    detection2d_array_to_numpy,
    detection3d_array_to_numpy,
    entropy_profile_from_msg,
    image_to_array,
    image_to_rgb8,
    pointcloud2_to_array,
    pointcloud2_to_xyz,
    pointcloud2_to_xyzi,
    stamp_to_ns,
    xyz_to_structured,
    yaw_to_quaternion,
)


class RclpyFactory(msgcodec.ArrayFactoryMixin):
    """Builds rclpy messages by ROS type name, e.g. ``"sensor_msgs/msg/Image"``."""

    @staticmethod
    @lru_cache(maxsize=None)
    def _cls(typename: str) -> type:
        pkg, _, name = typename.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), name)

    def make(self, typename: str, **fields: Any) -> Any:
        return self._cls(typename)(**fields)


RCLPY = RclpyFactory()


def header_copy(header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    """A header with the input's stamp and frame_id, for an output message."""
    return msgcodec.copy_header(factory, header)


def array_to_pointcloud2(cloud: np.ndarray, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    """Structured array (N,) or (H, W) -> PointCloud2 (see ``glassbox.msgcodec.xyz_to_structured``)."""
    return msgcodec.make_pointcloud2(factory, cloud, header)


def array_to_image(arr: np.ndarray, encoding: str, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_image(factory, arr, encoding, header)


def detections3d_to_msg(dets: Detections3D, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_detection3d_array(factory, dets, header)


def detections2d_to_msg(dets: Detections2D, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_detection2d_array(factory, dets, header)


def entropy_profile_to_msg(profile: Any, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_entropy_profile(factory, profile, header)


def uncertainty_to_msg(unc: DetectionUncertainties, header: Any, factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_detection_uncertainty_array(factory, unc, header)


def fusion_weights_to_msg(sensor_names, level_weights, header: Any, sensor_age_s=None, degraded_sensors=(),
                          factory: msgcodec.MessageFactory = RCLPY) -> Any:
    return msgcodec.make_fusion_weights(factory, sensor_names, level_weights, header, sensor_age_s, degraded_sensors)
