"""Message-level stages: input message(s) -> the core pipeline -> output messages, for one capability.

A stage is the part of a node that is not ROS plumbing: ``feed(role, msg, now_ns)`` decodes the input with
``glassbox.msg``, validates it, runs the pipeline and encodes every output with the input's header. The nodes
feed stages built with an rclpy message factory; the bag replay feeds the very same stages built with a rosbags
factory, so what is evaluated offline is exactly what runs on the robot. Bad input raises
``glassbox.msg.ConversionError`` with a ``reason`` from ``glassbox.msg.REASONS``.
"""
from glassbox.stages.base import Stage, StageOutput, probe_config_for_card
from glassbox.stages.camera import FusionStage, RefinerStage, SegmentationStage
from glassbox.stages.lidar import LidarStage
from glassbox.sync import StampGuard

__all__ = ["FusionStage", "LidarStage", "RefinerStage", "SegmentationStage", "Stage", "StageOutput", "StampGuard",
           "probe_config_for_card"]
