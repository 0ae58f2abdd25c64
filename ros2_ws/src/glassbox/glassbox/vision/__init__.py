"""Camera models: the pseudo-active refiner, BiSeNet segmentation and GEM RGB-thermal fusion detection.

``MODELS`` maps a model name to ``(model class, config class)``; ``build_model(name, cfg)`` builds one from a
config dataclass or a plain mapping (unknown keys are errors).
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from glassbox.config import from_dict
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig, BiSeNetError
from glassbox.vision.gem import Gem, GemConfig, GemError
from glassbox.vision.refiner import Refiner, RefinerConfig, RefinerError

MODELS: dict[str, tuple[type[nn.Module], type]] = {
    "refiner": (Refiner, RefinerConfig),
    "bisenet": (BiSeNet, BiSeNetConfig),
    "gem": (Gem, GemConfig),
}


def build_model(name: str, cfg: Any = None) -> nn.Module:
    """Build the registered model ``name`` from its config dataclass, a mapping, or None (defaults)."""
    if name not in MODELS:
        raise KeyError(f"unknown vision model '{name}' (known: {', '.join(MODELS)})")
    cls, cfg_cls = MODELS[name]
    if cfg is None:
        cfg = cfg_cls()
    elif isinstance(cfg, Mapping):
        cfg = from_dict(cfg_cls, dict(cfg), source=f"vision model '{name}'")
    elif not isinstance(cfg, cfg_cls):
        raise TypeError(f"model '{name}' expects a {cfg_cls.__name__}, got {type(cfg).__name__}")
    return cls(cfg)


__all__ = ["MODELS", "BiSeNet", "BiSeNetConfig", "BiSeNetError", "Gem", "GemConfig", "GemError", "Refiner",
           "RefinerConfig", "RefinerError", "build_model"]
