"""image_refiner_node: camera Image -> pseudo-active refiner -> ``image_refined`` (same colour order) + ``entropy``.

Put it in front of any camera consumer by remapping that consumer's input to ``image_refined``. The work is done
by ``glassbox.stages.RefinerStage``.
"""
from __future__ import annotations

from glassbox.stages import RefinerStage
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, run_node


class ImageRefinerNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("refiner", expected_rate_hz=15.0)
        self.start(RefinerStage(self.build_pipeline(), RCLPY))


def main(args=None) -> None:
    run_node(ImageRefinerNode, args)


if __name__ == "__main__":
    main()
