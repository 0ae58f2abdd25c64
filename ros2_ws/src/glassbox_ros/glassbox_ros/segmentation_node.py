"""segmentation_node: camera image -> BiSeNet -> ``labels`` (mono8 class ids), ``overlay`` (bgr8),
``uncertainty_map`` (32FC1 per-pixel predictive entropy, nats), ``epistemic_map`` (32FC1, its epistemic part,
only from a card with a sampled classifier), ``camera_info`` of those images (when the
input's camera_info arrives), ``entropy`` (per-layer profile), and ``label_info`` (vision_msgs/LabelInfo: label
value -> class name; transient local, once at start).

Subscribes ``rgb/image`` (raw, or ``rgb/image/compressed`` with ``image_transport: compressed``) and its sibling
``rgb/camera_info`` (``glassbox_ros.camera_io``). Subscribe it to a refiner's ``image_refined`` (by remapping
``rgb/image``) to segment refined images.
"""
from __future__ import annotations

from glassbox.stages import SegmentationStage
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, declare, run_node


class SegmentationNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("segmentation", expected_rate_hz=15.0)
        declare(self, "overlay_alpha", 0.5, "opacity of the class colours in the overlay", lo=0.0, hi=1.0,
                on_set=lambda v: setattr(self.stage, "alpha", v))

    def make_stage(self) -> SegmentationStage:
        self.diag.info["classes"] = ",".join(self.card.classes)
        return SegmentationStage(self.build_pipeline(), RCLPY, overlay_alpha=self.param("overlay_alpha"))


def main(args=None) -> None:
    run_node(SegmentationNode, args)


if __name__ == "__main__":
    main()
