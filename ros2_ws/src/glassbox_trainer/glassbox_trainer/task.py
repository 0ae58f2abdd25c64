"""The task interface: what the trainer needs from a model family, and how a task is found by name.

A *task* packages one model family for the trainer: how to build the model (default, teacher or student size),
the train and validation datasets, batching, the task loss, evaluation, the Eloss layer groups and ONNX export.
The engine (``train.py``) knows nothing else about the model, and a task never has a training loop of its own:
every model is trained by ``glassbox-train --config config/train/<name>.yaml``. A task lives in
``glassbox_trainer/tasks/<name>.py`` and is found by its name, or anywhere importable as ``package.module:Class``.

Conventions the engine relies on:

- ``loss(model, batch)`` returns ``(total, terms, outputs)``. ``total`` is the scalar task loss (mean over the
  batch, so that data-parallel gradient averaging equals one process with the whole batch); ``terms`` are its
  parts as floats for the log; ``outputs`` holds at least ``"features"`` (the ordered dict returned by
  ``model.forward_features``) and ``"logits"`` (class or dense outputs, ``(B, C)`` or ``(B, C, H, W)``, used by
  logit distillation). Optional keys: ``"valid"`` (``(B, H, W)`` bool mask of pixels that count for dense
  distillation) and ``"labels"`` (``(B,)`` or ``(B, H, W)`` int64 class targets, ``ignore_index`` = -1 or 255,
  used by the teacher-free MOSAKD term).
- ``evaluate(model, loader)`` is called under ``torch.no_grad()`` with the model in eval mode and returns
  metrics; ``metric`` names the headline key (higher is better).
- ``export(model, path)`` writes an ONNX file whose outputs are the model's forward outputs followed by the
  feature maps (named as in ``forward_features``), and returns the input spec for the model card:
  ``{"inputs": {name: {"shape": [...], "dtype": "float32", ...}}, "outputs": [names], "features": [names]}``
  (extra keys, e.g. normalisation constants, are kept in the card). ``glassbox_trainer.export.export_with_features``
  does exactly this for a model whose ``forward`` takes its inputs positionally.
- ``example_inputs(batch)`` returns the model's positional inputs in a batch, in the order of the ONNX inputs
  (used for the export's parity check and the card's reference entropy profile).

Optional hooks (looked up with ``getattr``; the export works without them):

- ``card_task``: the card's ``task`` field (default: ``name``).
- ``card_extra(model) -> dict``: extra card fields a deployment reads (model config, input size, calibration).
- ``report(model) -> dict``: extra evaluation tables, written to the card under ``extra.report``.
- ``reference_set() -> Dataset``: the inputs of the card's reference entropy profile and parity check, when the
  validation set is not the domain the deployed node sees (default: the validation set).
"""
from __future__ import annotations

import importlib
import inspect
from typing import Any, Protocol, runtime_checkable

from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

#: Short task names and the module under ``glassbox_trainer.tasks`` that defines each.
KNOWN_TASKS: tuple[str, ...] = ("lidar", "refiner", "segmentation", "fusion")


class TaskError(ValueError):
    """A task cannot be found or does not implement the task interface."""


class MeasuredCalibration:
    """Mixin of the tasks with a sampled head: ``calibration(model)`` is the task's ``measure_calibration(model)``,
    computed once per model and weights (the card's ``extra`` and its report both read it)."""

    def calibration(self, model: nn.Module) -> dict:
        key = (id(model), tuple(float(p.detach().sum()) for p in model.parameters()))
        if getattr(self, "_calibration", (None,))[0] != key:
            self._calibration = (key, self.measure_calibration(model))
        return self._calibration[1]


@runtime_checkable
class Task(Protocol):
    """One model family, as the trainer sees it (see the module docstring for the output conventions)."""

    name: str
    metric: str
    eloss_groups: list[list[str]]

    def __init__(self, cfg: dict) -> None:
        """Build from the task section of ``config/train/<name>.yaml`` (a plain mapping)."""

    def build_model(self, size: str = "default") -> nn.Module:
        """A fresh model; ``size`` is ``"default"``, ``"teacher"`` or ``"student"`` where distillation applies."""

    def datasets(self) -> tuple[Dataset, Dataset]:
        """(train, validation) datasets, deterministic for a given task config."""

    def collate(self, items: list) -> dict:
        """Batch a list of dataset items into a dict of tensors."""

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        """(total task loss, its terms as floats, outputs with ``"features"`` and ``"logits"``)."""

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        """Validation metrics; ``self.metric`` names the headline one (higher is better)."""

    def export(self, model: nn.Module, path: str) -> dict:
        """Write ONNX (forward outputs + feature maps) to ``path``; return the input spec for the model card."""

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        """The model's positional inputs in ``batch``, in the order of the ONNX inputs."""


_REQUIRED = ("name", "metric", "eloss_groups", "build_model", "datasets", "collate", "loss", "evaluate", "export",
             "example_inputs")


def _find_class(module: Any, name: str) -> type:
    explicit = getattr(module, "TASK", None)
    if explicit is not None:
        return explicit
    found = [obj for _, obj in inspect.getmembers(module, inspect.isclass)
             if obj.__module__ == module.__name__ and getattr(obj, "name", None) == name]
    if len(found) != 1:
        raise TaskError(f"module {module.__name__} must define exactly one task class with name = '{name}' "
                        f"(or a module-level TASK); found {len(found)}")
    return found[0]


def task_class(spec: str) -> type:
    """The task class for ``spec``: a short name (``"lidar"``) or ``"package.module:Class"``."""
    if ":" in spec:
        module_name, _, cls_name = spec.partition(":")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise TaskError(f"task '{spec}': cannot import {module_name}: {exc}") from exc
        if not hasattr(module, cls_name):
            raise TaskError(f"task '{spec}': {module_name} has no attribute {cls_name}")
        cls = getattr(module, cls_name)
    else:
        try:
            module = importlib.import_module(f"glassbox_trainer.tasks.{spec}")
        except ModuleNotFoundError as exc:
            if exc.name != f"glassbox_trainer.tasks.{spec}":
                raise
            raise TaskError(f"unknown task '{spec}' (known: {', '.join(KNOWN_TASKS)}, or package.module:Class)") \
                from None
        cls = _find_class(module, spec)
    missing = [a for a in _REQUIRED if not hasattr(cls, a)]
    if missing:
        raise TaskError(f"task '{spec}' ({cls.__qualname__}) does not implement: {', '.join(missing)}")
    return cls


def build_task(spec: str, cfg: dict | None) -> Task:
    """Instantiate the task ``spec`` from its config section and check the interface."""
    task = task_class(spec)(dict(cfg or {}))
    if not isinstance(task, Task):
        raise TaskError(f"task '{spec}' does not satisfy the Task interface")
    for group in task.eloss_groups:
        if len(group) < 2:
            raise TaskError(f"task '{spec}': every Eloss group needs at least two layers, got {group}")
    return task
