"""Camera stages: Image(s) -> refiner / BiSeNet / GEM pipelines -> output messages with the input's header.

Inputs are raw ``sensor_msgs/Image`` or ``sensor_msgs/CompressedImage`` (``glassbox.msg.decode_color`` /
``decode_thermal``). Each camera role may also be given its ``sensor_msgs/CameraInfo`` (:meth:`CameraStage.
camera_info`; the latest one holds, intrinsics being constant): the refiner and segmentation then publish
``camera_info`` for their image outputs (K and P scaled to the output size, the input's header), and the fusion
stage builds the thermal -> RGB homography from the two cameras' intrinsics and the extrinsic (see
:class:`FusionStage`). Without camera info they run as before.

The fusion stage owns RGB-thermal pairing (``glassbox.sync.ApproximateTimeSync``) and the sensor-timeout
fallback: when one stream has been silent for ``sensor_timeout_s`` (on the caller's clock, ``now_ns``), the other
runs alone (thermal gets a black RGB frame, as GEM does with a dead sensor), reported in ``degraded_sensors``.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from glassbox import msg as gm
from glassbox.calibration import CameraModel, FusionCalibration, homography_thermal_to_rgb
from glassbox.classes import DETECTION_CLASSES, SEMANTIC_COLORS_RGB
from glassbox.stages.base import Stage, StageOutput
from glassbox.sync import ApproximateTimeSync, Pair, SyncConfig

BOX_COLORS_BGR = {"car": (255, 100, 30), "pedestrian": (40, 40, 230), "cyclist": (200, 40, 160)}


def label_colors(class_names: tuple[str, ...]) -> np.ndarray:
    """(K, 3) RGB colour per class id: semantic colours by name, a fixed palette otherwise."""
    from glassbox.classes import SEMANTIC_ID
    palette = [(0, 0, 0), (0, 200, 80), (230, 160, 0), (0, 120, 255), (200, 0, 200)]
    return np.array([SEMANTIC_COLORS_RGB[SEMANTIC_ID[n]] if n in SEMANTIC_ID else palette[i % len(palette)]
                     for i, n in enumerate(class_names)], np.uint8)


def segmentation_overlay(rgb: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                         alpha: float = 0.5) -> np.ndarray:
    """BGR image: the camera image blended with the class colours (``(1 - alpha) rgb + alpha colour``, rounded).

    All uint8 work in OpenCV (a 256-entry colour table looked up per pixel, one weighted sum), a few ms at 1280x720
    where float arrays of the whole image cost tens."""
    lut = np.zeros((256, 1, 3), np.uint8)
    colors = label_colors(class_names)[:, ::-1]
    lut[:, 0] = colors[np.minimum(np.arange(256), len(class_names) - 1)]
    labels8 = np.ascontiguousarray(np.clip(labels, 0, 255), np.uint8)
    colored = cv2.LUT(cv2.merge([labels8, labels8, labels8]), lut)
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb, np.uint8), cv2.COLOR_RGB2BGR)
    return cv2.addWeighted(bgr, 1.0 - alpha, colored, alpha, 0.0)


def draw_boxes_bgr(rgb: np.ndarray, boxes: np.ndarray, names: list[str], scores: np.ndarray) -> np.ndarray:
    """BGR image with labelled boxes."""
    img = np.ascontiguousarray(rgb[:, :, ::-1])
    for (x1, y1, x2, y2), name, score in zip(np.asarray(boxes).reshape(-1, 4), names, scores):
        color = BOX_COLORS_BGR.get(name, (0, 220, 255))
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
        cv2.putText(img, f"{name} {float(score):.2f}", (int(x1), max(int(y1) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, color, 1, cv2.LINE_AA)
    return img


class CameraStage(Stage):
    """A stage of camera inputs: keeps the latest camera model of each role (from CameraInfo messages)."""

    def __init__(self, pipeline: Any, factory: gm.MessageFactory):
        super().__init__(pipeline, factory)
        self.cameras: dict[str, CameraModel] = {}

    def camera_info(self, role: str, msg: Any) -> None:
        """The CameraInfo of the ``role`` camera (raises ``ConversionError`` for a malformed one)."""
        if role not in self.roles:
            raise KeyError(f"{self.capability} takes no '{role}' camera (roles: {', '.join(self.roles)})")
        self.cameras[role] = gm.camera_model_from_info(msg)

    def output_camera_info(self, shape: tuple[int, ...], header: Any) -> dict[str, Any]:
        """``{"camera_info": ...}`` of an output image of ``shape`` (H, W[, C]) when the input camera is known
        (and the capability publishes camera_info)."""
        model = self.cameras.get("rgb")
        if model is None or "camera_info" not in self.outputs:
            return {}
        return {"camera_info": gm.make_camera_info(self.factory, model.scaled(shape[1], shape[0]), header)}


class RefinerStage(CameraStage):
    capability = "refiner"

    def decode(self, role: str, msg: Any) -> tuple[np.ndarray, str]:
        return gm.decode_color(msg), gm.color_order(msg)

    def step(self, role: str, data: Any, header: Any, now_ns: int) -> StageOutput:
        rgb, enc = data
        result = self.pipeline(rgb)
        header = gm.copy_header(self.factory, header)
        refined = result.refined
        out = {"image_refined": gm.make_image(self.factory, refined[:, :, ::-1] if enc == "bgr8" else refined, enc,
                                              header),
               **self.output_camera_info(refined.shape, header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(self.factory, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp))


class SegmentationStage(CameraStage):
    capability = "segmentation"

    def __init__(self, pipeline: Any, factory: gm.MessageFactory, overlay_alpha: float = 0.5):
        super().__init__(pipeline, factory)
        self.alpha = overlay_alpha

    def decode(self, role: str, msg: Any) -> np.ndarray:
        return gm.decode_color(msg)

    def step(self, role: str, rgb: np.ndarray, header: Any, now_ns: int) -> StageOutput:
        result = self.pipeline(rgb)
        f = self.factory
        header = gm.copy_header(f, header)
        shown = result.refined if result.refined is not None else rgb
        out = {"labels": gm.make_image(f, np.ascontiguousarray(result.labels, np.uint8), "mono8", header),
               "overlay": gm.make_image(f, segmentation_overlay(shown, result.labels, result.class_names, self.alpha),
                                        "bgr8", header),
               "uncertainty_map": gm.make_image(f, np.ascontiguousarray(result.uncertainty, np.float32), "32FC1",
                                                header),
               **self.output_camera_info(result.labels.shape, header)}
        if result.epistemic is not None:
            out["epistemic_map"] = gm.make_image(f, np.ascontiguousarray(result.epistemic, np.float32), "32FC1",
                                                 header)
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp),
                           frame={"_labels": result.labels, "_class_names": result.class_names},
                           sample={"rgb": rgb, "labels": result.labels, "class_names": result.class_names})

    def latched_messages(self, stamp_ns: int) -> dict[str, Any]:
        """``label_info``: label value i of ``labels`` is class ``class_names[i]``."""
        header = gm.make_header(self.factory, stamp_ns, "")
        return {"label_info": gm.make_label_info(self.factory, self.pipeline.class_names, 0.0, header)}


_OTHER = {"rgb": "thermal", "thermal": "rgb"}
_STREAM = {"rgb": 0, "thermal": 1}


def fusion_uncertainty_parts(result: Any) -> dict[str, np.ndarray]:
    """DetectionUncertainties fields and the detections' pose covariance (px^2) of a sampled head's result
    (``glassbox.pipelines.fusion``); empty for a deterministic head. Stds are square roots of the variances
    summed over x and y (over w and h for the size), so that center_std^2 = aleatoric^2 + epistemic^2."""
    if result.score_epistemic is None:
        return {}
    var_a, var_e = result.centre_var_aleatoric.astype(np.float64), result.centre_var_epistemic.astype(np.float64)
    return {"score_aleatoric_nats": result.score_aleatoric, "score_epistemic_nats": result.score_epistemic,
            "center_std": np.sqrt((var_a + var_e).sum(axis=1)), "center_std_aleatoric": np.sqrt(var_a.sum(axis=1)),
            "center_std_epistemic": np.sqrt(var_e.sum(axis=1)), "size_std": np.sqrt(result.size_var.sum(axis=1)),
            "covariance": gm.centre_covariance_2d(var_a + var_e)}


class FusionStage(CameraStage):
    """RGB + thermal -> GEM. The thermal -> RGB homography is the pipeline's (the model card's, or the node's
    explicit ``homography_thermal_to_rgb``; ``fixed_homography`` keeps it whatever else is known) until the stage
    knows both cameras' intrinsics (their CameraInfo, else the calibration file's) and the extrinsic
    ``rgb_T_thermal`` (the calibration file's, else what the node looks up in TF and gives to
    :meth:`set_extrinsic`). From then on every frame uses the homography of the plane ``plane_distance_m`` in
    front of the thermal camera (0 = the infinite homography; ``glassbox.calibration`` says when each is exact)
    between the two images as received, their sizes included. ``info()["homography"]`` says where it came from.
    """

    capability = "fusion"

    def __init__(self, pipeline: Any, factory: gm.MessageFactory, sync: SyncConfig = SyncConfig(),
                 sensor_timeout_s: float = 0.5, calibration: FusionCalibration | None = None,
                 plane_distance_m: float = 20.0, fixed_homography: bool = False):
        super().__init__(pipeline, factory)
        self.sync = ApproximateTimeSync(sync)
        self.timeout_ns = int(round(sensor_timeout_s * 1e9))
        self.last_seen_ns: dict[str, int] = {}
        self.first_seen_ns: dict[str, int] = {}
        self.frames: dict[str, str] = {}              # role -> frame_id of its images (for TF look-ups)
        self.file_cameras = {} if calibration is None else \
            {r: m for r, m in (("rgb", calibration.rgb), ("thermal", calibration.thermal)) if m is not None}
        self.rgb_T_thermal = None if calibration is None else calibration.rgb_T_thermal
        self.extrinsic_source = "" if calibration is None else "calibration file"
        self.plane_distance_m = float(plane_distance_m)
        self.fixed_homography = fixed_homography
        self.homography_source = "homography_thermal_to_rgb parameter" if fixed_homography else "model card"

    def set_extrinsic(self, rgb_T_thermal: np.ndarray, source: str) -> None:
        """The 4x4 pose of the thermal optical frame in the RGB optical frame, and where it came from."""
        self.rgb_T_thermal, self.extrinsic_source = np.asarray(rgb_T_thermal, np.float64), source

    def update_homography(self, rgb_size: tuple[int, int], thermal_size: tuple[int, int]) -> None:
        """Set the pipeline's homography from intrinsics and extrinsic when all are known (sizes: (W, H))."""
        if self.fixed_homography or self.rgb_T_thermal is None:
            return
        origin: dict[str, str] = {}
        cams: dict[str, CameraModel] = {}
        for role in ("rgb", "thermal"):          # a calibrated camera_info first, else the calibration file's
            for source, known in (("camera_info", self.cameras), ("calibration file", self.file_cameras)):
                if role not in cams and role in known and known[role].calibrated:
                    cams[role], origin[role] = known[role], source
        if len(cams) < 2:
            return
        k_rgb, k_th = cams["rgb"].scaled(*rgb_size).k, cams["thermal"].scaled(*thermal_size).k
        self.pipeline.homography = homography_thermal_to_rgb(k_rgb, k_th, self.rgb_T_thermal, self.plane_distance_m)
        plane = f"plane at {self.plane_distance_m:g} m" if self.plane_distance_m > 0 else "infinite homography"
        self.homography_source = (f"intrinsics rgb: {origin['rgb']}, thermal: {origin['thermal']}; extrinsic: "
                                  f"{self.extrinsic_source}; {plane}")

    def latched_messages(self, stamp_ns: int) -> dict[str, Any]:
        """``label_info``: class index i of the model is ``DETECTION_CLASSES[i]`` (the detections' class_id)."""
        header = gm.make_header(self.factory, stamp_ns, "")
        return {"label_info": gm.make_label_info(self.factory, DETECTION_CLASSES, self.pipeline.cfg.score_threshold,
                                                 header)}

    def decode(self, role: str, msg: Any) -> np.ndarray:
        return gm.decode_color(msg) if role == "rgb" else gm.decode_thermal(msg)

    def silent(self, role: str, now_ns: int) -> bool:
        """``role`` is silent when it stopped for ``sensor_timeout_s``, or never came within that time of the
        other stream starting (so the first frames of a start-up wait for their partner instead of going alone)."""
        since = self.last_seen_ns.get(role, self.first_seen_ns.get(_OTHER[role]))
        return since is not None and now_ns - since > self.timeout_ns

    def step(self, role: str, image: np.ndarray, header: Any, now_ns: int) -> StageOutput | None:
        self.frames[role] = str(header.frame_id)
        self.last_seen_ns[role] = now_ns
        self.first_seen_ns.setdefault(role, now_ns)
        other = _OTHER[role]
        if self.silent(other, now_ns):
            self.state = f"{other} stream silent: {role} only"
            if role == "rgb":
                fallback = getattr(self.pipeline, "fallback", None)
                if fallback is not None:
                    self.state += f" (model {fallback.cfg.model_name})"
                return self.run(image, None, header, degraded=("thermal",))
            return self.run(np.zeros(image.shape[:2] + (3,), np.uint8), image, header, degraded=("rgb",))
        self.state = ""
        pair = self.sync.add(_STREAM[role], gm.stamp_to_ns(header.stamp), (image, header))
        return None if pair is None else self.fuse(pair)

    def fuse(self, pair: Pair) -> StageOutput:
        (rgb, header), (thermal, _) = pair.first, pair.second
        skew = abs(pair.skew_ns) * 1e-9
        out = self.run(rgb, thermal, header, sensor_age_s=(0.0, skew))
        out.frame["skew_ms"] = skew * 1e3
        out.sample = {"rgb": rgb, "thermal": thermal, "result": out.result}
        return out

    def info(self) -> dict[str, str]:
        return {"sync_dropped": f"rgb={self.sync.dropped[0]} thermal={self.sync.dropped[1]}",
                "homography": self.homography_source}

    def reset(self, role: str) -> None:
        self.sync.reset(_STREAM[role])

    def dropped(self) -> int:
        return sum(self.sync.dropped)

    def run(self, rgb: np.ndarray, thermal: np.ndarray | None, header_in: Any,
            sensor_age_s: tuple[float, float] = (0.0, 0.0), degraded: tuple[str, ...] = ()) -> StageOutput:
        if thermal is not None:
            self.update_homography((rgb.shape[1], rgb.shape[0]), (thermal.shape[1], thermal.shape[0]))
        result = self.pipeline(rgb, thermal)
        f = self.factory
        header = gm.copy_header(f, header_in)
        names = [result.class_names[int(c)] for c in result.classes]
        ids = [str(i) for i in range(len(names))]
        parts = fusion_uncertainty_parts(result)
        dets = gm.Detections2D(np.asarray(result.boxes, np.float64), names, np.asarray(result.scores, np.float64), ids,
                               parts.pop("covariance", None))
        weights = np.array([[result.rgb_share, 1.0 - result.rgb_share]])
        out = {"detections": gm.make_detection2d_array(f, dets, header),
               "fusion_weights": gm.make_fusion_weights(f, ["rgb", "thermal"], weights, header, sensor_age_s,
                                                        degraded),
               "overlay": gm.make_image(f, draw_boxes_bgr(rgb, result.boxes, names, result.scores), "bgr8", header),
               "detection_uncertainty": gm.make_detection_uncertainty_array(f, gm.DetectionUncertainties(
                   score_entropy_nats=np.asarray(result.uncertainty, np.float64), top_score=dets.scores, ids=ids,
                   **parts), header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp),
                           frame={"rgb_share": result.rgb_share, "_pred": result})
