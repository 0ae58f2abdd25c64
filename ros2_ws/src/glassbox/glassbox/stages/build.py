"""Build a capability's pipeline and stage from a shipped model card (the nodes and the replay share this)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from glassbox import capabilities
from glassbox.models.card import ModelCard, load_card
from glassbox.msg import MessageFactory
from glassbox.stages.base import probe_config_for_card


class StageBuildError(ValueError):
    """A capability cannot be built from the given card."""


def default_models_dir() -> Path:
    """``$GLASSBOX_MODELS`` if set, else the repository's ``models/`` folder."""
    env = os.environ.get("GLASSBOX_MODELS")
    return Path(env) if env else Path(__file__).resolve().parents[5] / "models"


def _capability(name: str) -> capabilities.Capability:
    try:
        return capabilities.get(name)
    except capabilities.CapabilityError as exc:
        raise StageBuildError(str(exc)) from None


def card_path_for(capability: str, card: str | Path = "", models_dir: str | Path | None = None) -> Path:
    """``card`` if given, else the capability's default card in ``models_dir`` (default: the shipped models)."""
    default = _capability(capability).default_card
    return Path(card) if card else Path(models_dir or default_models_dir()) / default


def build_pipeline(capability: str, card_path: str | Path, backend: str = "onnxruntime",
                   providers: Sequence[str] = ("cpu",), device: str = "cpu", threads: int = 0,
                   entropy_enabled: bool = True, entropy_every_n: int = 1, **overrides: Any) -> tuple[Any, ModelCard]:
    """The pipeline of ``capability`` from its model card (sha256 checked by the pipeline's ``from_card``);
    entropy profiles are named after the card, whose reference profile the monitor holds."""
    pipeline_cls = _capability(capability).load_pipeline()
    card = load_card(card_path)
    probe = probe_config_for_card(card, enabled=entropy_enabled, every_n=entropy_every_n)
    pipeline = pipeline_cls.from_card(card_path, backend=backend, providers=tuple(providers), device=device,
                                      threads=threads, probe=probe, model_name=card.name, **overrides)
    return pipeline, card


def build_stage(capability: str, pipeline: Any, factory: MessageFactory, **stage_options: Any) -> Any:
    """The message-level stage of ``capability`` around ``pipeline``."""
    return _capability(capability).load_stage()(pipeline, factory, **stage_options)
