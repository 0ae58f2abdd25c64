"""Trainer task ``lidar``: the SPI range-image detector (``glassbox.lidar``) on synthetic LiDAR scans.

Data: ``glassbox.datasets.SyntheticLidarDataset``: scans of procedural streets by the simulated ``sensor`` (a
profile of ``glassbox.lidar.sensors``, default ``hdl64``; train and val frames come from disjoint seeds, so
validation scenes are never seen in training), cached on disk. Each item is projected to the sensor's range image
(``ProjectionConfig.from_profile``: one row per beam, rows from the ring field, ``width`` columns), optionally
augmented first (mirror y -> -y, and a random rotation about z, which shifts the image along its columns) and, for
training, cropped to ``crop_width`` columns to halve the cost of a step. With ``gt_sampling``, objects cut out of the
training scans (``glassbox.lidar.gt_sampling``) are pasted into each training scan before the augmentation, drawn
afresh every epoch. Targets: ``glassbox.lidar.build_targets``.
The exported card records the sensor profile (``extra.sensor``), which the deployed pipeline checks clouds against.

Evaluation: decode every validation scan at a low score threshold and compute KITTI-style AP|R40
(``glassbox.metrics.evaluate_detections``) for BEV and 3D at the stated IoU thresholds; ground-truth boxes
with fewer than ``eval_min_points`` LiDAR points are ignored (KITTI-style "don't care": nothing can be detected
from them). BEV APs are also given per distance bin (0-20, 20-40, 40+ m). The headline metric is car BEV AP
at IoU 0.5, ``car/bev@0.5``.

Train the shipped model (two stages, CPU; see ``config/train/lidar_finetune.yaml``):
``glassbox-train --config config/train/lidar.yaml --out runs/lidar`` then
``glassbox-train --config config/train/lidar_finetune.yaml --out runs/lidar_ft --export models/``
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from glassbox.classes import DETECTION_CLASSES
from glassbox.config import ConfigError, from_dict
from glassbox.lidar import (DecodeConfig, ProjectionConfig, SpiLossConfig, TargetConfig, build_model,
                            build_targets, decode, normalise, project_points, spi_config, spi_loss)
from glassbox.lidar.decode import Detections3D
from glassbox.lidar.gt_sampling import GtSamplingConfig, ObjectBank
from glassbox.lidar.sensors import SENSORS, SensorProfile, sensor_profile
from glassbox.metrics.detection3d import evaluate_detections
from glassbox.export import export_with_features
from glassbox.pipelines.lidar import INPUT_NAME, card_extra
from glassbox_trainer.data import EpochDataset

TARGET_KEYS = ("heatmap", "offset", "size", "yaw", "reg_weight")
DISTANCE_BINS_M = ((0.0, 20.0), (20.0, 40.0), (40.0, math.inf))


@dataclass(frozen=True)
class LidarTaskConfig:
    """The ``lidar:`` section of ``config/train/lidar.yaml``.

    ``sensor``: the simulated sensor (``glassbox.lidar.sensors.SENSORS``), also the range image's geometry;
    ``projection: null`` (the default) = ``ProjectionConfig.from_profile(sensor, width=width)``; a projection
    given in full must have the sensor's beam count (and its beam table, when it lists one; rows from the ring
    field need the sensor's table and ring order, so that training and the deployed pipeline place rings on the
    same rows). ``lidar:`` is read as the old name of ``sensor`` (configs and cards of earlier runs).
    """

    sensor: str = "hdl64"
    width: int = 512
    seed: int = 0
    train_frames: int = 800
    val_frames: int = 150
    cache_dir: str = "~/.cache/glassbox/lidar"
    projection: ProjectionConfig | None = None
    model: dict = field(default_factory=dict)      # SpiConfig fields over the named size
    crop_width: int = 256
    augment: bool = True
    targets: TargetConfig = field(default_factory=TargetConfig)
    loss: SpiLossConfig = field(default_factory=SpiLossConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval_score_threshold: float = 0.05
    eval_min_points: int = 10
    init_weights: str = ""     # state dict (.pt) the default-size model starts from (a second, fine-tuning stage)
    gt_sampling: GtSamplingConfig | None = None   # paste objects of other training scans (null: off)


def task_config(cfg: dict | None) -> LidarTaskConfig:
    """The task's config from its section, with ``lidar:`` (the old name of ``sensor``) accepted."""
    cfg = dict(cfg or {})
    if "lidar" in cfg:
        old = cfg.pop("lidar")
        if cfg.setdefault("sensor", old) != old:
            raise ConfigError(f"task lidar: 'lidar: {old}' and 'sensor: {cfg['sensor']}' name different sensors "
                              "('lidar' is the old name of 'sensor')")
    out = from_dict(LidarTaskConfig, cfg, "task lidar")
    if out.sensor not in SENSORS:
        raise ConfigError(f"task lidar: unknown sensor '{out.sensor}' (known: {', '.join(SENSORS)})")
    return out


def sensor_projection(profile: SensorProfile, cfg: LidarTaskConfig) -> ProjectionConfig:
    """The range image of the task: the sensor's (``width`` columns) or the given one, checked against it."""
    if cfg.projection is None:
        return ProjectionConfig.from_profile(profile, width=cfg.width)
    proj = cfg.projection
    same_table = len(proj.beam_elevations_deg) == profile.num_beams and np.allclose(
        proj.beam_elevations_deg, profile.elevations_deg, atol=0.01)
    if proj.height != profile.num_beams or (proj.beam_elevations_deg and not same_table):
        raise ConfigError(f"task lidar: projection ({proj.height} rows) does not match sensor '{profile.name}' "
                          f"({profile.num_beams} beams): give projection: null to take the sensor's")
    if proj.use_ring and not (same_table and proj.ring_order == profile.ring_order):
        raise ConfigError(f"task lidar: rows from the ring field need the beam table and ring order "
                          f"({profile.ring_order}) of sensor '{profile.name}' (or use_ring: false)")
    return proj


class LidarFrames(EpochDataset):
    """Synthetic scans turned into network inputs and targets."""

    def __init__(self, frames: Dataset, projection: ProjectionConfig, targets: TargetConfig, train: bool,
                 crop_width: int, augment: bool, seed: int, bank: ObjectBank | None = None):
        self.frames, self.projection, self.targets = frames, projection, targets
        self.train, self.crop_width, self.augment, self.seed = train, crop_width, augment, seed
        self.bank = bank

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> dict[str, Any]:
        a = self.frames.arrays(index)
        points = a["points"].astype(np.float32, copy=True)
        boxes = a["boxes"].astype(np.float64).reshape(-1, 7).copy()
        ring, box_classes, box_points = a["ring"], a["box_classes"], a["box_points"]
        rng = self.item_rng(index)
        if self.train and self.bank is not None:
            points, ring, boxes, box_classes, pasted = self.bank.paste(points, ring, boxes, box_classes, rng)
            box_points = np.concatenate([box_points, np.full(pasted, np.iinfo(np.int32).max)])
        if self.train and self.augment:
            if rng.random() < 0.5:                                   # mirror: y -> -y, yaw -> -yaw
                points[:, 1] *= -1.0
                boxes[:, 1] *= -1.0
                boxes[:, 6] *= -1.0
            ang = rng.uniform(-math.pi, math.pi)                     # rotation about z
            c, s = math.cos(ang), math.sin(ang)
            x, y = points[:, 0].copy(), points[:, 1].copy()
            points[:, 0], points[:, 1] = c * x - s * y, s * x + c * y
            bx, by = boxes[:, 0].copy(), boxes[:, 1].copy()
            boxes[:, 0], boxes[:, 1] = c * bx - s * by, s * bx + c * by
            boxes[:, 6] = (boxes[:, 6] + ang + math.pi) % (2 * math.pi) - math.pi
        image = project_points(points, self.projection, ring=ring)
        t = build_targets(image, boxes[:, :3], boxes[:, 3:6], boxes[:, 6], box_classes, self.targets)
        item = {"input": normalise(image), "xyz": image.xyz, "mask": image.mask,
                **{k: t[k] for k in TARGET_KEYS}}
        if self.train and 0 < self.crop_width < self.projection.width:
            # fixed window (the random rotation above already moves objects across all columns)
            item = {k: v[..., :self.crop_width] if v.ndim in (2, 3) and k != "xyz" else v for k, v in item.items()}
            item["xyz"] = item["xyz"][:, :self.crop_width]
        out = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in item.items()}
        out["boxes"] = torch.from_numpy(boxes.astype(np.float32))
        out["box_classes"] = torch.from_numpy(box_classes.astype(np.int64))
        out["box_points"] = torch.from_numpy(box_points.astype(np.int64))
        return out


class LidarTask:
    """SPI detector on synthetic scans (see the module docstring)."""

    name = "lidar"
    metric = "car/bev@0.5"
    classes = DETECTION_CLASSES
    #: one group per backbone stage of the default size (instances recompute it for their own model)
    eloss_groups = [[f"s{i + 1}_b{j}" for j in range(n)] for i, n in enumerate(spi_config().stage_blocks) if n >= 2]

    def __init__(self, cfg: dict):
        self.cfg = task_config(cfg)
        self.sensor = sensor_profile(self.cfg.sensor)
        self.projection = sensor_projection(self.sensor, self.cfg)
        self.eloss_groups = build_model("spi", self._model_cfg("default")).eloss_groups()

    def _model_cfg(self, size: str):
        from dataclasses import asdict

        from glassbox.lidar import SpiConfig
        base = asdict(spi_config(size, in_channels=len(self.projection.channels), num_classes=len(DETECTION_CLASSES)))
        return from_dict(SpiConfig, {**base, **self.cfg.model}, "task lidar: model")

    def build_model(self, size: str = "default") -> nn.Module:
        model = build_model("spi", self._model_cfg(size))
        if self.cfg.init_weights and size in ("default", "student"):
            from glassbox.runtime import load_state
            model.load_state_dict(load_state(os.path.expanduser(self.cfg.init_weights))[1])
        return model

    def datasets(self) -> tuple[Dataset, Dataset]:
        from glassbox.datasets.synthetic import SyntheticLidarDataset

        cache = os.path.expanduser(self.cfg.cache_dir) if self.cfg.cache_dir else None
        c = self.cfg
        train = SyntheticLidarDataset("train", size=c.train_frames, lidar=c.sensor, seed=c.seed, cache_dir=cache)
        val = SyntheticLidarDataset("val", size=c.val_frames, lidar=c.sensor, seed=c.seed, cache_dir=cache)
        bank = None
        if c.gt_sampling is not None:
            bank = ObjectBank(c.gt_sampling)
            for i in range(len(train)):
                a = train.arrays(i)
                bank.add_scan(a["points"], a["ring"], a["boxes"], a["box_classes"])
        return (LidarFrames(train, self.projection, c.targets, True, c.crop_width, c.augment, c.seed, bank),
                LidarFrames(val, self.projection, c.targets, False, 0, False, c.seed))

    def collate(self, items: list) -> dict:
        batch = {k: torch.stack([it[k] for it in items]) for k in ("input", "xyz", "mask", *TARGET_KEYS)}
        for k in ("boxes", "box_classes", "box_points"):
            batch[k] = [it[k] for it in items]
        return batch

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        feats = model.forward_features(batch["input"])
        out = model.forward_head(feats)
        total, terms = spi_loss(out, {k: batch[k] for k in TARGET_KEYS}, self.cfg.loss)
        return total, terms, {"features": feats, "logits": out.heatmap, "valid": batch["mask"],
                              "outputs": out}

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        return (batch["input"],)

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        dec = replace(self.cfg.decode, score_threshold=self.cfg.eval_score_threshold)
        dets, gts, ignore = [], [], []
        device = next(model.parameters()).device
        for batch in loader:
            x = batch["input"].to(device)
            out = model(x)
            out = {k: v.float().cpu().numpy() for k, v in out._asdict().items()}
            for i in range(x.shape[0]):
                dets.append(decode({k: v[i] for k, v in out.items()}, batch["xyz"][i].numpy(),
                                   batch["mask"][i].numpy(), dec))
                b = batch["boxes"][i].numpy().reshape(-1, 7)
                gts.append(Detections3D(centers=b[:, :3], sizes=b[:, 3:6], yaw=b[:, 6],
                                        classes=batch["box_classes"][i].numpy(), scores=np.ones(len(b))))
                ignore.append(batch["box_points"][i].numpy() < self.cfg.eval_min_points)
        res = evaluate_detections(dets, gts, gt_ignore=ignore)
        aps = [v for k, v in res.items() if "@" in k and not math.isnan(v)]
        res["mean_ap"] = float(np.mean(aps)) if aps else 0.0
        for near, far in DISTANCE_BINS_M:            # BEV AP per distance bin: "car/bev@0.7/0-20m", ...
            tag = f"{near:g}-{far:g}m" if math.isfinite(far) else f"{near:g}m+"
            binned = evaluate_detections(dets, gts, gt_ignore=ignore, metrics=("bev",), range_m=(near, far))
            res.update({f"{k}/{tag}": v for k, v in binned.items()})
        return {k: (0.0 if math.isnan(v) else float(v)) for k, v in res.items()}

    def export(self, model: nn.Module, path: str) -> dict:
        x = torch.zeros(1, model.cfg.in_channels, self.projection.height, self.projection.width)
        spec = export_with_features(model, {INPUT_NAME: x}, path, dynamic_spatial=True)
        spec["classes"] = list(DETECTION_CLASSES)
        spec.update(card_extra(self.projection, model.cfg, self.cfg.decode, self.sensor))
        return spec
