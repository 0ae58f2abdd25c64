"""Refiner pipeline: an RGB image in, the refined image, an entropy profile and timings out.

The refiner (``glassbox.vision.refiner``) runs on the full-resolution image scaled to [0, 1] with eager
PyTorch or ONNX Runtime (the exported graph also returns the named feature maps, so both backends give the
entropy profile); the output is clipped to [0, 1] and returned as uint8. The same object can sit in front of
the segmentation and fusion pipelines (their ``refiner`` argument), which is how the refined image reaches them.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np

from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile, ProbeConfig
from glassbox.vision.export import ModelRunner, card_model_path, entropy_profile, load_state
from glassbox.vision.refiner import Refiner, RefinerConfig


class RefinerPipelineError(ValueError):
    """The input image is not an RGB uint8 (or float) image."""


@dataclass(frozen=True)
class RefinerPipelineConfig:
    """``model_path``: ``.pt`` (torch) or ``.onnx`` (onnxruntime); empty = an identity refiner (torch only)."""

    backend: Literal["torch", "onnxruntime"] = "torch"
    model_path: str = ""
    model_name: str = "refiner"
    providers: tuple[str, ...] = ("cpu",)
    device: str = "cpu"
    threads: int = 0
    model: RefinerConfig = field(default_factory=RefinerConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    probe_layers: tuple[str, ...] = ("stage1", "stage2", "g_conv1", "g_conv2", "g_deconv1", "gate")


@dataclass
class RefinerResult:
    refined: np.ndarray                 # (H, W, 3) uint8
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]


class RefinerPipeline:
    """``pipeline(rgb (H, W, 3) uint8) -> RefinerResult``."""

    def __init__(self, cfg: RefinerPipelineConfig = RefinerPipelineConfig()) -> None:
        self.cfg = cfg
        model = None
        if cfg.backend == "torch":
            model_cfg = cfg.model
            if cfg.model_path:
                saved, _ = load_state(cfg.model_path)
                if saved:
                    model_cfg = from_dict(RefinerConfig, saved, source=cfg.model_path)
            model = Refiner(model_cfg)
        self.runner = ModelRunner(cfg.backend, model, cfg.model_path, ["image"], ["refined"], cfg.providers,
                                  cfg.device, cfg.threads)
        self._frame = 0

    @classmethod
    def from_card(cls, card_path: str | Path, backend: str = "onnxruntime", **overrides) -> RefinerPipeline:
        """Build from a model card (``extra.model_config``); the model file is checked by sha256."""
        card, path = card_model_path(card_path, backend)
        model = from_dict(RefinerConfig, card.extra.get("model_config", {}), f"{card_path}:model_config")
        return cls(replace(RefinerPipelineConfig(backend=backend, model_path=str(path), model=model), **overrides))

    def refine_float(self, x: np.ndarray) -> tuple[np.ndarray, dict]:
        """(1, 3, H, W) float32 in [0, 1] -> refined (1, 3, H, W) float32 (unclipped) and feature maps."""
        out, feats = self.runner.run(x)
        return out["refined"], feats

    def __call__(self, rgb: np.ndarray) -> RefinerResult:
        if rgb.ndim != 3 or rgb.shape[2] != 3:
            raise RefinerPipelineError(f"expected an (H, W, 3) RGB image, got shape {rgb.shape}")
        t0 = time.perf_counter()
        scale = 255.0 if rgb.dtype == np.uint8 else 1.0
        x = (rgb.astype(np.float32) / scale).transpose(2, 0, 1)[None]
        t1 = time.perf_counter()
        y, feats = self.refine_float(x)
        t2 = time.perf_counter()
        profile = entropy_profile(feats, self.cfg.probe_layers, self.cfg.probe, self._frame, self.cfg.model_name)
        t3 = time.perf_counter()
        refined = (np.clip(y[0].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        t4 = time.perf_counter()
        self._frame += 1
        timings = {"pre": t1 - t0, "network": t2 - t1, "entropy": t3 - t2, "post": t4 - t3, "total": t4 - t0}
        return RefinerResult(refined, profile, {k: 1e3 * v for k, v in timings.items()})
