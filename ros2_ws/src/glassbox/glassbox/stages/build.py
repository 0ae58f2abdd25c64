"""Build a capability's pipeline and stage from a shipped model card (the nodes and the replay share this)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from glassbox.models.card import ModelCard, load_card
from glassbox.msg import MessageFactory
from glassbox.stages.base import probe_config_for_card

#: capability -> default model card file name in the models folder
DEFAULT_CARDS = {"lidar": "spi_lidar.card.yaml", "refiner": "refiner.card.yaml",
                 "segmentation": "bisenet.card.yaml", "fusion": "gem.card.yaml"}
CAPABILITIES = tuple(DEFAULT_CARDS)


class StageBuildError(ValueError):
    """A capability cannot be built from the given card."""


def default_models_dir() -> Path:
    """``$GLASSBOX_MODELS`` if set, else the repository's ``models/`` folder."""
    env = os.environ.get("GLASSBOX_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[5] / "models"


def card_path_for(capability: str, card: str | Path = "", models_dir: str | Path | None = None) -> Path:
    if capability not in DEFAULT_CARDS:
        raise StageBuildError(f"unknown capability '{capability}' (known: {', '.join(CAPABILITIES)})")
    if card:
        return Path(card)
    return Path(models_dir or default_models_dir()) / DEFAULT_CARDS[capability]


def build_pipeline(capability: str, card_path: str | Path, backend: str = "onnxruntime",
                   providers: Sequence[str] = ("cpu",), device: str = "cpu", threads: int = 0,
                   entropy_enabled: bool = True, entropy_every_n: int = 1, **overrides: Any) -> tuple[Any, ModelCard]:
    """The pipeline of ``capability`` from its model card (sha256 checked by the pipeline's ``from_card``)."""
    card_path = Path(card_path)
    card = load_card(card_path)
    probe = probe_config_for_card(card, enabled=entropy_enabled, every_n=entropy_every_n)
    common = dict(backend=backend, providers=tuple(providers), device=device, threads=threads, probe=probe,
                  model_name=card.name)   # profiles are named after the card, whose reference the monitor holds
    if capability == "lidar":
        from glassbox.pipelines.lidar import LidarDetectionPipeline as cls
    elif capability == "refiner":
        from glassbox.pipelines.refiner import RefinerPipeline as cls
    elif capability == "segmentation":
        from glassbox.pipelines.segmentation import SegmentationPipeline as cls
    elif capability == "fusion":
        from glassbox.pipelines.fusion import FusionPipeline as cls
    else:
        raise StageBuildError(f"unknown capability '{capability}' (known: {', '.join(CAPABILITIES)})")
    if hasattr(cls, "from_card"):
        return cls.from_card(card_path, **common, **overrides), card
    return cls(_camera_config(capability, card_path, card, common, overrides)), card


def _model_file(card_path: Path, card: ModelCard, backend: str) -> Path:
    """The verified model file for ``backend``: the ONNX graph, or the ``.pt`` weights for torch."""
    from glassbox.models.card import verify_model_file, verify_weights_file
    if backend == "onnxruntime":
        return verify_model_file(card, card_path.parent / card.file)
    if not card.weights_file:
        raise StageBuildError(f"{card_path}: the card names no .pt weights file for the torch backend")
    return verify_weights_file(card, card_path.parent / card.weights_file)


def _input_size(card: ModelCard, name: str) -> tuple[int, int] | None:
    shape = (card.inputs.get(name) or {}).get("shape")
    return (int(shape[3]), int(shape[2])) if shape and len(shape) == 4 else None


def _camera_config(capability: str, card_path: Path, card: ModelCard, common: dict, overrides: dict) -> Any:
    """A camera pipeline's config from its card: model file, input size, classes and probed feature maps."""
    from dataclasses import fields, replace
    model_path = _model_file(card_path, card, common["backend"])
    if capability == "refiner":
        from glassbox.pipelines.refiner import RefinerPipelineConfig as cfg_cls
        size = None
    elif capability == "segmentation":
        from glassbox.pipelines.segmentation import SegmentationPipelineConfig as cfg_cls
        size = _input_size(card, "image")
    else:
        from glassbox.pipelines.fusion import FusionPipelineConfig as cfg_cls
        size = _input_size(card, "rgb")
    cfg = cfg_cls(model_path=str(model_path), **common)
    known = {f.name for f in fields(cfg_cls)}
    extra = {k: (tuple(float(x) for x in np.ravel(v)) if k == "homography_thermal_to_rgb" else
                 tuple(v) if isinstance(v, list) else v)
             for k, v in card.extra.items() if k in known and not isinstance(v, dict)}
    if size is not None and "input_size" in known:
        extra["input_size"] = size
    if card.classes and "class_names" in known:
        extra["class_names"] = tuple(card.classes)
    if card.features and "probe_layers" in known:
        extra["probe_layers"] = tuple(card.features)
    bad = [k for k in overrides if k not in known]
    if bad:
        raise StageBuildError(f"{cfg_cls.__name__} has no setting '{bad[0]}'")
    return replace(cfg, **extra, **overrides)


def build_stage(capability: str, pipeline: Any, factory: MessageFactory) -> Any:
    from glassbox.stages.camera import FusionStage, RefinerStage, SegmentationStage
    from glassbox.stages.lidar import LidarStage
    return {"lidar": LidarStage, "refiner": RefinerStage, "segmentation": SegmentationStage,
            "fusion": FusionStage}[capability](pipeline, factory)
