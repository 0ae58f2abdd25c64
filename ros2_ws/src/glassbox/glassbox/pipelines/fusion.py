"""RGB-thermal fusion pipeline: an RGB image and a thermal image in, 2D detections, fusion weights, entropy out.

Chain: thermal warped into the RGB image with the configured homography (thermal pixels -> RGB pixels; a
missing thermal frame is a black one, i.e. a dead sensor) -> both resized to the model's input size ->
optional refiner on the resized RGB image -> GEM (eager PyTorch or ONNX Runtime) -> CenterNet decoding (3x3 peaks, top-k, score
threshold; no NMS) -> boxes scaled back to RGB pixels. Per detection, the uncertainty is the binary entropy of
its score; per frame, the reliability weights ``w_rgb``, ``w_thermal`` and the RGB display share
``w_rgb / (w_rgb + w_thermal)``. 16-bit thermal frames are scaled to 8 bits with a 1-99 percentile stretch
(the synthetic camera's automatic gain control) before use.

*RGB-only fallback.* A fusion network fed a black thermal frame is weaker than a network trained on RGB alone
(the shipped ``gem`` card's ``report.thermal_absent`` against ``gem_rgb``), so a card may name an RGB-only card
in ``rgb_fallback_card`` (a path relative to the card's folder). With thermal absent (``thermal=None``) the
pipeline then runs that model instead, with the same runtime, score threshold, detection limit and probe, and
``FusionResult.model`` names it.

*Sampled heads* (``head: variational``, the shipped ``gem``): the model's fixed noise index (an ``mc_dropout``
graph's ``head_noise`` input; a ``variational`` graph's moments are turned into the samples at the detections,
``glassbox.vision.gem.peak_parts``) makes both backends give the same detections; the scores are Platt-calibrated with the
card's ``score_calibration`` and every detection carries the aleatoric / epistemic parts of its score entropy
and of its centre variance (scaled by the card's ``centre_variance_scale``, fitted so that 95% of true centres of
held-out frames fall inside the 2-sigma ellipse), and its size variance, in RGB pixels.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import cv2
import numpy as np

from glassbox.classes import DETECTION_CLASSES
from glassbox.config import from_dict
from glassbox.entropy import EntropyProfile
from glassbox.metrics.calibration import platt_apply
from glassbox.pipelines.common import ModelPipeline, PipelineConfig, milliseconds
from glassbox.vision.centernet import decode, score_entropy
from glassbox.vision.gem import Gem, GemConfig, gem_head_type, index_noise, noise_in_graph, peak_parts


class FusionPipelineError(ValueError):
    """Bad input images or configuration."""


@dataclass(frozen=True)
class FusionPipelineConfig(PipelineConfig):
    model_name: str = "gem"
    input_size: tuple[int, int] = (160, 128)                 # (width, height); divisible by 8
    homography_thermal_to_rgb: tuple[float, ...] = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)  # row-major
    score_threshold: float = 0.3
    max_detections: int = 100
    rgb_fallback_card: str = ""                              # RGB-only card run when thermal is absent; "" = none
    score_calibration: tuple[float, float] = (1.0, 0.0)      # Platt (a, b): sigmoid(a logit(s) + b)
    centre_variance_scale: float = 1.0                       # factor of a sampled head's centre variance
    model: GemConfig = field(default_factory=GemConfig)

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
    model: str = ""                     # the model that ran: the card's, or its RGB-only fallback
    # A sampled head's parts (None otherwise): score entropy (N,) nats; centre and size (w, h) variances (N, 2)
    # in RGB pixels^2, the centre's scaled by the card's centre_variance_scale.
    score_aleatoric: np.ndarray | None = None
    score_epistemic: np.ndarray | None = None
    centre_var_aleatoric: np.ndarray | None = None
    centre_var_epistemic: np.ndarray | None = None
    size_var: np.ndarray | None = None


def thermal_to_uint8(thermal: np.ndarray) -> np.ndarray:
    if thermal.dtype == np.uint8:
        return thermal
    t = thermal.astype(np.float32)
    lo, hi = np.percentile(t, [1.0, 99.0])
    return np.clip((t - lo) * (255.0 / max(hi - lo, 1e-6)) + 0.5, 0, 255).astype(np.uint8)


class FusionPipeline(ModelPipeline):
    """``pipeline(rgb (H, W, 3) uint8, thermal (Ht, Wt) uint8/uint16 or None) -> FusionResult``. From a card, the
    training camera pair's ``extra.homography_thermal_to_rgb`` is the default, which a deployment overrides with
    its own calibration."""

    config_cls = FusionPipelineConfig
    error = FusionPipelineError

    def __init__(self, cfg: FusionPipelineConfig = FusionPipelineConfig(), refiner=None) -> None:
        self.cfg, self.refiner = cfg, refiner
        self.homography = np.asarray(cfg.homography_thermal_to_rgb, np.float64).reshape(3, 3)
        w, h = cfg.input_size
        example = {"rgb": np.zeros((1, cfg.model.rgb_channels, h, w), np.float32),
                   "thermal": np.zeros((1, cfg.model.thermal_channels, h, w), np.float32)}
        self.sampled = cfg.model.head != "deterministic"
        self.noise = index_noise(cfg.model).numpy() if self.sampled else None   # the model's fixed index
        if noise_in_graph(cfg.model):                      # fed to either backend
            example["head_noise"] = self.noise
        self.runtime = self._open(cfg, self._build, list(example), gem_head_type(cfg.model)._fields, example)
        self._frame = 0
        self.fallback = self._open_fallback(cfg, refiner) if cfg.rgb_fallback_card else None

    def _open_fallback(self, cfg: FusionPipelineConfig, refiner) -> FusionPipeline:
        """The RGB-only pipeline of ``cfg.rgb_fallback_card``, on this pipeline's runtime settings."""
        path = Path(cfg.model_path).parent / cfg.rgb_fallback_card
        if not path.is_file():
            raise FusionPipelineError(f"rgb_fallback_card: {path} does not exist")
        fallback = FusionPipeline.from_card(path, backend=cfg.backend, providers=cfg.providers, device=cfg.device,
                                            threads=cfg.threads, probe=cfg.probe, refiner=refiner,
                                            warmup_runs=cfg.warmup_runs, provider_options=cfg.provider_options,
                                            rgb_fallback_card="")
        if fallback.cfg.model.fusion != "rgb":
            raise FusionPipelineError(f"rgb_fallback_card: {path} is a '{fallback.cfg.model.fusion}' model, "
                                      "not an RGB-only one")
        return fallback

    def warmup(self, runs: int = 1) -> None:
        super().warmup(runs)
        if self.fallback is not None:
            self.fallback.warmup(runs)

    def _build(self, saved: dict) -> Gem:
        return Gem(from_dict(GemConfig, saved, source=self.cfg.model_path) if saved else self.cfg.model)

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
        if thermal is None and self.fallback is not None:
            self.fallback.cfg = replace(self.fallback.cfg, score_threshold=self.cfg.score_threshold,
                                        max_detections=self.cfg.max_detections, probe=self.cfg.probe)
            return self.fallback(rgb, None)
        t0 = time.perf_counter()
        x_rgb, x_th = self.prepare(rgb, thermal)
        t1 = time.perf_counter()
        if self.refiner is not None:
            small = (x_rgb[0].transpose(1, 2, 0) * 255.0 + 0.5).astype(np.uint8)
            x_rgb = (self.refiner(small).refined.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        t2 = time.perf_counter()
        inputs = {"rgb": x_rgb, "thermal": x_th}
        if noise_in_graph(self.cfg.model):
            inputs["head_noise"] = self.noise
        inference = self.infer(inputs)
        out = inference.outputs
        t3 = time.perf_counter()
        profile = self.entropy(inference, self._frame)
        t4 = time.perf_counter()
        stride = x_rgb.shape[2] // out["heatmap"].shape[2]            # 4 or 8, as the card's model was built
        boxes, scores, classes, cells = decode(out["heatmap"][0], out["size"][0], out["offset"][0], stride,
                                               self.cfg.max_detections, self.cfg.score_threshold, cells=True)
        h, w = rgb.shape[:2]
        iw, ih = self.cfg.input_size
        boxes = boxes * np.array([w / iw, h / ih, w / iw, h / ih], np.float32)
        a, b = self.cfg.score_calibration
        if (a, b) != (1.0, 0.0):
            scores = platt_apply(scores, a, b).astype(np.float32)
        parts = self._sampled_parts(out, classes, cells, stride * np.array([w / iw, h / ih])) if self.sampled else {}
        w_r, w_t = float(out["w_rgb"][0]), float(out["w_thermal"][0])
        share = w_r / (w_r + w_t) if w_r + w_t > 1e-12 else 0.5
        t5 = time.perf_counter()
        self._frame += 1
        timings = milliseconds((t0, t1, t2, t3, t4, t5), ("pre", "refiner", "network", "entropy", "post"))
        return FusionResult(boxes, scores, classes, score_entropy(scores), w_r, w_t, share, profile, timings,
                            model=self.cfg.model_name, **parts)

    def _sampled_parts(self, out, classes: np.ndarray, cells: np.ndarray, px: np.ndarray) -> dict[str, np.ndarray]:
        """A sampled head's per-detection parts at the peak cells; ``px``: (x, y) RGB pixels per output cell."""
        ys, xs = cells[:, 0], cells[:, 1]
        px2 = np.square(px)
        at = peak_parts(self.cfg.model, {k: v[0] for k, v in out.items()}, classes, ys, xs, self.noise)
        var_a, var_e = at["box_var_aleatoric"].T, at["box_var_epistemic"].T                          # (N, 4)
        k = self.cfg.centre_variance_scale
        return {"score_aleatoric": at["score_aleatoric"].astype(np.float32),
                "score_epistemic": at["score_epistemic"].astype(np.float32),
                "centre_var_aleatoric": (k * var_a[:, 2:] * px2).astype(np.float32),
                "centre_var_epistemic": (k * var_e[:, 2:] * px2).astype(np.float32),
                "size_var": ((var_a[:, :2] + var_e[:, :2]) * px2).astype(np.float32)}
