"""image_refiner_node: camera image -> pseudo-active refiner -> ``image_refined`` (same colour order, at the input
size), its ``camera_info`` (when the input's camera_info arrives) and ``entropy``.

Subscribes ``rgb/image`` (raw, or ``rgb/image/compressed`` with ``image_transport: compressed``) and its sibling
``rgb/camera_info`` (``glassbox_ros.camera_io``). Put it in front of any camera consumer by remapping that consumer's
input to ``image_refined``: the consumer finds the refiner's ``camera_info`` beside it. The work is done by
``glassbox.stages.RefinerStage``.
"""
from __future__ import annotations

from glassbox.stages import RefinerStage
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, run_node


class ImageRefinerNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("refiner", expected_rate_hz=15.0)

    def make_stage(self) -> RefinerStage:
        return RefinerStage(self.build_pipeline(), RCLPY)


def main(args=None) -> None:
    run_node(ImageRefinerNode, args)


if __name__ == "__main__":
    main()
