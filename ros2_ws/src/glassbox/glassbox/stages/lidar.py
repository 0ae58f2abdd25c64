"""LiDAR stage: PointCloud2 -> LidarDetectionPipeline -> Detection3DArray, MarkerArray, EntropyProfile and
DetectionUncertaintyArray, plus the detector's LabelInfo.

The cloud is decoded once per message (one structured view; xyzi and ring are columns of it) and the pipeline
gets arrays. The pipeline fits each cloud to the model card's sensor profile: a cloud of another sensor (another
beam table, ring count or intensity unit) is resampled into the model's geometry and the difference is kept in
``state`` (the node's diagnostics: a warning with the reason, logged once); a cloud that cannot be fitted (no
point inside the model's vertical field of view, intensities in no known unit) is rejected as
``sensor_mismatch``. Points with a NaN/inf coordinate or intensity, or beyond the sensor's range, are dropped
before the fit and counted (``info()["dropped_points/nonfinite"]``, ``["dropped_points/out_of_range"]``, totals
since the start); a cloud with no point left is rejected as ``empty``. ``info()`` gives the model's sensor and
what the last cloud looked like (``sensor/...``).
Each detection's pose covariance is built from the spreads of its DetectionUncertainty
(``glassbox.msg.pose_covariance_from_spreads``: m^2 for position, rad^2 for yaw, in the cloud's frame). A model
with a sampled head gives the position block from its predicted centre covariance instead (aleatoric +
epistemic, calibrated; ``glassbox.msg.pose_covariance_3d``) and fills the DetectionUncertainty's aleatoric and
epistemic fields; ``center_std`` is then the square root of the covariance's trace.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from glassbox import msg as gm
from glassbox.classes import DETECTION_CLASSES
from glassbox.lidar.sensors import NoValidPointError, SensorMismatchError
from glassbox.pipelines.lidar import LidarDetectionPipeline, LidarDetectionResult
from glassbox.stages.base import Stage, StageOutput

CLASS_COLORS = {"car": (0.1, 0.4, 1.0, 0.5), "pedestrian": (1.0, 0.1, 0.2, 0.5), "cyclist": (0.6, 0.1, 0.8, 0.5)}


def decode_points(msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """xyzi (N, 4) float32 of every point and their ring column when the cloud has one (NaN/inf and out-of-range
    points are dropped by the pipeline's ``CloudFit``). Rejects clouds with no point (``empty``)."""
    cloud = gm.pointcloud2_to_array(msg)
    xyzi = gm.cloud_to_xyz(cloud, ("x", "y", "z", "intensity"), skip_nans=False)
    if xyzi.shape[0] == 0:
        raise gm.ConversionError("empty", "point cloud has no point")
    ring = None
    if "ring" in (cloud.dtype.names or ()):
        ring = np.ascontiguousarray(cloud.reshape(-1)["ring"]).astype(np.int64)
    return xyzi, ring


class LidarStage(Stage):
    capability = "lidar"

    def __init__(self, pipeline: LidarDetectionPipeline, factory: gm.MessageFactory,
                 class_names: tuple[str, ...] = DETECTION_CLASSES, marker_lifetime_s: float = 0.2):
        super().__init__(pipeline, factory)
        self.class_names = class_names
        self.marker_lifetime_s = marker_lifetime_s

    def decode(self, role: str, msg: Any) -> tuple[np.ndarray, np.ndarray | None]:
        return decode_points(msg)

    def step(self, role: str, data: Any, header: Any, now_ns: int) -> StageOutput:
        points, ring = data
        try:
            result: LidarDetectionResult = self.pipeline(points, ring)
        except SensorMismatchError as exc:
            raise gm.ConversionError("sensor_mismatch", str(exc)) from None
        except NoValidPointError as exc:
            raise gm.ConversionError("empty", str(exc)) from None
        finally:
            self.state = self.pipeline.fit.state
        d = result.detections
        return StageOutput(self.encode(result, header), result, gm.stamp_to_ns(header.stamp),
                           frame={"num_detections": len(d), "_pred": d},
                           sample={"range": result.range_image.range, "detections": d})

    def info(self) -> dict[str, str]:
        return self.pipeline.fit.info()

    def encode(self, result: LidarDetectionResult, header_in: Any) -> dict[str, Any]:
        f = self.factory
        header = gm.copy_header(f, header_in)
        d = result.detections
        names = [self.class_names[int(c)] for c in d.classes]
        ids = [str(i) for i in range(len(d))]
        center_std = np.asarray(d.centre_spread_m, np.float64)
        yaw_std = np.asarray(d.yaw_spread_rad, np.float64)
        parts: dict[str, np.ndarray] = {}
        u = result.uncertainty
        if u is None:
            covariance = gm.pose_covariance_from_spreads(center_std, yaw_std)
        else:
            cov_a, cov_e = u.centre_cov_aleatoric, u.centre_cov_epistemic
            center_std = np.sqrt(np.trace(cov_a + cov_e, axis1=1, axis2=2))
            covariance = gm.pose_covariance_3d(cov_a + cov_e, yaw_std ** 2)
            parts = {"score_aleatoric_nats": u.score_aleatoric, "score_epistemic_nats": u.score_epistemic,
                     "center_std_aleatoric": np.sqrt(np.trace(cov_a, axis1=1, axis2=2)),
                     "center_std_epistemic": np.sqrt(np.trace(cov_e, axis1=1, axis2=2))}
        dets = gm.Detections3D(np.asarray(d.centers, np.float64), np.asarray(d.sizes, np.float64),
                               np.asarray(d.yaw, np.float64), names, np.asarray(d.scores, np.float64), ids,
                               covariance)
        out = {"detections": gm.make_detection3d_array(f, dets, header),
               "markers": gm.make_box_markers(f, dets, header, lifetime_s=self.marker_lifetime_s,
                                              colors_rgba=CLASS_COLORS),
               "detection_uncertainty": gm.make_detection_uncertainty_array(f, gm.DetectionUncertainties(
                   score_entropy_nats=np.asarray(d.score_entropy, np.float64), top_score=dets.scores,
                   center_std=center_std, size_std=None, yaw_std_rad=yaw_std, ids=ids, **parts), header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(f, result.entropy, header)
        return out

    def latched_messages(self, stamp_ns: int) -> dict[str, Any]:
        """``label_info``: class index i of the model is ``class_names[i]`` (the detections' class_id)."""
        header = gm.make_header(self.factory, stamp_ns, "")
        return {"label_info": gm.make_label_info(self.factory, self.class_names,
                                                 self.pipeline.cfg.decode.score_threshold, header)}
