"""Pipelines: numpy in -> results out, with a torch or ONNX Runtime backend; used by the ROS nodes and bag replay."""
from glassbox.pipelines.lidar import LidarDetectionConfig, LidarDetectionPipeline, LidarDetectionResult
