"""Camera stages: Image(s) -> refiner / BiSeNet / GEM pipelines -> output messages with the input's header.

Each stage has ``__call__(msg...)`` for messages and ``run(arrays..., header)`` for arrays that are already
decoded (the replay chains the refiner's output into segmentation without re-encoding it).
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from glassbox import msgcodec as mc
from glassbox.classes import SEMANTIC_COLORS_RGB
from glassbox.stages.base import StageOutput

COLOR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8", "8UC3")
THERMAL_ENCODINGS = ("mono16", "16UC1", "mono8", "8UC1")
BOX_COLORS_BGR = {"car": (255, 100, 30), "pedestrian": (40, 40, 230), "cyclist": (200, 40, 160)}


def decode_rgb(msg: Any) -> np.ndarray:
    """Any 8-bit colour or mono image message -> (H, W, 3) RGB uint8."""
    if str(msg.encoding) not in COLOR_ENCODINGS:
        raise mc.ConversionError(f"unsupported camera encoding '{msg.encoding}' (expected one of "
                                 f"{', '.join(COLOR_ENCODINGS)})")
    return mc.image_to_rgb8(msg)


def decode_thermal(msg: Any) -> np.ndarray:
    """A thermal image message (16-bit raw or 8-bit) -> (H, W) uint16 or uint8."""
    if str(msg.encoding) not in THERMAL_ENCODINGS:
        raise mc.ConversionError(f"unsupported thermal encoding '{msg.encoding}' (expected one of "
                                 f"{', '.join(THERMAL_ENCODINGS)})")
    return np.ascontiguousarray(mc.image_to_array(msg))


def label_colors(class_names: tuple[str, ...]) -> np.ndarray:
    """(K, 3) RGB colour per class id: semantic colours by name, a fixed palette otherwise."""
    from glassbox.classes import SEMANTIC_ID
    palette = [(0, 0, 0), (0, 200, 80), (230, 160, 0), (0, 120, 255), (200, 0, 200)]
    return np.array([SEMANTIC_COLORS_RGB[SEMANTIC_ID[n]] if n in SEMANTIC_ID else palette[i % len(palette)]
                     for i, n in enumerate(class_names)], np.uint8)


def segmentation_overlay(rgb: np.ndarray, labels: np.ndarray, class_names: tuple[str, ...],
                         alpha: float = 0.5) -> np.ndarray:
    """BGR image: the camera image blended with the class colours."""
    colors = label_colors(class_names)[np.clip(labels, 0, len(class_names) - 1)]
    blend = (rgb.astype(np.float32) * (1 - alpha) + colors.astype(np.float32) * alpha).astype(np.uint8)
    return np.ascontiguousarray(blend[:, :, ::-1])


def draw_boxes_bgr(rgb: np.ndarray, boxes: np.ndarray, names: list[str], scores: np.ndarray) -> np.ndarray:
    """BGR image with labelled boxes."""
    img = np.ascontiguousarray(rgb[:, :, ::-1])
    for (x1, y1, x2, y2), name, score in zip(np.asarray(boxes).reshape(-1, 4), names, scores):
        color = BOX_COLORS_BGR.get(name, (0, 220, 255))
        cv2.rectangle(img, (int(x1), int(y1)), (int(x2), int(y2)), color, 2)
        cv2.putText(img, f"{name} {float(score):.2f}", (int(x1), max(int(y1) - 3, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4, color, 1, cv2.LINE_AA)
    return img


class RefinerStage:
    inputs = {"image": "sensor_msgs/msg/Image"}
    outputs = {"image_refined": "sensor_msgs/msg/Image", "entropy": "glassbox_msgs/msg/EntropyProfile"}

    def __init__(self, pipeline: Any, factory: mc.MessageFactory):
        self.pipeline, self.factory = pipeline, factory

    def __call__(self, msg: Any) -> StageOutput:
        return self.run(decode_rgb(msg), msg.header, str(msg.encoding))

    def run(self, rgb: np.ndarray, header_in: Any, encoding: str = "rgb8") -> StageOutput:
        result = self.pipeline(rgb)
        header = mc.copy_header(self.factory, header_in)
        refined = result.refined
        enc = "bgr8" if encoding in ("bgr8", "bgra8") else "rgb8"
        out = {"image_refined": mc.make_image(self.factory, refined[:, :, ::-1] if enc == "bgr8" else refined, enc,
                                              header)}
        if result.entropy is not None:
            out["entropy"] = mc.make_entropy_profile(self.factory, result.entropy, header)
        return StageOutput(out, result)


class SegmentationStage:
    inputs = {"image": "sensor_msgs/msg/Image"}
    outputs = {"labels": "sensor_msgs/msg/Image", "overlay": "sensor_msgs/msg/Image",
               "uncertainty": "sensor_msgs/msg/Image", "entropy": "glassbox_msgs/msg/EntropyProfile"}

    def __init__(self, pipeline: Any, factory: mc.MessageFactory, overlay_alpha: float = 0.5):
        self.pipeline, self.factory, self.alpha = pipeline, factory, overlay_alpha

    def __call__(self, msg: Any) -> StageOutput:
        return self.run(decode_rgb(msg), msg.header)

    def run(self, rgb: np.ndarray, header_in: Any) -> StageOutput:
        result = self.pipeline(rgb)
        f = self.factory
        header = mc.copy_header(f, header_in)
        shown = result.refined if result.refined is not None else rgb
        out = {"labels": mc.make_image(f, np.ascontiguousarray(result.labels, np.uint8), "mono8", header),
               "overlay": mc.make_image(f, segmentation_overlay(shown, result.labels, result.class_names, self.alpha),
                                        "bgr8", header),
               "uncertainty": mc.make_image(f, np.ascontiguousarray(result.uncertainty, np.float32), "32FC1", header)}
        if result.entropy is not None:
            out["entropy"] = mc.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result)


class FusionStage:
    inputs = {"rgb": "sensor_msgs/msg/Image", "thermal": "sensor_msgs/msg/Image"}
    outputs = {"detections": "vision_msgs/msg/Detection2DArray", "fusion_weights": "glassbox_msgs/msg/FusionWeights",
               "overlay": "sensor_msgs/msg/Image", "uncertainty": "glassbox_msgs/msg/DetectionUncertaintyArray",
               "entropy": "glassbox_msgs/msg/EntropyProfile"}

    def __init__(self, pipeline: Any, factory: mc.MessageFactory):
        self.pipeline, self.factory = pipeline, factory

    def __call__(self, rgb_msg: Any, thermal_msg: Any | None, sensor_age_s: tuple[float, float] = (0.0, 0.0),
                 degraded: tuple[str, ...] = ()) -> StageOutput:
        thermal = decode_thermal(thermal_msg) if thermal_msg is not None else None
        return self.run(decode_rgb(rgb_msg), thermal, rgb_msg.header, sensor_age_s, degraded)

    def run(self, rgb: np.ndarray, thermal: np.ndarray | None, header_in: Any,
            sensor_age_s: tuple[float, float] = (0.0, 0.0), degraded: tuple[str, ...] = ()) -> StageOutput:
        result = self.pipeline(rgb, thermal)
        f = self.factory
        header = mc.copy_header(f, header_in)
        names = [result.class_names[int(c)] for c in result.classes]
        ids = [str(i) for i in range(len(names))]
        dets = mc.Detections2D(np.asarray(result.boxes, np.float64), names, np.asarray(result.scores, np.float64), ids)
        weights = np.array([[result.rgb_share, 1.0 - result.rgb_share]])
        out = {"detections": mc.make_detection2d_array(f, dets, header),
               "fusion_weights": mc.make_fusion_weights(f, ["rgb", "thermal"], weights, header, sensor_age_s,
                                                        degraded),
               "overlay": mc.make_image(f, draw_boxes_bgr(rgb, result.boxes, names, result.scores), "bgr8", header),
               "uncertainty": mc.make_detection_uncertainty_array(f, mc.DetectionUncertainties(
                   score_entropy_nats=np.asarray(result.uncertainty, np.float64), top_score=dets.scores, ids=ids),
                   header)}
        if result.entropy is not None:
            out["entropy"] = mc.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result)
