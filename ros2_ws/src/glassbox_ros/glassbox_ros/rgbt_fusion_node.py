"""rgbt_fusion_node: RGB + thermal Images -> GEM fusion -> ``detections`` (vision_msgs/Detection2DArray),
``fusion_weights`` (glassbox_msgs/FusionWeights), ``overlay`` (bgr8), ``uncertainty`` and ``entropy``.

Pairs are formed by ``glassbox.sync.ApproximateTimeSync`` (``sync.slop_s``, ``sync.queue_size``), the same
synchroniser the bag replay uses. When one stream is silent for ``sensor_timeout_s`` the node degrades to the
other sensor alone (the silent one is fed as a black frame, as GEM does with a dead sensor), says so in
``fusion_weights.degraded_sensors`` and in its diagnostics, and returns to fusion when the stream comes back.
"""
from __future__ import annotations

import time

import numpy as np
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image

from glassbox.msgcodec import stamp_to_ns
from glassbox.stages import FusionStage
from glassbox.sync import ApproximateTimeSync, SyncConfig
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import PerceptionNode, declare, run_node


class RgbtFusionNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("rgbt_fusion", default_card="gem.card.yaml")
        slop = declare(self, "sync.slop_s", 0.05, "max stamp difference of a fused RGB-thermal pair, s",
                       lo=0.0, hi=1.0, read_only=True)
        queue = declare(self, "sync.queue_size", 10, "frames kept per stream while waiting for a partner",
                        lo=1, hi=100, read_only=True)
        self.timeout_s = declare(self, "sensor_timeout_s", 0.5, "silence after which a stream counts as absent, s",
                                 lo=0.05, hi=60.0)
        homography = declare(self, "homography_thermal_to_rgb", [0.0] * 9, "3x3 row-major homography mapping "
                             "thermal pixels to RGB pixels; all zeros = the one in the model card", read_only=True)
        score = declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's",
                        lo=-1.0, hi=1.0, read_only=True)
        overrides = {"score_threshold": score} if score >= 0 else {}
        if any(homography):
            overrides["homography_thermal_to_rgb"] = tuple(float(v) for v in homography)
        self.start(FusionStage(self.build_pipeline("fusion", **overrides), RCLPY))
        self.sync = ApproximateTimeSync(SyncConfig(slop_s=slop, queue_size=queue))
        self.last_seen: dict[str, float | None] = {"rgb": None, "thermal": None}
        self.first_seen: dict[str, float | None] = {"rgb": None, "thermal": None}
        self.sub_rgb = self.create_subscription(Image, "rgb", self.on_rgb, qos_profile_sensor_data)
        self.sub_thermal = self.create_subscription(Image, "thermal", self.on_thermal, qos_profile_sensor_data)

    def seen(self, stream: str) -> None:
        now = time.monotonic()
        self.last_seen[stream] = now
        if self.first_seen[stream] is None:
            self.first_seen[stream] = now

    def silent(self, stream: str, other: str) -> bool:
        """``stream`` is silent when it stopped for ``sensor_timeout_s``, or never came within that time of
        ``other`` starting (so the first frames of a start-up wait for their partner instead of going alone)."""
        since = self.last_seen[stream] if self.last_seen[stream] is not None else self.first_seen[other]
        return since is not None and time.monotonic() - since > self.timeout_s

    def on_rgb(self, msg: Image) -> None:
        self.seen("rgb")
        if self.silent("thermal", "rgb"):       # thermal absent: RGB alone, right away
            self.diag.state = "thermal stream silent: RGB only"
            self.run_stage("rgb", lambda: self.stage(msg, None, degraded=("thermal",)), msg.header)
            return
        self.diag.state = ""
        pair = self.sync.add(0, stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self.fuse(pair)

    def on_thermal(self, msg: Image) -> None:
        self.seen("thermal")
        if self.silent("rgb", "thermal"):       # RGB absent: thermal alone, with a black RGB frame
            self.diag.state = "rgb stream silent: thermal only"
            self.run_stage("thermal", lambda: self.thermal_only(msg), msg.header)
            return
        pair = self.sync.add(1, stamp_to_ns(msg.header.stamp), msg)
        if pair is not None:
            self.fuse(pair)

    def fuse(self, pair) -> None:
        rgb_msg, thermal_msg = pair.first, pair.second
        skew = abs(pair.skew_ns) * 1e-9
        self.run_stage("pair", lambda: self.stage(rgb_msg, thermal_msg, sensor_age_s=(0.0, skew)), rgb_msg.header)
        self.diag.info["sync_dropped"] = f"rgb={self.sync.dropped[0]} thermal={self.sync.dropped[1]}"

    def thermal_only(self, msg: Image):
        from glassbox.stages.camera import decode_thermal
        thermal = decode_thermal(msg)
        black = np.zeros(thermal.shape[:2] + (3,), np.uint8)
        return self.stage.run(black, thermal, msg.header, degraded=("rgb",))


def main(args=None) -> None:
    run_node(RgbtFusionNode, args)


if __name__ == "__main__":
    main()
