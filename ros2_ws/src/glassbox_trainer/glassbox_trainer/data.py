"""Batches in a resumable order: the data order of step s depends only on (seed, epoch of s).

A ``DistributedSampler`` with ``set_epoch`` orders each epoch, so a resumed run skips the consumed batches of
the current epoch without loading them, and each loader has a generator of its own, so creating it never
draws from the global RNG streams that the checkpoint restores.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from glassbox_trainer.config import TrainConfig
from glassbox_trainer.distributed import DistEnv
from glassbox_trainer.task import Task


def to_device(batch: Any, device: torch.device) -> Any:
    """Every tensor of a (nested) batch moved to ``device``; other values unchanged."""
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def epoch_loader(task: Task, dataset: Dataset, cfg: TrainConfig, env: DistEnv, epoch: int,
                 skip_batches: int) -> DataLoader:
    """This process's batches of ``epoch``, starting after ``skip_batches`` already consumed ones."""
    sampler = DistributedSampler(dataset, num_replicas=env.world, rank=env.rank, shuffle=True, seed=cfg.seed,
                                 drop_last=True)
    sampler.set_epoch(epoch)
    indices = list(sampler)[skip_batches * cfg.batch_size:]
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, collate_fn=task.collate,
                      num_workers=cfg.num_workers, drop_last=True, generator=gen)


def eval_loader(task: Task, dataset: Dataset, cfg: TrainConfig) -> DataLoader:
    """The validation (or reference) batches in a fixed order, ``eval_batch_size`` (default ``batch_size``)."""
    return DataLoader(dataset, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                      collate_fn=task.collate, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed))
