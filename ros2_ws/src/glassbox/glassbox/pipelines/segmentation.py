"""Segmentation pipeline: an RGB image in, class ids, per-pixel predictive entropy, entropy profile, timings out.

Chain: resize to the model's input size (area interpolation) -> optional refiner (a ``RefinerPipeline`` in
front; it is resolution-agnostic, and at the network's input size it costs a fraction of what it costs on the
full frame) -> BiSeNet (eager PyTorch or ONNX Runtime) -> softmax over classes -> class ids (argmax)
and per-pixel entropy of the softmax (nats; for a hinge-trained model the softmax of its raw scores) ->
resized back to the image (nearest for ids, bilinear for entropy). The entropy profile comes from the named
feature maps (hooks-free: ``forward_features`` under torch, extra graph outputs under ONNX Runtime).

A card with a sampled classifier (``model.head``: ``variational`` / ``mc_dropout``) is fed its fixed noise index
(``head_noise``); its ``logits`` are the log of the mean softmax over the samples, so the per-pixel entropy is the
predictive entropy, and ``epistemic`` is its epistemic part (mutual information between label and network
sample, nats), resized like the entropy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import cv2
import numpy as np

from glassbox.classes import BINARY_CLASSES, SEMANTIC_CLASSES
from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile
from glassbox.heads import DenseLogits, SampledDenseLogits
from glassbox.pipelines.common import ModelPipeline, PipelineConfig, milliseconds
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig, bisenet_index_noise


class SegmentationPipelineError(ValueError):
    """Bad input image or configuration."""


@dataclass(frozen=True)
class SegmentationPipelineConfig(PipelineConfig):
    model_name: str = "bisenet"
    input_size: tuple[int, int] = (160, 128)          # (width, height) the network sees; divisible by 32
    model: BiSeNetConfig = field(default_factory=BiSeNetConfig)
    class_names: tuple[str, ...] = ()                  # empty: binary or semantic table by class count
    probe_layers: tuple[str, ...] = ("spatial", "context3", "context4", "context5", "fused")
    decision_bias: tuple[float, ...] = ()              # per-class offsets of the label decision (the card's)

    def __post_init__(self) -> None:
        if self.input_size[0] % 32 or self.input_size[1] % 32:
            raise ValueError(f"input_size must be divisible by 32, got {self.input_size}")


@dataclass
class SegmentationResult:
    labels: np.ndarray                  # (H, W) uint8 class ids
    uncertainty: np.ndarray             # (H, W) float32 predictive entropy (nats)
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]
    class_names: tuple[str, ...] = ()
    refined: np.ndarray | None = None   # the refiner's output (at the network's input size) when one runs
    epistemic: np.ndarray | None = None  # (H, W) float32 epistemic part of the entropy (a sampled classifier)


def softmax_entropy(logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(K, h, w) logits -> (argmax ids (h, w), predictive entropy (h, w) in nats)."""
    z = logits - logits.max(axis=0, keepdims=True)
    e = np.exp(z)
    p = e / e.sum(axis=0, keepdims=True)
    ent = -(p * np.log(np.clip(p, 1e-12, None))).sum(axis=0)
    return logits.argmax(axis=0), ent.astype(np.float32)


class SegmentationPipeline(ModelPipeline):
    """``pipeline(rgb (H, W, 3) uint8) -> SegmentationResult``; optionally with a refiner in front."""

    config_cls = SegmentationPipelineConfig
    error = SegmentationPipelineError

    def __init__(self, cfg: SegmentationPipelineConfig = SegmentationPipelineConfig(), refiner=None) -> None:
        self.cfg, self.refiner = cfg, refiner
        self.model_cfg = cfg.model
        w, h = cfg.input_size
        example = {"image": np.zeros((1, cfg.model.in_channels, h, w), np.float32)}
        self.sampled = cfg.model.head != "deterministic"
        if self.sampled:                                   # the model's fixed noise index, fed to either backend
            example["head_noise"] = bisenet_index_noise(cfg.model).numpy()
        head = SampledDenseLogits if self.sampled else DenseLogits
        self.runtime = self._open(cfg, self._build, list(example), head._fields, example)
        k = self.model_cfg.num_classes
        self.class_names = cfg.class_names or (BINARY_CLASSES if k == 2 else SEMANTIC_CLASSES[:k])
        self._frame = 0

    def _build(self, saved: dict) -> BiSeNet:
        if saved:
            self.model_cfg = from_dict(BiSeNetConfig, saved, source=self.cfg.model_path)
        return BiSeNet(self.model_cfg)

    def __call__(self, rgb: np.ndarray) -> SegmentationResult:
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise SegmentationPipelineError(f"expected an (H, W, 3) uint8 RGB image, got {rgb.shape} {rgb.dtype}")
        t0 = time.perf_counter()
        h, w = rgb.shape[:2]
        small = cv2.resize(rgb, self.cfg.input_size, interpolation=cv2.INTER_AREA)
        t1 = time.perf_counter()
        refined = None
        if self.refiner is not None:
            small = refined = self.refiner(small).refined
        t2 = time.perf_counter()
        x = (small.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        inputs = {"image": x, "head_noise": self.example["head_noise"]} if self.sampled else {"image": x}
        inference = self.infer(inputs)
        out = inference.outputs
        t3 = time.perf_counter()
        profile = self.entropy(inference, self._frame)
        t4 = time.perf_counter()
        ids, ent = softmax_entropy(out["logits"][0])
        if self.cfg.decision_bias:                          # the IoU decision rule; the entropy is the model's
            bias = np.asarray(self.cfg.decision_bias, np.float32)[:, None, None]
            ids = (out["logits"][0] + bias).argmax(axis=0)
        labels = cv2.resize(ids.astype(np.uint8), (w, h), interpolation=cv2.INTER_NEAREST)
        uncertainty = cv2.resize(ent, (w, h), interpolation=cv2.INTER_LINEAR)
        epistemic = cv2.resize(np.ascontiguousarray(out["epistemic"][0, 0], np.float32), (w, h),
                               interpolation=cv2.INTER_LINEAR) if self.sampled else None
        t5 = time.perf_counter()
        self._frame += 1
        timings = milliseconds((t0, t1, t2, t3, t4, t5), ("pre", "refiner", "network", "entropy", "post"))
        return SegmentationResult(labels, uncertainty, profile, timings, self.class_names, refined, epistemic)
