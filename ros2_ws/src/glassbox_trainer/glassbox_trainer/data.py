"""Batches in a resumable order: the data order of step s depends only on (seed, epoch of s).

A ``DistributedSampler`` with ``set_epoch`` orders each epoch, so a resumed run skips the consumed batches of
the current epoch without loading them, and each loader has a generator of its own, so creating it never
draws from the global RNG streams that the checkpoint restores.

Augmentation is drawn the same way: an :class:`EpochDataset` item's generator is keyed by (seed, epoch,
index), so every epoch sees a fresh augmentation of each item, while the draw does not depend on which
loader worker or rank loads the item, nor on where a resumed run starts.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from glassbox_trainer.config import TrainConfig
from glassbox_trainer.distributed import DistEnv
from glassbox_trainer.task import Task


class EpochDataset(Dataset):
    """A training set whose items are augmented afresh every epoch: ``item_rng(index)`` is the generator of one
    item's augmentation in the current epoch (set by :func:`epoch_loader` before the loader starts)."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def item_rng(self, index: int) -> np.random.Generator:
        return np.random.default_rng([int(self.seed), self.epoch, int(index), 0xA06])


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
    if isinstance(dataset, EpochDataset):
        dataset.set_epoch(epoch)          # before the loader copies the dataset into its workers
    indices = list(sampler)[skip_batches * cfg.batch_size:]
    gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch)
    return DataLoader(dataset, batch_size=cfg.batch_size, sampler=indices, collate_fn=task.collate,
                      num_workers=cfg.num_workers, drop_last=True, generator=gen)


def eval_loader(task: Task, dataset: Dataset, cfg: TrainConfig) -> DataLoader:
    """The validation (or reference) batches in a fixed order, ``eval_batch_size`` (default ``batch_size``)."""
    return DataLoader(dataset, batch_size=cfg.eval_batch_size or cfg.batch_size, shuffle=False,
                      collate_fn=task.collate, num_workers=cfg.num_workers,
                      generator=torch.Generator().manual_seed(cfg.seed))
