"""fusion_node: RGB + thermal Images -> GEM fusion -> ``detections`` (vision_msgs/Detection2DArray),
``fusion_weights`` (glassbox_msgs/FusionWeights), ``overlay`` (bgr8), ``uncertainty`` and ``entropy``.

The work, pairing included, is done by ``glassbox.stages.FusionStage``, the same as in the bag replay: pairs by
``glassbox.sync.ApproximateTimeSync`` (``sync.slop_s``, ``sync.queue_size``); when one stream is silent for
``sensor_timeout_s`` (on the node clock, so /clock with ``use_sim_time``) the node degrades to the other sensor
alone (the silent one is fed as a black frame, as GEM does with a dead sensor), says so in
``fusion_weights.degraded_sensors`` and in its diagnostics, and returns to fusion when the stream comes back.
"""
from __future__ import annotations

from dataclasses import replace

from glassbox.stages import FusionStage
from glassbox.sync import SyncConfig
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, declare, run_node


class FusionNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("fusion", expected_rate_hz=15.0)
        slop = declare(self, "sync.slop_s", 0.05, "max stamp difference of a fused RGB-thermal pair, s",
                       lo=0.0, hi=1.0, on_set=lambda v: self.set_sync(slop_s=v))
        queue = declare(self, "sync.queue_size", 10, "frames kept per stream while waiting for a partner",
                        lo=1, hi=100, on_set=lambda v: self.set_sync(queue_size=v))
        timeout_s = declare(self, "sensor_timeout_s", 0.5, "silence (node clock) after which a stream counts as "
                            "absent, s", lo=0.05, hi=60.0,
                            on_set=lambda v: setattr(self.stage, "timeout_ns", int(round(v * 1e9))))
        homography = declare(self, "homography_thermal_to_rgb", [0.0] * 9, "3x3 row-major homography mapping "
                             "thermal pixels to RGB pixels; all zeros = the one in the model card", read_only=True)
        score = declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's",
                        lo=-1.0, hi=1.0, on_set=self.set_score_threshold)
        overrides = {"homography_thermal_to_rgb": tuple(float(v) for v in homography)} if any(homography) else {}
        pipeline = self.build_pipeline(**overrides)
        self.card_score_threshold = pipeline.cfg.score_threshold
        self.start(FusionStage(pipeline, RCLPY, SyncConfig(slop_s=slop, queue_size=queue),
                               sensor_timeout_s=timeout_s))
        self.set_score_threshold(score)

    def set_sync(self, **values) -> None:
        self.stage.sync.configure(replace(self.stage.sync.cfg, **values))

    def set_score_threshold(self, value: float) -> None:
        """Minimum score from the next frame on; -1 = the model card's."""
        pipeline = self.stage.pipeline
        pipeline.cfg = replace(pipeline.cfg, score_threshold=self.card_score_threshold if value < 0 else value)


def main(args=None) -> None:
    run_node(FusionNode, args)


if __name__ == "__main__":
    main()
