"""Camera stages: Image(s) -> refiner / BiSeNet / GEM pipelines -> output messages with the input's header.

The fusion stage owns RGB-thermal pairing (``glassbox.sync.ApproximateTimeSync``) and the sensor-timeout
fallback: when one stream has been silent for ``sensor_timeout_s`` (on the caller's clock, ``now_ns``), the other
runs alone (thermal gets a black RGB frame, as GEM does with a dead sensor), reported in ``degraded_sensors``.
"""
from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from glassbox import msg as gm
from glassbox.classes import SEMANTIC_COLORS_RGB
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


class RefinerStage(Stage):
    capability = "refiner"

    def decode(self, role: str, msg: Any) -> tuple[np.ndarray, str]:
        return gm.decode_color(msg), str(msg.encoding)

    def step(self, role: str, data: Any, header: Any, now_ns: int) -> StageOutput:
        rgb, encoding = data
        result = self.pipeline(rgb)
        header = gm.copy_header(self.factory, header)
        refined = result.refined
        enc = "bgr8" if encoding in ("bgr8", "bgra8") else "rgb8"
        out = {"image_refined": gm.make_image(self.factory, refined[:, :, ::-1] if enc == "bgr8" else refined, enc,
                                              header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(self.factory, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp))


class SegmentationStage(Stage):
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
               "uncertainty": gm.make_image(f, np.ascontiguousarray(result.uncertainty, np.float32), "32FC1", header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp),
                           frame={"_labels": result.labels, "_class_names": result.class_names},
                           sample={"rgb": rgb, "labels": result.labels, "class_names": result.class_names})


_OTHER = {"rgb": "thermal", "thermal": "rgb"}
_STREAM = {"rgb": 0, "thermal": 1}


class FusionStage(Stage):
    capability = "fusion"

    def __init__(self, pipeline: Any, factory: gm.MessageFactory, sync: SyncConfig = SyncConfig(),
                 sensor_timeout_s: float = 0.5):
        super().__init__(pipeline, factory)
        self.sync = ApproximateTimeSync(sync)
        self.timeout_ns = int(round(sensor_timeout_s * 1e9))
        self.last_seen_ns: dict[str, int] = {}
        self.first_seen_ns: dict[str, int] = {}

    def decode(self, role: str, msg: Any) -> np.ndarray:
        return gm.decode_color(msg) if role == "rgb" else gm.decode_thermal(msg)

    def silent(self, role: str, now_ns: int) -> bool:
        """``role`` is silent when it stopped for ``sensor_timeout_s``, or never came within that time of the
        other stream starting (so the first frames of a start-up wait for their partner instead of going alone)."""
        since = self.last_seen_ns.get(role, self.first_seen_ns.get(_OTHER[role]))
        return since is not None and now_ns - since > self.timeout_ns

    def step(self, role: str, image: np.ndarray, header: Any, now_ns: int) -> StageOutput | None:
        self.last_seen_ns[role] = now_ns
        self.first_seen_ns.setdefault(role, now_ns)
        other = _OTHER[role]
        if self.silent(other, now_ns):
            self.state = f"{other} stream silent: {role} only"
            if role == "rgb":
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
        return {"sync_dropped": f"rgb={self.sync.dropped[0]} thermal={self.sync.dropped[1]}"}

    def reset(self, role: str) -> None:
        self.sync.reset(_STREAM[role])

    def dropped(self) -> int:
        return sum(self.sync.dropped)

    def run(self, rgb: np.ndarray, thermal: np.ndarray | None, header_in: Any,
            sensor_age_s: tuple[float, float] = (0.0, 0.0), degraded: tuple[str, ...] = ()) -> StageOutput:
        result = self.pipeline(rgb, thermal)
        f = self.factory
        header = gm.copy_header(f, header_in)
        names = [result.class_names[int(c)] for c in result.classes]
        ids = [str(i) for i in range(len(names))]
        dets = gm.Detections2D(np.asarray(result.boxes, np.float64), names, np.asarray(result.scores, np.float64), ids)
        weights = np.array([[result.rgb_share, 1.0 - result.rgb_share]])
        out = {"detections": gm.make_detection2d_array(f, dets, header),
               "fusion_weights": gm.make_fusion_weights(f, ["rgb", "thermal"], weights, header, sensor_age_s,
                                                        degraded),
               "overlay": gm.make_image(f, draw_boxes_bgr(rgb, result.boxes, names, result.scores), "bgr8", header),
               "uncertainty": gm.make_detection_uncertainty_array(f, gm.DetectionUncertainties(
                   score_entropy_nats=np.asarray(result.uncertainty, np.float64), top_score=dets.scores, ids=ids),
                   header)}
        if result.entropy is not None:
            out["entropy"] = gm.make_entropy_profile(f, result.entropy, header)
        return StageOutput(out, result, gm.stamp_to_ns(header.stamp),
                           frame={"rgb_share": result.rgb_share, "_pred": result})
