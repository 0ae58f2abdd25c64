"""Message-level stages: input message(s) -> the core pipeline -> output messages, for one capability.

A stage is the part of a node that is not ROS plumbing: decode the input with ``glassbox.msgcodec``, run the
pipeline object, encode every output with the input's header. The nodes call stages with an rclpy message
factory; the bag replay calls the very same stages with a rosbags factory, so what is evaluated offline is
exactly what runs on the robot. Bad input raises ``glassbox.msgcodec.ConversionError`` with the reason.
"""
from glassbox.stages.base import StageOutput, probe_config_for_card
from glassbox.stages.camera import FusionStage, RefinerStage, SegmentationStage
from glassbox.stages.lidar import LidarStage

__all__ = ["FusionStage", "LidarStage", "RefinerStage", "SegmentationStage", "StageOutput", "probe_config_for_card"]
