"""The lidar trainer task end to end on two synthetic scans: targets -> perfect outputs -> decode -> AP."""
import numpy as np
import pytest
import torch
from torch import nn

from glassbox.heads import Detection3DHead
from glassbox.lidar import DecodeConfig, decode

pytest.importorskip("glassbox_trainer")
from glassbox_trainer.tasks.lidar import LidarTask  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def task(tmp_path_factory):
    return LidarTask({"train_frames": 2, "val_frames": 2, "crop_width": 0,
                      "cache_dir": str(tmp_path_factory.mktemp("lidar_cache"))})


class PerfectModel(nn.Module):
    """Returns the targets of the batch it was given as if it had predicted them."""

    def __init__(self, batch: dict):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))
        hm = batch["heatmap"].clamp(1e-6, 1 - 1e-6)
        yaw = batch["yaw"].clone()
        yaw[:, 2] = torch.where(yaw[:, 2] > 0.5, 10.0, -10.0)
        self.out = Detection3DHead(heatmap=torch.log(hm / (1 - hm)), offset=batch["offset"], size=batch["size"],
                                   yaw=yaw)

    def forward(self, x):
        return self.out


def test_perfect_outputs_score_full_car_ap(task):
    _, val = task.datasets()
    batch = task.collate([val[0], val[1]])
    assert batch["input"].shape == (2, 5, 64, 512)
    res = task.evaluate(PerfectModel(batch), [batch])
    assert res["car/num_gt"] >= 5
    # every car with >= 10 points has an object pixel and therefore an exact peak; overlapping boxes may lose one
    assert res["car/bev@0.7"] >= 0.9 and res["car/3d@0.7"] >= 0.9
    assert res[task.metric] >= res["car/bev@0.7"]
    near, mid = res["car/num_gt/0-20m"], res["car/num_gt/20-40m"]
    assert near + mid + res["car/num_gt/40m+"] == res["car/num_gt"] and near > 0
    assert res["car/bev@0.7/0-20m"] >= 0.9


def decode_own_targets(item: dict, max_detections: int):
    """Decode an item's own targets as if a network had predicted them exactly."""
    out = {k: item[k].numpy() for k in ("offset", "size", "yaw")}
    out["yaw"][2] = np.where(out["yaw"][2] > 0.5, 10.0, -10.0)
    hm = np.clip(item["heatmap"].numpy(), 1e-6, 1 - 1e-6)
    out["heatmap"] = np.log(hm / (1 - hm))
    return decode(out, item["xyz"].numpy(), item["mask"].numpy(),
                  DecodeConfig(score_threshold=0.99, max_detections=max_detections))


def test_augmented_item_targets_match_its_boxes(task):
    train, _ = task.datasets()
    np.random.seed(5)
    item = train[0]
    boxes = item["boxes"].numpy()
    det = decode_own_targets(item, max_detections=200)
    assert len(det) >= 5
    # every decoded box is one of the (augmented) ground-truth boxes, to float precision
    d = np.linalg.norm(det.centers[:, None, :] - boxes[None, :, :3], axis=-1)
    assert np.all(d.min(axis=1) < 1e-3)


def test_loss_outputs_and_groups(task):
    train, _ = task.datasets()
    batch = task.collate([train[0], train[1]])
    model = task.build_model()
    total, terms, outputs = task.loss(model, batch)
    assert torch.isfinite(total) and set(terms) == {"heatmap", "offset", "size", "yaw", "direction"}
    assert outputs["logits"].shape == (2, 3, 64, 512)
    for group in task.eloss_groups:
        assert all(name in outputs["features"] for name in group)
    teacher = task.build_model("teacher")
    assert sum(p.numel() for p in teacher.parameters()) > 3 * sum(p.numel() for p in model.parameters())


def test_ground_truth_sampling_adds_decodable_objects(tmp_path):
    """With gt_sampling, a training item holds its own boxes plus pasted ones, and the targets of the pasted
    ones decode back to them (their points made it into the range image)."""
    gt = {"per_scan": [0, 3, 3], "min_points": [30, 10, 10]}
    plain = LidarTask({"train_frames": 3, "val_frames": 1, "crop_width": 0, "augment": False,
                       "cache_dir": str(tmp_path)})
    task = LidarTask({"train_frames": 3, "val_frames": 1, "crop_width": 0, "augment": False, "gt_sampling": gt,
                      "cache_dir": str(tmp_path)})
    (base, _), (train, _) = plain.datasets(), task.datasets()
    assert train.bank is not None and len(train.bank) > 0
    item, raw = train[0], base[0]
    n_raw = len(raw["boxes"])
    assert len(item["boxes"]) > n_raw
    np.testing.assert_allclose(item["boxes"][:n_raw].numpy(), raw["boxes"].numpy())
    assert set(item["box_classes"][n_raw:].tolist()) <= {1, 2}
    det = decode_own_targets(item, max_detections=300)
    pasted = item["boxes"][n_raw:, :3].numpy()
    d = np.linalg.norm(pasted[:, None, :] - det.centers[None], axis=-1)
    assert (d.min(axis=1) < 1e-3).sum() >= 1


def test_width_and_model_overrides_reach_the_data_and_the_network(tmp_path):
    task = LidarTask({"train_frames": 1, "val_frames": 1, "crop_width": 256, "width": 1024, "cache_dir": str(tmp_path),
                      "model": {"stage_channels": [8, 16, 24], "stage_strides": [[1, 2], [2, 2], [2, 2]]}})
    model = task.build_model()
    assert model.cfg.stage_channels == (8, 16, 24) and model.cfg.total_stride == (4, 8)
    train, val = task.datasets()
    assert train[0]["input"].shape == (5, 64, 256) and val[0]["input"].shape == (5, 64, 1024)
    with torch.no_grad():
        assert model(val[0]["input"][None]).heatmap.shape == (1, 3, 64, 1024)


def test_sensor_key_sets_simulation_projection_and_card(tmp_path):
    from glassbox.config import ConfigError, from_dict
    from glassbox.lidar import SensorProfile, sensor_profile

    vlp16 = sensor_profile("vlp16")
    task = LidarTask({"sensor": "vlp16", "train_frames": 1, "val_frames": 1, "crop_width": 0,
                      "cache_dir": str(tmp_path / "cache")})
    assert task.projection.height == 16 and task.projection.beam_elevations_deg == vlp16.elevations_deg
    assert task.projection.ring_order == "bottom_first" and task.projection.width == 512
    _, val = task.datasets()
    assert val.frames.lidar_cfg.num_beams == 16 and val.frames.lidar_cfg.intensity_max == 255
    item = val[0]
    assert item["input"].shape == (5, 16, 512)
    rows, _ = np.nonzero(item["mask"].numpy())               # every filled pixel holds a point of its row's beam
    xyz = item["xyz"].numpy()[item["mask"].numpy()]
    elev = np.degrees(np.arcsin(xyz[:, 2] / np.linalg.norm(xyz, axis=1)))
    assert len(rows) > 1000 and np.abs(elev - np.asarray(vlp16.elevations_deg)[rows]).max() < 0.01
    spec = task.export(task.build_model(), str(tmp_path / "m.onnx"))
    assert list(spec["inputs"]["range_image"]["shape"]) == [1, 5, 16, 512]
    assert from_dict(SensorProfile, spec["sensor"]) == vlp16 and spec["projection"]["height"] == 16
    assert LidarTask({"lidar": "vlp16"}).cfg.sensor == "vlp16"        # the key's old name
    for bad, match in (({"sensor": "vlp17"}, "unknown sensor"),
                       ({"lidar": "hdl64", "sensor": "vlp16"}, "different sensors"),
                       ({"sensor": "vlp16", "projection": {"height": 64}}, "does not match sensor 'vlp16'")):
        with pytest.raises(ConfigError, match=match):
            LidarTask(bad)
