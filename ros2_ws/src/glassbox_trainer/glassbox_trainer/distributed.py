"""This process's place in a ``torchrun`` run: rank, world size, device, and the collectives the loop needs.

Every process trains on its shard of each global batch; gradients are averaged by
``DistributedDataParallel`` (gloo on CPU, NCCL on CUDA); logged values are averaged over processes; only rank
0 writes files.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from glassbox_trainer.errors import TrainError


@dataclass(frozen=True)
class DistEnv:
    """This process's place in the run: rank, world size and device."""

    rank: int
    world: int
    local_rank: int
    device: torch.device

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()


def setup_distributed(device: str) -> DistEnv:
    """Join the ``torchrun`` process group when ``WORLD_SIZE`` > 1 (NCCL on CUDA, gloo on CPU)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise TrainError(f"device '{device}' requested but CUDA is not available")
        if dev.index is None:
            dev = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if dev.type == "cuda" else "gloo")
    return DistEnv(rank, world, local_rank, dev)


def teardown_distributed(env: DistEnv) -> None:
    if env.world > 1:
        dist.barrier()
        dist.destroy_process_group()


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """``obj`` of every rank, in rank order (a list of one in a single process)."""
    if env.world == 1:
        return [obj]
    out: list[Any] = [None] * env.world
    dist.all_gather_object(out, obj)
    return out


def mean_over_ranks(values: dict[str, float], env: DistEnv) -> dict[str, float]:
    """Every value averaged over the processes (unchanged in a single process)."""
    if env.world == 1:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64,
                     device=env.device if env.device.type == "cuda" else "cpu")
    dist.all_reduce(t)
    return dict(zip(keys, (t / env.world).tolist()))


def broadcast_parameters(module: torch.nn.Module, env: DistEnv) -> None:
    """Rank 0's parameter values on every rank."""
    if env.world > 1:
        for p in module.parameters():
            dist.broadcast(p.data, 0)
