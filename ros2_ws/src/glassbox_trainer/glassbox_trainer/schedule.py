"""Learning-rate and Eloss-weight schedules (pure functions of the step) and the configured optimiser."""
from __future__ import annotations

import math

import torch
from torch import nn

from glassbox_trainer.config import ElossConfig, ScheduleConfig, TrainConfig


def lr_factor(step: int, total_steps: int, cfg: ScheduleConfig) -> float:
    """Learning-rate multiplier at ``step`` (0-based): linear warm-up, then constant / cosine / step decay."""
    if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.name == "constant":
        return 1.0
    if cfg.name == "cosine":
        span = max(1, total_steps - cfg.warmup_steps)
        t = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1.0 - cfg.min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * t))
    marks = [m * total_steps if m < 1 else m for m in cfg.milestones]
    return cfg.gamma ** sum(step >= m for m in marks)


def get_lr(step: int, total_steps: int, base_lr: float, cfg: ScheduleConfig) -> float:
    """Learning rate at ``step``: a pure function of the step, so a resumed run continues the same curve."""
    return base_lr * lr_factor(step, total_steps, cfg)


def eloss_scale(step: int, cfg: ElossConfig) -> float:
    """Multiplier of the Eloss weights at ``step`` (``linear_warmup``: 0 -> 1 over ``warmup_steps``)."""
    if cfg.schedule == "linear_warmup" and cfg.warmup_steps > 0:
        return min(1.0, step / cfg.warmup_steps)
    return 1.0


def build_optimizer(params: list[nn.Parameter], cfg: TrainConfig) -> torch.optim.Optimizer:
    """The config's optimiser: AdamW, Adam or SGD with Nesterov momentum."""
    o = cfg.optim
    if o.name == "sgd":
        return torch.optim.SGD(params, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay, nesterov=True)
    if o.name == "adam":
        return torch.optim.Adam(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=o.betas, weight_decay=o.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, total_steps: int,
                    cfg: ScheduleConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """A ``LambdaLR`` following :func:`lr_factor` (its state is checkpointed with the optimiser's)."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, total_steps, cfg))
