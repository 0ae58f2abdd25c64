"""Build a capability's pipeline and stage from a shipped model card (the nodes and the replay share this)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glassbox.models.card import ModelCard, load_card
from glassbox.msgcodec import MessageFactory
from glassbox.pipelines import FusionPipeline, LidarDetectionPipeline, RefinerPipeline, SegmentationPipeline
from glassbox.stages.base import probe_config_for_card

#: capability -> pipeline class (every one has ``from_card``)
PIPELINES = {"lidar": LidarDetectionPipeline, "refiner": RefinerPipeline, "segmentation": SegmentationPipeline,
             "fusion": FusionPipeline}
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
    """The pipeline of ``capability`` from its model card (sha256 checked by the pipeline's ``from_card``);
    entropy profiles are named after the card, whose reference profile the monitor holds."""
    if capability not in PIPELINES:
        raise StageBuildError(f"unknown capability '{capability}' (known: {', '.join(CAPABILITIES)})")
    card = load_card(card_path)
    probe = probe_config_for_card(card, enabled=entropy_enabled, every_n=entropy_every_n)
    pipeline = PIPELINES[capability].from_card(card_path, backend=backend, providers=tuple(providers), device=device,
                                               threads=threads, probe=probe, model_name=card.name, **overrides)
    return pipeline, card


def build_stage(capability: str, pipeline: Any, factory: MessageFactory) -> Any:
    from glassbox.stages.camera import FusionStage, RefinerStage, SegmentationStage
    from glassbox.stages.lidar import LidarStage
    return {"lidar": LidarStage, "refiner": RefinerStage, "segmentation": SegmentationStage,
            "fusion": FusionStage}[capability](pipeline, factory)
