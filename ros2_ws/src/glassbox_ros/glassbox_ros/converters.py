"""The codecs of ``glassbox.msg`` bound to rclpy messages.

Decoders read by field name, so the nodes call ``glassbox.msg`` decoders on rclpy messages directly; what is
rclpy-specific is building messages, which needs the rclpy classes: :class:`RclpyFactory` provides them, and
``build`` is every ``glassbox.msg`` builder with it bound (``build.image(arr, "rgb8", header)``,
``build.pointcloud2(cloud, header)``, ``build.detection3d_array(dets, header)``, ...).
"""
from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Any

from glassbox import msg as gm


class RclpyFactory(gm.ArrayFactoryMixin):
    """Builds rclpy messages by ROS type name, e.g. ``"sensor_msgs/msg/Image"``."""

    @staticmethod
    @lru_cache(maxsize=None)
    def _cls(typename: str) -> type:
        pkg, _, name = typename.split("/")
        return getattr(importlib.import_module(f"{pkg}.msg"), name)

    def make(self, typename: str, **fields: Any) -> Any:
        return self._cls(typename)(**fields)


RCLPY = RclpyFactory()
build = gm.bind(RCLPY)
