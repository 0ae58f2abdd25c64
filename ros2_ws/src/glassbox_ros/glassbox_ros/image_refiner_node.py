"""image_refiner_node: camera Image -> pseudo-active refiner -> ``image_refined`` (same colour order) + ``entropy``.

Put it in front of any camera consumer by remapping that consumer's input to ``image_refined``. The work is done
by ``glassbox.stages.RefinerStage``.
"""
from __future__ import annotations

from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from glassbox.stages import RefinerStage
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, run_node


class ImageRefinerNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("image_refiner", default_card="refiner.card.yaml")
        self.start(RefinerStage(self.build_pipeline("refiner"), RCLPY))
        self.sub = self.create_subscription(Image, "image", self.on_image, qos_profile_sensor_data)

    def on_image(self, msg: Image) -> None:
        self.run_stage("image", lambda: self.stage(msg), msg.header)


def main(args=None) -> None:
    run_node(ImageRefinerNode, args)


if __name__ == "__main__":
    main()
