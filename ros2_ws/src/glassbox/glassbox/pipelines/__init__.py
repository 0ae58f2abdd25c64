"""Pipelines: numpy in -> results out, with a torch or ONNX Runtime backend; used by the ROS nodes and bag replay."""
from glassbox.pipelines.lidar import LidarDetectionConfig, LidarDetectionPipeline, LidarDetectionResult
from glassbox.pipelines.fusion import FusionPipeline, FusionPipelineConfig, FusionResult
from glassbox.pipelines.refiner import RefinerPipeline, RefinerPipelineConfig, RefinerResult
from glassbox.pipelines.segmentation import SegmentationPipeline, SegmentationPipelineConfig, SegmentationResult
