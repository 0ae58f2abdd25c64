"""Refiner pipeline: an RGB image in, the refined image, an entropy profile and timings out.

The refiner (``glassbox.vision.refiner``) takes the image scaled to [0, 1] with eager PyTorch or ONNX Runtime
(``glassbox.runtime``; the exported graph also returns the named feature maps, so both backends give the entropy
profile); it predicts its correction on a fixed low-resolution resample (the model's ``grid``) and applies it to
the full-resolution image, so its cost hardly grows with the camera resolution. The output is clipped to [0, 1]
and returned as uint8. The same object can sit in front of the segmentation and fusion pipelines (their
``refiner`` argument), which is how the refined image reaches them; there it runs on the image already resized to
the network's input size.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile
from glassbox.heads import RefinedImage
from glassbox.pipelines.common import ModelPipeline, PipelineConfig, milliseconds
from glassbox.runtime import Inference
from glassbox.vision.refiner import Refiner, RefinerConfig


class RefinerPipelineError(ValueError):
    """The input image is not an RGB uint8 (or float) image, or the backend cannot be built."""


@dataclass(frozen=True)
class RefinerPipelineConfig(PipelineConfig):
    """``model_path`` empty = an identity refiner (torch only). ``warmup_size``: (width, height) of the warm-up
    run; the refiner itself takes any size."""

    model_name: str = "refiner"
    model: RefinerConfig = field(default_factory=RefinerConfig)
    probe_layers: tuple[str, ...] = ("stage1", "stage2", "g_conv1", "g_conv2", "g_deconv1", "gate")
    warmup_size: tuple[int, int] = (160, 128)


@dataclass
class RefinerResult:
    refined: np.ndarray                 # (H, W, 3) uint8
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]


class RefinerPipeline(ModelPipeline):
    """``pipeline(rgb (H, W, 3) uint8) -> RefinerResult``."""

    config_cls = RefinerPipelineConfig
    error = RefinerPipelineError

    def __init__(self, cfg: RefinerPipelineConfig = RefinerPipelineConfig()) -> None:
        self.cfg = cfg
        w, h = cfg.warmup_size
        example = {"image": np.zeros((1, cfg.model.in_channels, h, w), np.float32)}
        self.runtime = self._open(cfg, self._build, ["image"], RefinedImage._fields, example)
        self._frame = 0

    def _build(self, saved: dict) -> Refiner:
        return Refiner(from_dict(RefinerConfig, saved, source=self.cfg.model_path) if saved else self.cfg.model)

    def refine_float(self, x: np.ndarray) -> tuple[np.ndarray, Inference]:
        """(1, 3, H, W) float32 in [0, 1] -> refined (1, 3, H, W) float32 (unclipped) and the whole inference
        (feature maps or in-graph entropy)."""
        inference = self.infer({"image": x})
        return inference.outputs["refined"], inference

    def __call__(self, rgb: np.ndarray) -> RefinerResult:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise RefinerPipelineError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
        t0 = time.perf_counter()
        scale = 255.0 if rgb.dtype == np.uint8 else 1.0
        x = (rgb.astype(np.float32) / scale).transpose(2, 0, 1)[None]
        t1 = time.perf_counter()
        y, inference = self.refine_float(x)
        t2 = time.perf_counter()
        profile = self.entropy(inference, self._frame)
        t3 = time.perf_counter()
        refined = (np.clip(y[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        t4 = time.perf_counter()
        self._frame += 1
        return RefinerResult(refined, profile,
                             milliseconds((t0, t1, t2, t3, t4), ("pre", "network", "entropy", "post")))
