"""Training configuration: one YAML file per task, loaded into frozen dataclasses.

Layout of ``config/train/<task>.yaml``::

    task: lidar                 # short name (glassbox_trainer/tasks/lidar.py) or package.module:Class
    lidar: {...}                # the task's own section (keyed by the task's name), handed to Task(cfg)
    model_size: student         # "default" | "teacher" | "student"
    seed: 0
    steps: 2000                 # optimiser steps; 0 = ``epochs`` passes over the training set
    batch_size: 16              # per process (torchrun: the global batch is batch_size * world size)
    optim: {name: adamw, lr: 1.0e-3, weight_decay: 1.0e-4}
    schedule: {name: cosine, warmup_steps: 100, min_lr_ratio: 0.01}
    eloss: {weight: 0.1, direction_weight: 0.0, schedule: linear_warmup, warmup_steps: 200, variant: printed}
    distill: {teacher: runs/lidar_teacher/model.pt, kd_weight: 0.5, temperature: 4.0, srm_weight: 1.0}
    export: {name: lidar_spi, data: "synthetic, 2000 frames, seed 0"}

A task section written as ``task: {...}`` (a mapping, the task name taken from ``task.name`` or the file name)
is accepted too. A file may hold several runs as top-level sections (``binary: {task: ..., steps: ...}``),
selected with ``glassbox-train --section binary``. Unknown keys and wrong types are errors
(``glassbox.config.from_dict``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal


from glassbox.config import ConfigError, from_dict, read_yaml


@dataclass(frozen=True)
class OptimConfig:
    """Optimiser: ``adamw`` | ``adam`` | ``sgd`` (momentum, Nesterov); ``grad_clip`` = max global norm, 0 = off."""

    name: Literal["adamw", "adam", "sgd"] = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    momentum: float = 0.9
    betas: tuple[float, float] = (0.9, 0.999)
    grad_clip: float = 0.0


@dataclass(frozen=True)
class ScheduleConfig:
    """Learning-rate factor per step: linear warm-up, then constant, cosine to ``min_lr_ratio``, or steps."""

    name: Literal["constant", "cosine", "step"] = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01
    milestones: tuple[float, ...] = ()       # "step": fractions of the run (0.5) or step numbers (>= 1)
    gamma: float = 0.1


@dataclass(frozen=True)
class ElossConfig:
    """Eloss on the task's repeated-block groups (``glassbox.entropy``).

    ``weight`` multiplies the variance term L1 (variance of the layer-to-layer entropy changes, summed over
    groups), ``direction_weight`` the direction term: ``variant="printed"`` is the paper's L2 = -sum(dH^2)
    (sign-symmetric, unbounded below), ``"bounded"`` is ``mean(tanh(dH / tau))`` (rewards decreases only;
    ``glassbox.entropy.eloss_direction_bounded``). ``per_dim`` divides each entropy by its sample dimension d.
    ``schedule``: ``constant`` or ``linear_warmup`` over ``warmup_steps``. ``groups``: override the task's
    ``eloss_groups``. The estimator settings mirror ``glassbox.entropy.ProbeConfig``.
    """

    weight: float = 0.0
    direction_weight: float = 0.0
    schedule: Literal["constant", "linear_warmup"] = "constant"
    warmup_steps: int = 0
    variant: Literal["printed", "bounded"] = "printed"
    tau: float = 1.0
    per_dim: bool = False
    unbiased: bool = False
    groups: tuple[tuple[str, ...], ...] = ()
    estimator: str = "knn"
    k: int = 1
    sample_mode: str = "channels"
    max_samples: int | None = 128
    max_dim: int | None = 256


@dataclass(frozen=True)
class DistillConfig:
    """Distillation terms; a term with weight 0 is not computed at all.

    ``teacher``: path to a teacher checkpoint (a trainer checkpoint or a plain state dict) built with
    ``Task.build_model(teacher_size)``; needed by ``kd_weight`` and ``srm_weight``. ``srm_pairs``: (student
    feature, teacher feature) names; empty = every name both have at the same spatial size.
    ``mosakd_*``: teacher-free self-distillation on the listed student features.
    """

    teacher: str = ""
    teacher_size: str = "teacher"
    kd_weight: float = 0.0
    temperature: float = 4.0
    kd_mode: Literal["softmax", "sigmoid"] = "softmax"
    srm_weight: float = 0.0
    srm_pairs: tuple[tuple[str, str], ...] = ()
    srm_mu: float = 2.0
    srm_sparsity: float = 0.02
    srm_dictionary_steps: int = 100
    srm_dictionary_lr: float = 1e-3
    mosakd_weight: float = 0.0
    mosakd_layers: tuple[str, ...] = ()
    mosakd_k: int = 8
    mosakd_max_samples: int = 1024


@dataclass(frozen=True)
class ExportConfig:
    """Export after training (``--export DIR``): ONNX + card under ``<DIR>/<name>.*``."""

    name: str = ""                   # default: the task name
    data: str = ""                   # what the model was trained on, for the model card
    parity_atol: float = 1e-3
    entropy_batches: int = 4         # validation batches for the reference entropy profile


@dataclass(frozen=True)
class EntropyLogConfig:
    """Per-layer entropy curves of all feature maps on a fixed validation batch, every ``every`` steps."""

    enabled: bool = True
    every: int = 0                   # 0: at every evaluation
    estimator: str = "knn"
    k: int = 1
    sample_mode: str = "channels"
    max_samples: int | None = 128
    max_dim: int | None = 256


@dataclass(frozen=True)
class TrainConfig:
    """The whole run. ``task_cfg`` is the task's own section, passed to the task untouched."""

    task: str
    task_cfg: dict = field(default_factory=dict)
    model_size: str = "default"
    seed: int = 0
    steps: int = 0
    epochs: int = 1
    batch_size: int = 8
    eval_batch_size: int = 0         # 0: batch_size
    num_workers: int = 0
    device: str = "auto"             # "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:1"
    amp: bool = True                 # mixed precision (bfloat16 autocast), CUDA only
    deterministic: bool = True
    ddp_find_unused: bool = False    # DDP: allow parameters that get no gradient in some steps
    log_every: int = 10
    eval_every: int = 0              # 0: at the end only
    ckpt_every: int = 100
    optim: OptimConfig = field(default_factory=OptimConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    eloss: ElossConfig = field(default_factory=ElossConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    entropy_log: EntropyLogConfig = field(default_factory=EntropyLogConfig)
    export: ExportConfig = field(default_factory=ExportConfig)

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.steps < 0 or self.epochs < 1:
            raise ValueError(f"steps must be >= 0 and epochs >= 1, got steps={self.steps}, epochs={self.epochs}")
        if self.ckpt_every < 1 or self.log_every < 1:
            raise ValueError("ckpt_every and log_every must be >= 1")


def _task_key(spec: str) -> str:
    from glassbox_trainer.task import task_class
    return str(getattr(task_class(spec), "name", spec))


def train_config_from_dict(data: dict, source: str = "<dict>") -> TrainConfig:
    """Build a :class:`TrainConfig` from a parsed YAML mapping (the task section is split off first)."""
    if not isinstance(data, dict) or "task" not in data:
        raise ConfigError(f"{source}: a training config needs a 'task:' key")
    data = dict(data)
    task = data.pop("task")
    if isinstance(task, dict):
        task = dict(task)
        name = task.pop("name", None) or (Path(source).stem if source != "<dict>" else None)
        if not name:
            raise ConfigError(f"{source}: 'task' is a mapping without 'name' and there is no file name to use")
        section = task
    elif isinstance(task, str):
        name = task
        key = _task_key(task)
        section = data.pop(key, None)
        if section is None:
            section = data.pop("task_cfg", {})
    else:
        raise ConfigError(f"{source}: 'task' must be a name or a mapping, got {task!r}")
    if not isinstance(section, dict):
        raise ConfigError(f"{source}: the task section must be a mapping, got {section!r}")
    return from_dict(TrainConfig, {"task": name, "task_cfg": section, **data}, source)


def load_train_config(path: str | Path, section: str | None = None) -> TrainConfig:
    """Read ``config/train/<task>.yaml`` (or its top-level ``section``, for files holding several runs)."""
    return train_config_from_dict(read_yaml(path, section), source=str(path))
