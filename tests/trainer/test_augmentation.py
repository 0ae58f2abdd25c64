"""Augmentation is drawn afresh every epoch and does not depend on the loader worker that loads an item: each
training item's generator is keyed by (seed, epoch, index), so epochs differ, workers never repeat each other's
draws, and a run loads the same batches whatever its number of workers (which keeps resume exact)."""
import numpy as np
import pytest
import torch

from glassbox_trainer.config import train_config_from_dict
from glassbox_trainer.data import EpochDataset, epoch_loader
from glassbox_trainer.distributed import DistEnv
from glassbox_trainer.task import build_task
from test_resume_tasks import task_config


def batches(task, dataset, raw, epoch: int, workers: int) -> list[torch.Tensor]:
    """The input tensor of every batch of ``epoch`` (the key differs per task)."""
    cfg = train_config_from_dict({**raw, "num_workers": workers})
    key = {"lidar": "input", "segmentation": "image", "fusion": "rgb"}.get(task.name)
    out = []
    for batch in epoch_loader(task, dataset, cfg, DistEnv(0, 1, 0, torch.device("cpu")), epoch, 0):
        out.append((batch[key] if key else batch["clean"]).clone())
    return out


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return tmp_path_factory.mktemp("augment_cache")


@pytest.mark.parametrize("name", ["lidar", "segmentation", "fusion", "refiner"])
def test_augmentation_differs_between_epochs_not_between_worker_counts(name, cache):
    raw = {**task_config(name, cache), "batch_size": 1}
    if name in ("segmentation", "fusion"):
        raw["task_cfg"]["train_frames"] = 8          # flips are drawn with p = 0.5: enough items to see one differ
    task = build_task(raw["task"], raw["task_cfg"])
    train_set, _ = task.datasets()
    assert isinstance(train_set, EpochDataset)
    e0, e1 = batches(task, train_set, raw, 0, 0), batches(task, train_set, raw, 1, 0)
    # the same items are in both epochs; compare each item with itself (the sampler reorders them per epoch)
    order0 = list(torch.utils.data.DistributedSampler(train_set, 1, 0, seed=raw["seed"], drop_last=True))
    sampler = torch.utils.data.DistributedSampler(train_set, 1, 0, seed=raw["seed"], drop_last=True)
    sampler.set_epoch(1)
    order1 = list(sampler)
    by_item0 = {i: b for i, b in zip(order0, e0)}
    by_item1 = {i: b for i, b in zip(order1, e1)}
    changed = [i for i in by_item0 if not torch.equal(by_item0[i], by_item1[i])]
    assert changed, "every item was augmented identically in two epochs"
    two_workers = batches(task, train_set, raw, 1, 2)
    assert all(torch.equal(a, b) for a, b in zip(e1, two_workers)) and len(e1) == len(two_workers)


def test_item_generators_are_distinct_per_index_and_epoch():
    ds = EpochDataset()
    ds.seed = 3
    draws = {}
    for epoch in (0, 1):
        ds.set_epoch(epoch)
        for index in range(50):
            draws[epoch, index] = ds.item_rng(index).random(4).tobytes()
    assert len(set(draws.values())) == len(draws)
    ds.set_epoch(0)
    np.testing.assert_array_equal(np.frombuffer(draws[0, 7]), ds.item_rng(7).random(4))
