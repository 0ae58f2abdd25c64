"""lidar_detector_node: PointCloud2 -> 3D detections, box markers, per-detection uncertainty, entropy profile.

Subscribes ``points`` (sensor data QoS); publishes ``detections`` (vision_msgs/Detection3DArray; pose covariances
from the detections' spreads), ``markers`` (MarkerArray: DELETEALL, then a box and a label per detection, one
namespace per class), ``detection_uncertainty`` (glassbox_msgs/DetectionUncertaintyArray) and ``entropy``
(glassbox_msgs/EntropyProfile), all with the input's header, and ``label_info`` (vision_msgs/LabelInfo, transient
local) once at start. The work is done by ``glassbox.stages.LidarStage``.
"""
from __future__ import annotations

from dataclasses import replace

from glassbox.stages import LidarStage
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, declare, run_node


class LidarDetectorNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("lidar")
        score = declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's",
                        lo=-1.0, hi=1.0, read_only=True)
        nms = declare(self, "nms_iou", -1.0, "rotated BEV IoU above which the weaker box is suppressed; -1 = the "
                      "model card's", lo=-1.0, hi=1.0, read_only=True)
        lifetime = declare(self, "marker_lifetime_s", 0.2, "lifetime of the box markers, s", lo=0.0, hi=10.0)
        pipeline = self.build_pipeline()
        decode = pipeline.cfg.decode
        pipeline.cfg = replace(pipeline.cfg, decode=replace(
            decode, score_threshold=decode.score_threshold if score < 0 else score,
            nms_iou=decode.nms_iou if nms < 0 else nms))
        self.start(LidarStage(pipeline, RCLPY, marker_lifetime_s=lifetime))


def main(args=None) -> None:
    run_node(LidarDetectorNode, args)


if __name__ == "__main__":
    main()
