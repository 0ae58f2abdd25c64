"""LiDAR detection pipeline: xyzi points in, 3D detections, range image, entropy profile and timings out.

One object owns the whole chain: spherical projection (numpy) -> SPI network (eager PyTorch or ONNX Runtime,
chosen by ``backend`` in the same config) -> decoding with rotated BEV NMS (numpy). The entropy profile is built
from the network's named feature maps with ``glassbox.entropy.profile_from_features``: from
``forward_features`` under torch, from the extra outputs of the exported graph under ONNX Runtime, so both
backends give the same profile. ``export_spi_onnx`` writes that graph (forward outputs followed by the feature
maps; batch, height and width dynamic).

A shipped model is opened from its card (``models/spi_lidar.card.yaml``): the card's ``extra`` section carries the
projection, network and decoding configs the model was trained with, and the file's sha256 is checked.
"""
from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor, nn

from glassbox.config import from_dict, to_dict
from glassbox.entropy import EntropyProfile, ProbeConfig, profile_from_features
from glassbox.lidar.decode import DecodeConfig, Detections3D, decode
from glassbox.lidar.projection import ProjectionConfig, RangeImage, normalise, project_points
from glassbox.lidar.spi import HEAD_OUTPUTS, SpiConfig, build_model

INPUT_NAME = "range_image"


class LidarPipelineError(RuntimeError):
    """The pipeline cannot be built (model file, backend, or configs that do not fit together)."""


@dataclass(frozen=True)
class LidarDetectionConfig:
    """Everything the pipeline needs. ``model_path``: ``.pt`` state dict (torch) or ``.onnx`` (onnxruntime);
    empty = freshly initialised weights (tests and benchmarks only). ``architecture``: the network the torch
    backend builds (``glassbox.lidar.build_model``); ``model_name``: the name its entropy profiles carry (the
    model card's, whose reference profile the monitor holds). ``probe_layers``: feature maps in the entropy
    profile (empty = all). ``threads``: intra-op threads of either backend (0 = library default)."""

    backend: Literal["torch", "onnxruntime"] = "torch"
    model_path: str = ""
    model_name: str = "spi"
    architecture: str = "spi"
    providers: tuple[str, ...] = ("cpu",)
    device: str = "cpu"
    threads: int = 0
    projection: ProjectionConfig = field(default_factory=ProjectionConfig)
    model: SpiConfig = field(default_factory=SpiConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    probe: ProbeConfig = field(default_factory=ProbeConfig)
    probe_layers: tuple[str, ...] = ()


@dataclass
class LidarDetectionResult:
    """Detections in the LiDAR frame, the projected scan, the entropy profile (None when not probed this frame)
    and the time of each stage in milliseconds (``project``, ``network``, ``entropy``, ``decode``, ``total``)."""

    detections: Detections3D
    range_image: RangeImage
    entropy: EntropyProfile | None
    timings_ms: dict[str, float]


class _FeatureGraph(nn.Module):
    """forward(x) -> (heatmap, offset, size, yaw, *feature maps): the layout of the exported graph."""

    def __init__(self, model: nn.Module, feature_names: Sequence[str]):
        super().__init__()
        self.model = model
        self.feature_names = list(feature_names)

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        feats = self.model.forward_features(x)
        out = self.model.forward_head(feats)
        return tuple(out[k] for k in HEAD_OUTPUTS) + tuple(feats[n] for n in self.feature_names)


def export_spi_onnx(model: nn.Module, path: str | Path, height: int, width: int,
                    feature_names: Sequence[str] | None = None, opset: int = 17) -> dict:
    """Export an SPI model to ONNX with its feature maps as extra outputs; returns the model card's spec.

    Batch, height and width are dynamic axes (height and width must stay multiples of the network stride).
    """
    from glassbox.export import export_onnx

    model = model.eval().cpu()
    x = torch.zeros(1, model.cfg.in_channels, height, width)
    with torch.no_grad():
        feats = model.forward_features(x)
    names = list(feats) if feature_names is None else list(feature_names)
    outputs = list(HEAD_OUTPUTS) + names
    dyn = {n: {0: "batch", 2: "height", 3: "width"} for n in [INPUT_NAME, *outputs]}
    export_onnx(_FeatureGraph(model, names), (x,), path, [INPUT_NAME], outputs, dynamic_axes=dyn, opset=opset)
    return {"inputs": {INPUT_NAME: {"shape": [1, model.cfg.in_channels, height, width], "dtype": "float32"}},
            "outputs": list(HEAD_OUTPUTS), "features": names}


def load_weights(path: str | Path) -> dict[str, Tensor]:
    """A state dict from a ``.pt`` file: a plain state dict or a checkpoint holding one under ``model``."""
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]
    if not isinstance(state, dict):
        raise LidarPipelineError(f"{path}: expected a state dict, got {type(state).__name__}")
    return state


class LidarDetectionPipeline:
    """``pipeline(points (N, >=4) xyzi[, ring]) -> LidarDetectionResult``."""

    def __init__(self, cfg: LidarDetectionConfig):
        if cfg.model.in_channels != len(cfg.projection.channels):
            raise LidarPipelineError(f"the network takes {cfg.model.in_channels} channels but the projection "
                                     f"makes {len(cfg.projection.channels)} ({', '.join(cfg.projection.channels)})")
        self.cfg = cfg
        self._frame = 0
        self.session = None
        self.model: nn.Module | None = None
        if cfg.backend == "torch":
            model = build_model(cfg.architecture, cfg.model)
            if cfg.model_path:
                if not cfg.model_path.endswith(".pt"):
                    raise LidarPipelineError(f"the torch backend loads a .pt state dict, got {cfg.model_path}")
                model.load_state_dict(load_weights(cfg.model_path))
            self.model = model.eval().to(cfg.device)
        elif cfg.backend == "onnxruntime":
            from glassbox.export import OrtSession

            if not cfg.model_path.endswith(".onnx"):
                raise LidarPipelineError(f"the onnxruntime backend needs an .onnx model_path, got {cfg.model_path!r}")
            self.session = OrtSession(cfg.model_path, providers=cfg.providers, intra_op_threads=cfg.threads)
            missing = [n for n in HEAD_OUTPUTS if n not in self.session.output_names]
            if missing:
                raise LidarPipelineError(f"{cfg.model_path}: graph lacks output '{missing[0]}'")
        else:
            raise LidarPipelineError(f"unknown backend '{cfg.backend}' (known: torch, onnxruntime)")

    @classmethod
    def from_card(cls, card_path: str | Path, backend: str = "onnxruntime", **overrides) -> LidarDetectionPipeline:
        """Build from a model card: configs from its ``extra`` section, the model file checked by sha256."""
        from glassbox.models.card import load_card, verify_model_file, verify_weights_file

        card_path = Path(card_path)
        card = load_card(card_path)
        extra = card.extra
        for key in ("projection", "model_config", "decode"):
            if key not in extra:
                raise LidarPipelineError(f"{card_path}: card has no '{key}' in its extra section")
        if backend == "onnxruntime":
            model_path = verify_model_file(card, card_path.parent / card.file)
        else:
            if not card.weights_file:
                raise LidarPipelineError(f"{card_path}: card names no .pt weights file for the torch backend")
            model_path = verify_weights_file(card, card_path.parent / card.weights_file)
        cfg = LidarDetectionConfig(
            backend=backend, model_path=str(model_path),
            projection=from_dict(ProjectionConfig, extra["projection"], f"{card_path}:projection"),
            model=from_dict(SpiConfig, extra["model_config"], f"{card_path}:model_config"),
            decode=from_dict(DecodeConfig, extra["decode"], f"{card_path}:decode"))
        return cls(replace(cfg, **overrides))

    # ------------------------------------------------------------------------------------------ stages
    def project(self, points: np.ndarray, ring: np.ndarray | None = None) -> tuple[RangeImage, np.ndarray]:
        """Range image and the normalised network input (1, C, H, W)."""
        image = project_points(points, self.cfg.projection, ring=ring)
        return image, normalise(image)[None]

    def network(self, x: np.ndarray) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray | Tensor]]:
        """Head outputs of one scan (batch index 0) as numpy, and the named feature maps."""
        if self.session is not None:
            out = self.session.run({INPUT_NAME: x.astype(np.float32, copy=False)})
            heads = {k: out[k][0] for k in HEAD_OUTPUTS}
            feats = {k: v for k, v in out.items() if k not in HEAD_OUTPUTS}
            return heads, feats
        with torch.no_grad():
            t = torch.from_numpy(np.ascontiguousarray(x)).to(self.cfg.device)
            feats = self.model.forward_features(t)
            out = self.model.forward_head(feats)
        return {k: out[k][0].cpu().numpy() for k in HEAD_OUTPUTS}, feats

    def entropy(self, feats: dict) -> EntropyProfile | None:
        probe = self.cfg.probe
        if not probe.enabled or self._frame % probe.every_n:
            return None
        names = self.cfg.probe_layers or tuple(feats)
        missing = [n for n in names if n not in feats]
        if missing:
            raise LidarPipelineError(f"probe layer '{missing[0]}' is not a feature map (have: {', '.join(feats)})")
        return profile_from_features({n: feats[n] for n in names}, probe, model_name=self.cfg.model_name)

    def __call__(self, points: np.ndarray, ring: np.ndarray | None = None) -> LidarDetectionResult:
        t0 = time.perf_counter()
        image, x = self.project(points, ring)
        t1 = time.perf_counter()
        heads, feats = self.network(x)
        t2 = time.perf_counter()
        profile = self.entropy(feats)
        t3 = time.perf_counter()
        dets = decode(heads, image.xyz, image.mask, self.cfg.decode)
        t4 = time.perf_counter()
        self._frame += 1
        timings = {"project": t1 - t0, "network": t2 - t1, "entropy": t3 - t2, "decode": t4 - t3, "total": t4 - t0}
        return LidarDetectionResult(detections=dets, range_image=image, entropy=profile,
                                    timings_ms={k: 1e3 * v for k, v in timings.items()})


def card_extra(projection: ProjectionConfig, model: SpiConfig, decode_cfg: DecodeConfig) -> dict:
    """The ``extra`` entries of an SPI model card (plain types), read back by ``from_card``."""
    return {"projection": to_dict(projection), "model_config": to_dict(model), "decode": to_dict(decode_cfg)}
