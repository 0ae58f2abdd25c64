"""fusion_node: RGB + thermal Images -> GEM fusion -> ``detections`` (vision_msgs/Detection2DArray),
``fusion_weights`` (glassbox_msgs/FusionWeights), ``overlay`` (bgr8), ``uncertainty`` and ``entropy``.

The work, pairing included, is done by ``glassbox.stages.FusionStage``, the same as in the bag replay: pairs by
``glassbox.sync.ApproximateTimeSync`` (``sync.slop_s``, ``sync.queue_size``); when one stream is silent for
``sensor_timeout_s`` (on the node clock) the node degrades to the other sensor alone (the silent one is fed as a
black frame, as GEM does with a dead sensor), says so in ``fusion_weights.degraded_sensors`` and in its
diagnostics, and returns to fusion when the stream comes back.
"""
from __future__ import annotations

from glassbox.stages import FusionStage
from glassbox.sync import SyncConfig
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, declare, run_node


class FusionNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("fusion")
        slop = declare(self, "sync.slop_s", 0.05, "max stamp difference of a fused RGB-thermal pair, s",
                       lo=0.0, hi=1.0, read_only=True)
        queue = declare(self, "sync.queue_size", 10, "frames kept per stream while waiting for a partner",
                        lo=1, hi=100, read_only=True)
        timeout_s = declare(self, "sensor_timeout_s", 0.5, "silence after which a stream counts as absent, s",
                            lo=0.05, hi=60.0)
        homography = declare(self, "homography_thermal_to_rgb", [0.0] * 9, "3x3 row-major homography mapping "
                             "thermal pixels to RGB pixels; all zeros = the one in the model card", read_only=True)
        score = declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's",
                        lo=-1.0, hi=1.0, read_only=True)
        overrides = {"score_threshold": score} if score >= 0 else {}
        if any(homography):
            overrides["homography_thermal_to_rgb"] = tuple(float(v) for v in homography)
        self.start(FusionStage(self.build_pipeline(**overrides), RCLPY,
                               SyncConfig(slop_s=slop, queue_size=queue), sensor_timeout_s=timeout_s))


def main(args=None) -> None:
    run_node(FusionNode, args)


if __name__ == "__main__":
    main()
