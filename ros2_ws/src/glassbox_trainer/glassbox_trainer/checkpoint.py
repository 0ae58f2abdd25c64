"""Seeding, RNG states and atomic files: what makes a run killed at any moment resume to the same numbers.

The checkpoint (``last.pt``) holds the model, the step module (teacher, SRM dictionaries), optimiser, scheduler,
AMP scaler, the Python/numpy/torch RNG states of every rank, the step, the best metric and the config, in
types ``torch.load(weights_only=True)`` accepts.
"""
from __future__ import annotations

import os
import random
from collections.abc import Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from glassbox_trainer.errors import TrainError

CHECKPOINT = "last.pt"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "cached_gaussian": float(np_state[4])},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` returned."""
    py = state["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


@contextmanager
def preserved_rng():
    """Run a block (evaluation, logging) without changing any RNG stream of the training loop."""
    state = rng_state()
    try:
        yield
    finally:
        set_rng_state(state)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, fsync, then rename over ``path``."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def load_checkpoint(path: Path, world: int) -> dict[str, Any]:
    """The checkpoint at ``path``, checked to come from a run with ``world`` processes."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["world_size"] != world:
        raise TrainError(f"{path} was written by {ckpt['world_size']} process(es); resume with the same "
                         f"number (got {world})")
    return ckpt


def load_state_dict_file(path: str | Path) -> dict[str, Tensor]:
    """Model weights from a trainer checkpoint (its ``"model"`` entry) or a plain state dict file."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"weights file not found: {path}")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        return obj["model"]
    return obj
