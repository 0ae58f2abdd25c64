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

A sampled head (``model: {head: variational}`` or ``mc_dropout``, ``glassbox.lidar.spi``) is fitted on the frozen
trunk of a deterministic card (``init_weights`` + ``freeze_trunk``): the loss is ``sampled_spi_loss``, and the
card gets the score's Platt calibration and the centre variance scale, fitted on the validation streets of even
index and measured on the odd ones (``measure_calibration``, in the card's ``report.calibration``).

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
from glassbox.lidar.spi import noise_in_graph, peak_parts, sampled_spi_loss, spi_index_noise
from glassbox.metrics.detection3d import evaluate_detections
from glassbox.export import export_with_features
from glassbox.pipelines.lidar import INPUT_NAME, card_extra
from glassbox_trainer.data import EpochDataset
from glassbox_trainer.task import MeasuredCalibration

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
    freeze_trunk: bool = False  # train the sampled head's heatmap and offset convs only (trunk in eval mode)
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


class LidarTask(MeasuredCalibration):
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
            state = load_state(os.path.expanduser(self.cfg.init_weights))[1]
            if model.sampled and "index_noise" not in state:      # a deterministic card under a sampled head
                state = model.variational_state(state)
            model.load_state_dict(state)
        if self.cfg.freeze_trunk:
            if not model.sampled:
                raise ConfigError("task lidar: freeze_trunk fits a sampled head (model: {head: variational})")
            for name, p in model.named_parameters():
                p.requires_grad_(name.split(".")[0] in ("heatmap", "offset"))
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
        if model.sampled:
            if self.cfg.freeze_trunk:
                model.eval()                     # batch norm statistics of the trunk stay those it was trained with
                with torch.no_grad():
                    feats = model.forward_features(batch["input"], model.draw_noise(model.cfg.head_samples))
            else:
                feats = model.forward_features(batch["input"])
            s = model.head_samples(feats)
            total, terms = sampled_spi_loss(model.cfg.head, s, model.size(s["shared"]), model.yaw(s["shared"]),
                                            {k: batch[k] for k in TARGET_KEYS}, self.cfg.loss)
            return total, terms, {"features": {k: v for k, v in feats.items() if k != "head_noise"},
                                  "valid": batch["mask"]}
        feats = model.forward_features(batch["input"])
        out = model.forward_head(feats)
        total, terms = spi_loss(out, {k: batch[k] for k in TARGET_KEYS}, self.cfg.loss)
        return total, terms, {"features": feats, "logits": out.heatmap, "valid": batch["mask"],
                              "outputs": out}

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        cfg = self._model_cfg("default")
        if noise_in_graph(cfg):
            return batch["input"], spi_index_noise(cfg)
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

    def card_extra(self, model: nn.Module) -> dict:
        """A sampled head's recalibration (``score_calibration``, ``centre_variance_scale``), read by the pipeline."""
        if not model.sampled:
            return {}
        c = self.calibration(model.eval())
        return {"score_calibration": list(c["platt"]), "centre_variance_scale": c["centre_variance_scale"]}

    def report(self, model: nn.Module) -> dict:
        return {"calibration": self.calibration(model.eval())} if model.sampled else {}

    def measure_calibration(self, model: nn.Module) -> dict:
        """Calibration of a sampled head on the validation streets (``glassbox.metrics.calibration``): fitted on
        the streets of even index, measured on the odd ones. Detections at the card's decoder settings; a
        detection is right when it matches a ground-truth box of its class at the class's BEV IoU (car 0.7,
        pedestrian and cyclist 0.5; boxes of fewer than ``eval_min_points`` points neither count nor make a
        detection wrong). Reported: score ECE before and after Platt scaling; the share of right detections whose
        true BEV centre lies inside the predicted 2-sigma ellipse (the decoded box's centre; the aleatoric +
        epistemic variance of the peak pixel's offset, radial and tangential), as predicted and after the fitted
        scale; the AUROC of each uncertainty for wrong vs right (the calibrated score's entropy, its epistemic part,
        the centre std, 1 - calibrated score)."""
        from glassbox.lidar.iou import bev_iou
        from glassbox.metrics import calibration as cal

        _, val = self.datasets()
        loader = DataLoader(val, batch_size=4, shuffle=False, collate_fn=self.collate)
        iou_min = np.array([0.7, 0.5, 0.5])
        rows, frame = [], 0
        for batch in loader:
            with torch.no_grad():
                out = model(batch["input"])
            out = {k: v.float().numpy() for k, v in out._asdict().items()}
            for i in range(batch["input"].shape[0]):
                o = {k: v[i] for k, v in out.items()}
                xyz = batch["xyz"][i].numpy()
                d = decode(o, xyz, batch["mask"][i].numpy(), self.cfg.decode)
                gt = batch["boxes"][i].numpy().reshape(-1, 7).astype(np.float64)
                gc = batch["box_classes"][i].numpy()
                ignored = batch["box_points"][i].numpy() < self.cfg.eval_min_points
                iou = bev_iou(d.boxes7(), gt) if len(d) and len(gt) else np.zeros((len(d), len(gt)))
                iou = np.where(d.classes[:, None] == gc[None, :], iou, 0.0)
                taken = np.zeros(len(gt), bool)
                r, c = d.pixels[:, 0], d.pixels[:, 1]
                p = xyz[r, c].astype(np.float64)
                phi = np.arctan2(p[:, 1], p[:, 0])
                at = peak_parts(model.cfg, o, d.classes, r, c)
                var = (at["offset_var_aleatoric"] + at["offset_var_epistemic"])[:2].T   # (N, 2) radial, tangential
                for j in np.argsort(-d.scores):                      # greedy, best score first
                    cand = np.where(taken, 0.0, iou[j])
                    g = int(np.argmax(cand)) if len(gt) else -1
                    hit = g >= 0 and cand[g] >= iou_min[d.classes[j]]
                    if hit and ignored[g]:
                        taken[g] = True
                        continue                                      # a "don't care" box: neither right nor wrong
                    err = np.zeros(2)
                    if hit:
                        taken[g] = True
                        e = d.centers[j, :2] - gt[g, :2]
                        cp, sp = np.cos(phi[j]), np.sin(phi[j])
                        err = np.array([cp * e[0] + sp * e[1], -sp * e[0] + cp * e[1]])   # into the viewing frame
                    rows.append((frame % 2, d.scores[j], hit, at["score_epistemic"][j],
                                 *err, *var[j]))
                frame += 1
        return cal.summarise_detection_calibration(np.array(rows, np.float64))

    def export(self, model: nn.Module, path: str) -> dict:
        x = torch.zeros(1, model.cfg.in_channels, self.projection.height, self.projection.width)
        inputs = {INPUT_NAME: x}
        if noise_in_graph(model.cfg):              # the noise index is an input: the runtime fixes it
            inputs["head_noise"] = model.index_noise.clone()
        spec = export_with_features(model, inputs, path, dynamic_spatial=True)
        spec["classes"] = list(DETECTION_CLASSES)
        spec.update(card_extra(self.projection, model.cfg, self.cfg.decode, self.sensor))
        return spec
