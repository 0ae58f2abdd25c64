"""RGB-thermal fusion pipeline: an RGB image and a thermal image in, 2D detections, fusion weights, entropy out.

Chain: thermal warped into the RGB image with the configured homography (thermal pixels -> RGB pixels; a
missing thermal frame is a black one, i.e. a dead sensor) -> both resized to the model's input size ->
optional refiner on the resized RGB image -> GEM (eager PyTorch or ONNX Runtime) -> CenterNet decoding (3x3 peaks, top-k, score
threshold; no NMS) -> boxes scaled back to RGB pixels. Per detection, the uncertainty is the binary entropy of
its score; per frame, the reliability weights ``w_rgb``, ``w_thermal`` and the RGB display share
``w_rgb / (w_rgb + w_thermal)``. 16-bit thermal frames are scaled to 8 bits with a 1-99 percentile stretch
(the synthetic camera's automatic gain control) before use.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from glassbox.classes import DETECTION_CLASSES
from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile, ProbeConfig
from glassbox.vision.centernet import decode, score_entropy
from glassbox.vision.export import ModelRunner, card_model_path, entropy_profile, load_state
from glassbox.vision.gem import Gem, GemConfig

OUTPUTS = ("heatmap", "size", "offset", "w_rgb", "w_thermal")


class FusionPipelineError(ValueError):
    """Bad input images or configuration."""


@dataclass(frozen=True)
class FusionPipelineConfig:
    backend: Literal["torch", "onnxruntime"] = "torch"
    model_path: str = ""
    model_name: str = "gem"
    providers: tuple[str, ...] = ("cpu",)
    device: str = "cpu"
    threads: int = 0
    input_size: tuple[int, int] = (160, 128)                 # (width, height); divisible by 8
    homography_thermal_to_rgb: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major
    score_threshold: float = 0.3
    max_detections: int = 100
    model: GemConfig = field(default_factory=GemConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    probe_layers: tuple[str, ...] = ()                       # empty: every feature map of the graph

    def __post_init__(self) -> None:
        if self.input_size[0] % 8 or self.input_size[1] % 8:
            raise ValueError(f"input_size must be divisible by 8, got {self.input_size}")
        if len(self.homography_thermal_to_rgb) != 9:
            raise ValueError("homography_thermal_to_rgb needs 9 numbers (row-major 3x3)")


@dataclass
class FusionResult:
    boxes: np.ndarray                   # (N, 4) float32 xyxy in RGB pixels
    scores: np.ndarray                  # (N,) float32
    classes: np.ndarray                 # (N,) int64 into class_names
    uncertainty: np.ndarray             # (N,) float32 score entropy (nats)
    w_rgb: float
    w_thermal: float
    rgb_share: float
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]
    class_names: tuple[str, ...] = DETECTION_CLASSES


def thermal_to_uint8(thermal: np.ndarray) -> np.ndarray:
    if thermal.dtype == np.uint8:
        return thermal
    t = thermal.astype(np.float32)
    lo, hi = np.percentile(t, [1.0, 99.0])
    return np.clip((t - lo) * (255.0 / max(hi - lo, 1e-6)) + 0.5, 0, 255).astype(np.uint8)


class FusionPipeline:
    """``pipeline(rgb (H, W, 3) uint8, thermal (Ht, Wt) uint8/uint16 or None) -> FusionResult``."""

    def __init__(self, cfg: FusionPipelineConfig = FusionPipelineConfig(), refiner=None) -> None:
        self.cfg, self.refiner = cfg, refiner
        self.homography = np.asarray(cfg.homography_thermal_to_rgb, np.float64).reshape(3, 3)
        model = None
        if cfg.backend == "torch":
            model_cfg = cfg.model
            if cfg.model_path:
                saved, _ = load_state(cfg.model_path)
                if saved:
                    model_cfg = from_dict(GemConfig, saved, source=cfg.model_path)
            model = Gem(model_cfg)
        self.runner = ModelRunner(cfg.backend, model, cfg.model_path, ["rgb", "thermal"], OUTPUTS, cfg.providers,
                                  cfg.device, cfg.threads)
        self._frame = 0

    @classmethod
    def from_card(cls, card_path: str | Path, backend: str = "onnxruntime", refiner=None, **overrides
                  ) -> FusionPipeline:
        """Build from a model card (``extra.model_config``, ``extra.input_size``, ``extra.score_threshold`` and
        the training camera pair's ``extra.homography_thermal_to_rgb``, which a deployment overrides with its
        own calibration); sha256 checked."""
        card, path = card_model_path(card_path, backend)
        extra = card.extra
        model = from_dict(GemConfig, extra.get("model_config", {}), f"{card_path}:model_config")
        cfg = FusionPipelineConfig(backend=backend, model_path=str(path), model=model,
                                   input_size=tuple(extra.get("input_size", (160, 128))),
                                   score_threshold=float(extra.get("score_threshold", 0.3)),
                                   homography_thermal_to_rgb=tuple(float(v) for v in np.ravel(
                                       extra.get("homography_thermal_to_rgb", np.eye(3)))))
        return cls(replace(cfg, **overrides), refiner=refiner)

    def prepare(self, rgb: np.ndarray, thermal: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs (1, 3, h, w) and (1, 1, h, w) in [0, 1] at ``input_size``."""
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise FusionPipelineError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        h, w = rgb.shape[:2]
        iw, ih = self.cfg.input_size
        scale = np.diag([iw / w, ih / h, 1.0])
        small = cv2.resize(rgb, (iw, ih), interpolation=cv2.INTER_AREA)
        if thermal is None:
            th = np.zeros((ih, iw), np.uint8)
        else:
            if thermal.ndim != 2:
                raise FusionPipelineError(f"expected a single-channel thermal image, got shape {thermal.shape}")
            th = cv2.warpPerspective(thermal_to_uint8(thermal), scale @ self.homography, (iw, ih),
                                     flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return ((small.astype(np.float32) / 255.0).transpose(2, 0, 1)[None],
                (th.astype(np.float32) / 255.0)[None, None])

    def __call__(self, rgb: np.ndarray, thermal: np.ndarray | None) -> FusionResult:
        t0 = time.perf_counter()
        x_rgb, x_th = self.prepare(rgb, thermal)
        t1 = time.perf_counter()
        if self.refiner is not None:
            small = (x_rgb[0].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
            x_rgb = (self.refiner(small).refined.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        t2 = time.perf_counter()
        out, feats = self.runner.run(x_rgb, x_th)
        t3 = time.perf_counter()
        profile = entropy_profile({k: v for k, v in feats.items() if k not in ("w_rgb", "w_thermal")},
                                  self.cfg.probe_layers, self.cfg.probe, self._frame, self.cfg.model_name)
        t4 = time.perf_counter()
        boxes, scores, classes = decode(out["heatmap"][0], out["size"][0], out["offset"][0], Gem.STRIDE,
                                        self.cfg.max_detections, self.cfg.score_threshold)
        h, w = rgb.shape[:2]
        iw, ih = self.cfg.input_size
        boxes = boxes * np.array([w / iw, h / ih, w / iw, h / ih], np.float32)
        w_r, w_t = float(out["w_rgb"][0]), float(out["w_thermal"][0])
        share = w_r / (w_r + w_t) if w_r + w_t > 1e-12 else 0.5
        t5 = time.perf_counter()
        self._frame += 1
        timings = {"pre": t1 - t0, "refiner": t2 - t1, "network": t3 - t2, "entropy": t4 - t3, "post": t5 - t4,
                   "total": t5 - t0}
        return FusionResult(boxes, scores, classes, score_entropy(scores), w_r, w_t, share, profile,
                            {k: 1e3 * v for k, v in timings.items()})
