"""Synthetic torch datasets: deterministic disjoint splits, caching, labels consistent with boxes."""
import numpy as np
import pytest
import torch

from glassbox.datasets import (CameraDatasetConfig, DatasetError, SyntheticCameraDataset, SyntheticLidarDataset,
                               frame_seed)
from glassbox.sim import Boxes3D, rgb_camera, thermal_camera

CAMS = CameraDatasetConfig(rgb=rgb_camera(width=160, height=128), thermal=thermal_camera(width=160, height=128))


def test_split_seeds_are_disjoint_and_stable():
    seeds = {s: {frame_seed(0, s, i) for i in range(500)} for s in ("train", "val", "test")}
    assert all(len(v) == 500 for v in seeds.values())
    assert not (seeds["train"] & seeds["val"]) and not (seeds["train"] & seeds["test"])
    assert frame_seed(0, "val", 3) == frame_seed(0, "val", 3) != frame_seed(1, "val", 3)
    with pytest.raises(DatasetError):
        frame_seed(0, "holdout", 0)


def test_lidar_dataset_items(tmp_path):
    ds = SyntheticLidarDataset("val", size=2, lidar="vlp16", cache_dir=tmp_path)
    assert len(ds) == 2
    item = ds[1]
    assert item["points"].dtype == torch.float32 and item["points"].shape[1] == 4
    assert item["boxes"].shape[1] == 7 and len(item["box_classes"]) == len(item["boxes"]) > 0
    # Every box holds the points of its instance (within the range noise).
    pts, boxes = item["points"].numpy(), item["boxes"].numpy()
    b = Boxes3D(boxes[:, :3], boxes[:, 3:6], boxes[:, 6], item["box_classes"].numpy())
    inside = b.contains(pts[:, :3], margin=0.1)
    labelled = item["instance"].numpy() > 0
    assert labelled.sum() == int(item["box_points"].sum()) > 0
    assert inside[labelled].any(1).all()
    # Cache: a second dataset object reads the same bytes from disk; a fresh one regenerates identically.
    assert len(list(tmp_path.rglob("*.npz"))) == 1
    again = SyntheticLidarDataset("val", size=2, lidar="vlp16", cache_dir=tmp_path)[1]
    fresh = SyntheticLidarDataset("val", size=2, lidar="vlp16")[1]
    for k in ("points", "label", "boxes"):
        assert torch.equal(item[k], again[k]) and torch.equal(item[k], fresh[k])
    other = SyntheticLidarDataset("train", size=2, lidar="vlp16")[1]
    assert other["points"].shape != item["points"].shape or not torch.equal(other["points"], item["points"])
    with pytest.raises(IndexError):
        ds[2]


def test_camera_dataset_items():
    ds = SyntheticCameraDataset("train", size=2, cameras=CAMS, seed=4)
    item = ds[0]
    assert item["rgb"].shape == (3, 128, 160) and item["rgb"].dtype == torch.uint8
    assert item["thermal"].shape == (1, 128, 160) and item["thermal_aligned"].shape == (1, 128, 160)
    assert item["semantic"].shape == (128, 160) and item["lighting"] in CAMS.lightings
    assert item["boxes"].shape[1] == 4 and len(item["labels"]) == len(item["boxes"])
    inst, boxes = item["instance"].numpy(), item["boxes"].numpy().astype(int)
    for (x0, y0, x1, y1) in boxes:
        ids = np.unique(inst[y0:y1, x0:x1])
        assert (ids > 0).any()
    again = SyntheticCameraDataset("train", size=2, cameras=CAMS, seed=4)[0]
    assert torch.equal(item["rgb"], again["rgb"]) and torch.equal(item["thermal16"], again["thermal16"])
