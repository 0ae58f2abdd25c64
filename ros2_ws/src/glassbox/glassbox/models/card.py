"""Model cards: what a shipped model file is, how it was made, and how to check it is that file.

A card is a YAML file next to its model (``models/<name>.card.yaml`` beside ``models/<name>.onnx``). It records
the file's sha256, the input spec (names, shapes, dtype and any normalisation), the output and feature-map
names, the classes, validation metrics, the training command, config and data, and a reference entropy
profile (per-layer mean and standard deviation over validation inputs) that the entropy monitor compares live
profiles against. Model files are only ever loaded from local paths after :func:`verify_model_file`.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from glassbox.config import ConfigError, from_dict, to_dict


class ModelIntegrityError(RuntimeError):
    """A model file does not match the sha256 recorded in its card (or is missing)."""


class ModelCardError(ValueError):
    """A model card cannot be read or is malformed."""


@dataclass(frozen=True)
class EntropyReference:
    """Per-layer entropy (nats) of the model on validation inputs: mean and standard deviation per layer."""

    estimator: str
    estimator_params: dict[str, str]
    layer_names: tuple[str, ...]
    mean_nats: tuple[float, ...]
    std_nats: tuple[float, ...]
    num_inputs: int

    def __post_init__(self) -> None:
        if not len(self.layer_names) == len(self.mean_nats) == len(self.std_nats):
            raise ValueError(f"layer_names, mean_nats and std_nats differ in length: {len(self.layer_names)}, "
                             f"{len(self.mean_nats)}, {len(self.std_nats)}")


@dataclass(frozen=True)
class ModelCard:
    """Everything known about one shipped model file (see the module docstring)."""

    name: str
    task: str
    file: str                                   # model file name, relative to the card's folder
    sha256: str
    inputs: dict = field(default_factory=dict)   # name -> {"shape": [...], "dtype": "float32", ...}
    outputs: tuple[str, ...] = ()
    features: tuple[str, ...] = ()
    classes: tuple[str, ...] = ()
    metrics: dict[str, float] = field(default_factory=dict)
    training: dict = field(default_factory=dict)  # command, data, config, seed, steps, ...
    entropy_reference: EntropyReference | None = None
    weights_file: str = ""
    weights_sha256: str = ""
    parity_max_abs_diff: float | None = None
    extra: dict = field(default_factory=dict)
    created_utc: str = ""
    glassbox_version: str = ""

    def __post_init__(self) -> None:
        if len(self.sha256) != 64 or any(c not in "0123456789abcdef" for c in self.sha256):
            raise ValueError(f"sha256 must be 64 lower-case hex digits, got {self.sha256!r}")


def sha256_file(path: str | Path, chunk_bytes: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_bytes):
            h.update(chunk)
    return h.hexdigest()


def load_card(path: str | Path) -> ModelCard:
    """Read a model card YAML file."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ModelCardError(f"model card not found: {path}") from None
    except yaml.YAMLError as exc:
        raise ModelCardError(f"{path}: not valid YAML: {exc}") from None
    try:
        return from_dict(ModelCard, data, source=str(path))
    except ConfigError as exc:
        raise ModelCardError(str(exc)) from None


def save_card(card: ModelCard, path: str | Path) -> Path:
    """Write ``card`` as YAML (temporary file, then rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(yaml.safe_dump(to_dict(card), sort_keys=False, default_flow_style=None, width=120))
    os.replace(tmp, path)
    return path


def verify_model_file(card_path_or_card: str | Path | ModelCard, model_path: str | Path | None = None) -> Path:
    """Check ``model_path`` (default: the card's ``file`` beside the card) against the card's sha256.

    Returns the verified path; raises :class:`ModelIntegrityError` naming the file and both hashes.
    """
    if isinstance(card_path_or_card, ModelCard):
        card, base = card_path_or_card, Path(".")
    else:
        card, base = load_card(card_path_or_card), Path(card_path_or_card).parent
    path = Path(model_path) if model_path is not None else base / card.file
    if not path.is_file():
        raise ModelIntegrityError(f"model file {path} (card '{card.name}') not found")
    actual = sha256_file(path)
    if actual != card.sha256:
        raise ModelIntegrityError(f"model file {path} does not match its card '{card.name}': expected sha256 "
                                  f"{card.sha256}, got {actual}")
    return path


def verify_weights_file(card: ModelCard, path: str | Path) -> Path:
    """Check the card's ``.pt`` weights at ``path``: it must exist and match ``weights_sha256`` when the card
    records one. Returns the path; raises :class:`ModelIntegrityError` naming the file and both hashes."""
    path = Path(path)
    if not path.is_file():
        raise ModelIntegrityError(f"weights file {path} (card '{card.name}') not found")
    if card.weights_sha256:
        actual = sha256_file(path)
        if actual != card.weights_sha256:
            raise ModelIntegrityError(f"weights file {path} does not match its card '{card.name}': expected "
                                      f"sha256 {card.weights_sha256}, got {actual}")
    return path
