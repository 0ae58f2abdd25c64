"""fusion_node: RGB + thermal images -> GEM fusion -> ``detections`` (vision_msgs/Detection2DArray),
``fusion_weights`` (glassbox_msgs/FusionWeights), ``overlay`` (bgr8), ``detection_uncertainty`` and ``entropy``;
``label_info`` (vision_msgs/LabelInfo, transient local) once at start.

Inputs: ``rgb/image`` and ``thermal/image`` (raw, or ``.../compressed`` with ``image_transport: compressed``),
each with its optional sibling ``camera_info`` (``glassbox_ros.camera_io``). The work, pairing included, is done
by ``glassbox.stages.FusionStage``, the same as in the bag replay: pairs by ``glassbox.sync.ApproximateTimeSync``
(``sync.slop_s``, ``sync.queue_size``); when one stream is silent for ``sensor_timeout_s`` (on the node clock,
so /clock with ``use_sim_time``) the node degrades to the other sensor alone (the silent one is fed as a black
frame, as GEM does with a dead sensor), says so in ``fusion_weights.degraded_sensors`` and in its diagnostics, and
returns to fusion when the stream comes back.

The thermal -> RGB homography, first match wins:
1. ``homography_thermal_to_rgb`` when not all zeros: an explicit override, used as it is;
2. built from the two cameras' intrinsics (their camera_info topics, else the ``calibration_file``'s) and the
   extrinsic (the ``calibration_file``'s, else TF: the pose of the thermal image's frame in the RGB image's frame,
   looked up every second with tf2_ros when it is installed), for the plane ``homography_plane_distance_m`` in
   front of the thermal camera (0 = the infinite homography; ``glassbox.calibration`` says when each is exact);
3. the model card's (the rig it was trained on).
The diagnostics' ``homography`` value says which one is in use.
"""
from __future__ import annotations

from dataclasses import replace

from glassbox.calibration import CalibrationError, load_fusion_calibration, pose_matrix
from glassbox.stages import FusionStage
from glassbox.sync import SyncConfig
from glassbox_ros.converters import RCLPY
from glassbox_ros.node_common import ParameterValueError, PerceptionNode, declare, run_node


class FusionNode(PerceptionNode):
    def __init__(self) -> None:
        super().__init__("fusion", expected_rate_hz=15.0)
        declare(self, "sync.slop_s", 0.05, "max stamp difference of a fused RGB-thermal pair, s", lo=0.0, hi=1.0,
                on_set=lambda v: self.set_sync(slop_s=v))
        declare(self, "sync.queue_size", 10, "frames kept per stream while waiting for a partner", lo=1, hi=100,
                on_set=lambda v: self.set_sync(queue_size=v))
        declare(self, "sensor_timeout_s", 0.5, "silence (node clock) after which a stream counts as absent, s",
                lo=0.05, hi=60.0, on_set=lambda v: setattr(self.stage, "timeout_ns", int(round(v * 1e9))))
        self.homography = declare(self, "homography_thermal_to_rgb", [0.0] * 9, "3x3 row-major homography "
                                  "mapping thermal pixels to RGB pixels, used as it is; all zeros = built from "
                                  "camera_info, calibration_file and TF, else the model card's", read_only=True)
        self.calibration_file = declare(self, "calibration_file", "", "fusion calibration YAML: "
                                        "camera_calibration files of the two cameras and the thermal -> RGB "
                                        "extrinsic; empty = intrinsics from camera_info, extrinsic from TF",
                                        read_only=True)
        self.plane_m = declare(self, "homography_plane_distance_m", 20.0, "distance of the fronto-parallel plane "
                               "in front of the thermal camera whose homography maps thermal to RGB pixels, m; 0 = "
                               "the infinite homography K_rgb R K_thermal^-1", lo=0.0, hi=10000.0, read_only=True)
        declare(self, "score_threshold", -1.0, "minimum detection score; -1 = the model card's", lo=-1.0, hi=1.0,
                on_set=self.set_score_threshold)
        self.tf_buffer = None
        if not self.calibration_file and not any(self.homography):
            self.tf_buffer = self._tf_buffer()

    def make_stage(self) -> FusionStage:
        fixed = any(self.homography)
        overrides = {"homography_thermal_to_rgb": tuple(float(v) for v in self.homography)} if fixed else {}
        try:
            calibration = load_fusion_calibration(self.calibration_file) if self.calibration_file else None
        except CalibrationError as exc:
            raise ParameterValueError(f"calibration_file: {exc}") from None
        pipeline = self.build_pipeline(**overrides)
        self.card_score_threshold = pipeline.cfg.score_threshold    # score_threshold is applied with the others
        sync = SyncConfig(slop_s=self.param("sync.slop_s"), queue_size=self.param("sync.queue_size"))
        return FusionStage(pipeline, RCLPY, sync, sensor_timeout_s=self.param("sensor_timeout_s"),
                           calibration=calibration, plane_distance_m=self.plane_m, fixed_homography=fixed)

    def set_sync(self, **values) -> None:
        self.stage.sync.configure(replace(self.stage.sync.cfg, **values))

    def set_score_threshold(self, value: float) -> None:
        """Minimum score from the next frame on; -1 = the model card's."""
        pipeline = self.stage.pipeline
        pipeline.cfg = replace(pipeline.cfg, score_threshold=self.card_score_threshold if value < 0 else value)

    def _tf_buffer(self):
        """A TF buffer and listener, and a 1 s timer that looks the extrinsic up; None without tf2_ros."""
        try:
            import tf2_ros
        except ImportError:
            self.get_logger().info("tf2_ros is not installed: the thermal -> RGB extrinsic comes only from "
                                   "calibration_file")
            return None
        buffer = tf2_ros.Buffer()
        self.tf_listener = tf2_ros.TransformListener(buffer, self)
        self.tf_timer = self.create_timer(1.0, self._lookup_extrinsic)
        return buffer

    def _lookup_extrinsic(self) -> None:
        """rgb_T_thermal from TF: the pose of the thermal image's frame in the RGB image's frame."""
        import rclpy.time
        import tf2_ros
        if self.stage is None:
            return
        rgb, thermal = self.stage.frames.get("rgb"), self.stage.frames.get("thermal")
        if not rgb or not thermal:
            return
        try:
            t = self.tf_buffer.lookup_transform(rgb, thermal, rclpy.time.Time())
        except tf2_ros.TransformException as exc:
            self.get_logger().warning(f"no TF from {thermal} to {rgb} yet: {exc}", throttle_duration_sec=10.0)
            return
        tr, q = t.transform.translation, t.transform.rotation
        self.stage.set_extrinsic(pose_matrix((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w)), f"TF {rgb} <- {thermal}")


def main(args=None) -> None:
    run_node(FusionNode, args)


if __name__ == "__main__":
    main()
