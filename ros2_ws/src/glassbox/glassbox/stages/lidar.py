"""LiDAR stage: PointCloud2 -> LidarDetectionPipeline -> Detection3DArray, MarkerArray, EntropyProfile, uncertainty."""
from __future__ import annotations

from typing import Any

import numpy as np

from glassbox import msgcodec as mc
from glassbox.classes import DETECTION_CLASSES
from glassbox.pipelines.lidar import LidarDetectionPipeline, LidarDetectionResult
from glassbox.stages.base import StageOutput

CLASS_COLORS = {"car": (0.1, 0.4, 1.0, 0.5), "pedestrian": (1.0, 0.1, 0.2, 0.5), "cyclist": (0.6, 0.1, 0.8, 0.5)}


class LidarStage:
    inputs = {"points": "sensor_msgs/msg/PointCloud2"}
    outputs = {"detections": "vision_msgs/msg/Detection3DArray", "markers": "visualization_msgs/msg/MarkerArray",
               "entropy": "glassbox_msgs/msg/EntropyProfile",
               "uncertainty": "glassbox_msgs/msg/DetectionUncertaintyArray"}

    def __init__(self, pipeline: LidarDetectionPipeline, factory: mc.MessageFactory,
                 class_names: tuple[str, ...] = DETECTION_CLASSES, marker_lifetime_s: float = 0.2):
        self.pipeline = pipeline
        self.factory = factory
        self.class_names = class_names
        self.marker_lifetime_s = marker_lifetime_s

    def decode_input(self, msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
        """xyzi (N, 4) and the ring column when the cloud has one; rejects clouds with no finite point."""
        cloud = mc.pointcloud2_to_array(msg)
        xyzi = mc.pointcloud2_to_xyzi(msg, skip_nans=False)
        if xyzi.shape[0] == 0:
            raise mc.ConversionError("empty point cloud")
        finite = np.isfinite(xyzi[:, :3]).all(axis=1)
        if not finite.any():
            raise mc.ConversionError(f"point cloud has no finite point ({xyzi.shape[0]} points, all NaN/inf)")
        ring = None
        if "ring" in (cloud.dtype.names or ()):
            ring = np.ascontiguousarray(cloud.reshape(-1)["ring"])[finite].astype(np.int64)
        return xyzi[finite], ring

    def __call__(self, msg: Any) -> StageOutput:
        points, ring = self.decode_input(msg)
        result: LidarDetectionResult = self.pipeline(points, ring)
        return StageOutput(self.encode(result, msg.header), result)

    def encode(self, result: LidarDetectionResult, header_in: Any) -> dict[str, Any]:
        f = self.factory
        header = mc.copy_header(f, header_in)
        d = result.detections
        names = [self.class_names[int(c)] for c in d.classes]
        ids = [str(i) for i in range(len(d))]
        dets = mc.Detections3D(np.asarray(d.centers, np.float64), np.asarray(d.sizes, np.float64),
                               np.asarray(d.yaw, np.float64), names, np.asarray(d.scores, np.float64), ids)
        out = {"detections": mc.make_detection3d_array(f, dets, header),
               "markers": mc.make_box_markers(f, dets, header, lifetime_s=self.marker_lifetime_s,
                                              colors_rgba=CLASS_COLORS),
               "uncertainty": mc.make_detection_uncertainty_array(f, mc.DetectionUncertainties(
                   score_entropy_nats=np.asarray(d.score_entropy, np.float64), top_score=dets.scores,
                   center_std=np.asarray(d.centre_spread_m, np.float64), size_std=None,
                   yaw_std_rad=np.asarray(d.yaw_spread_rad, np.float64), ids=ids), header)}
        if result.entropy is not None:
            out["entropy"] = mc.make_entropy_profile(f, result.entropy, header)
        return out
