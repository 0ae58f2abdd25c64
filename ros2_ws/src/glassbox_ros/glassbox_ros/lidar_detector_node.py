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
        super().__init__("lidar", expected_rate_hz=10.0)
        declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's", lo=-1.0, hi=1.0,
                on_set=lambda v: self.set_decode(score_threshold=v))
        declare(self, "nms_iou", -1.0, "rotated BEV IoU above which the weaker box is suppressed; -1 = the model "
                "card's", lo=-1.0, hi=1.0, on_set=lambda v: self.set_decode(nms_iou=v))
        declare(self, "marker_lifetime_s", 0.2, "lifetime of the box markers, s", lo=0.0, hi=10.0,
                on_set=lambda v: setattr(self.stage, "marker_lifetime_s", v))

    def make_stage(self) -> LidarStage:
        pipeline = self.build_pipeline()
        self.card_decode = pipeline.cfg.decode          # score_threshold and nms_iou are applied with the others
        return LidarStage(pipeline, RCLPY, marker_lifetime_s=self.param("marker_lifetime_s"))

    def set_decode(self, **values: float) -> None:
        """Decoding settings from the next scan on; -1 = the model card's."""
        pipeline = self.stage.pipeline
        pipeline.cfg = replace(pipeline.cfg, decode=replace(pipeline.cfg.decode, **{
            k: getattr(self.card_decode, k) if v < 0 else v for k, v in values.items()}))


def main(args=None) -> None:
    run_node(LidarDetectorNode, args)


if __name__ == "__main__":
    main()
