"""Trainer task ``fusion``: GEM RGB-thermal detection on synthetic day, glare and night frames.

Frames come from the segmentation task's cache of ``glassbox.sim`` renders. The thermal image is warped into
the RGB image with the pair's homography (``warp_thermal``, exactly what the fusion pipeline does), so both
backbones see the same geometry; RGB pixels outside the thermal field of view get thermal 0. Training uses
horizontal flips, photometric corruptions of the RGB image (probability ``photometric``) and *sensor
dropout*: with probability ``dropout`` per frame one modality (never both) is replaced by a black frame, so
that the reliability weights learn to fall for a dead sensor and the other stream carries the detection; the dropped sensor's reliability weight is penalised (``dead_sensor_weight``
times its value), a label that the augmentation gives for free. The paper trains the weight networks without
any direct signal and relies on a pretrained backbone's activations fading for a degraded input; backbones
trained from scratch with batch norm give a blank frame non-zero activations, so without this term a black
frame does not lower its weight (measured: it rose slightly). Loss: CenterNet focal + size + offset
(``glassbox.vision.centernet``). Metric: COCO mAP@0.5 over the validation frames (also reported per lighting), with
ground-truth boxes whose shorter side is below ``eval_min_box_px`` (at the model's input size) treated as ignore
regions.

Shipped models (``config/train/fusion.yaml``, sections ``fused``, ``rgb``, ``thermal``):
``glassbox-train --config config/train/fusion.yaml --section fused --out runs/gem --export models/``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import math
import os

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from glassbox.classes import DETECTION_CLASSES
from glassbox.config import from_dict, to_dict
from glassbox.metrics.detection2d import Detections2D, GroundTruth2D, evaluate_detections_2d
from glassbox.vision.centernet import centernet_loss, decode, encode_targets, focal_loss_prob
from glassbox.vnn import mixture_gaussian_nll
from glassbox.export import export_with_features
from glassbox.vision.gem import Gem, GemConfig, index_noise, noise_in_graph, peak_parts
from glassbox_trainer.checkpoint import load_state_dict_file
from glassbox_trainer.data import EpochDataset
from glassbox_trainer.task import MeasuredCalibration
from glassbox_trainer.tasks.segmentation import CameraDataConfig, frame_indices, photometric_jitter, render_frame


def warp_thermal(thermal: np.ndarray, homography: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Thermal image -> RGB image geometry (``size`` = (width, height)); pixels it does not cover become 0."""
    return cv2.warpPerspective(thermal, np.asarray(homography, np.float64), size, flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_CONSTANT, borderValue=0)


@dataclass(frozen=True)
class FusionTaskConfig:
    model: dict = field(default_factory=dict)
    train_frames: int = 240
    val_frames: int = 90
    dropout: float = 0.15
    dead_sensor_weight: float = 1.0  # weight of the penalty on a blacked-out sensor's reliability weight
    input_size: tuple[int, int] = (320, 256)   # (width, height) the frames are resized to; divisible by 8
    min_box_px: float = 4.0          # ground-truth boxes smaller than this (either side, at input_size) not trained on
    eval_min_box_px: float = 8.0     # smaller ground-truth boxes are "ignore" regions in evaluation
    photometric: float = 0.0         # probability of a random photometric corruption of a training RGB image
    rgb_fallback_card: str = ""      # the card's RGB-only fallback for an absent thermal stream (card-relative)
    init_weights: str = ""           # weights (.pt) to start from; a deterministic GEM's load into a sampled head
    freeze_trunk: bool = False       # train the output head only (the trunk in eval mode, without gradients)
    data: CameraDataConfig = CameraDataConfig()
    seed: int = 0


class FusionFrames(EpochDataset):
    def __init__(self, cfg: FusionTaskConfig, split: str, indices: list[int], augment: bool) -> None:
        self.cfg, self.split, self.indices, self.augment = cfg, split, indices, augment
        self.seed = cfg.seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        f = render_frame(self.cfg.data, self.split, self.indices[i])
        w, h = self.cfg.input_size
        sx, sy = w / f["rgb"].shape[1], h / f["rgb"].shape[0]
        hom = np.diag([sx, sy, 1.0]) @ f["homography"]                          # thermal px -> resized RGB px
        rgb = cv2.resize(f["rgb"], (w, h), interpolation=cv2.INTER_AREA)
        th = warp_thermal(f["thermal"], hom, (w, h))
        boxes = f["boxes2d"].astype(np.float32) * np.array([sx, sy, sx, sy], np.float32)
        classes = f["box_classes"]
        dropped = 0
        if self.augment:
            rng = self.item_rng(i)
            if rng.random() < 0.5:
                rgb, th = rgb[:, ::-1], th[:, ::-1]
                boxes = np.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=1)
            u = rng.random()
            if u < self.cfg.dropout:
                rgb, dropped = np.zeros_like(rgb), 1
            elif u < 2 * self.cfg.dropout:
                th, dropped = np.zeros_like(th), 2
        keep = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= self.cfg.min_box_px
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        if self.augment and dropped != 1:
            image = photometric_jitter(image, rng, self.cfg.photometric)
        return {"rgb": image,
                "thermal": torch.from_numpy(np.ascontiguousarray(th))[None].float() / 255.0,
                "boxes": boxes[keep], "classes": classes[keep], "all_boxes": boxes, "all_classes": classes,
                "lighting": str(f["lighting"]), "dropped": dropped}


def sampled_head_loss(kind: str, samples: dict[str, Tensor], batch: dict, size_weight: float = 0.1,
                      offset_weight: float = 1.0) -> tuple[Tensor, dict[str, float]]:
    """Loss of a sampled GEM head over its ``T`` samples: the focal loss of the heatmap and the Gaussian
    negative log-likelihood of (w, h) and (dx, dy) at centre cells, with the CenterNet weights.

    ``variational``: of the predictive (the mean probability; the mixture of the samples' Gaussians), so the
    spread of the samples is learnt where it explains the data. ``mc_dropout``: the mean over samples of each
    sample's loss, which is dropout training with ``T`` masks per step.
    """
    p = torch.sigmoid(samples["heat"])                                          # (T, B, K, h, w)
    m = batch["mask"][:, None]                                                  # (B, 1, h, w)
    n = m.sum().clamp(min=1.0)
    y = torch.cat([batch["size"], batch["offset"]], dim=1)                      # (B, 4, h, w)
    box, log_var = samples["box"], samples["box_log_var"]
    if kind == "variational":
        focal = focal_loss_prob(p.mean(0), batch["heatmap"])
        nll = mixture_gaussian_nll(y, box, log_var)                             # (B, 4, h, w)
    else:
        focal = torch.stack([focal_loss_prob(pt, batch["heatmap"]) for pt in p]).mean()
        nll = 0.5 * ((y - box).square() / log_var.exp() + log_var + math.log(2 * math.pi)).mean(0)
    l_size, l_off = (nll[:, :2] * m).sum() / n, (nll[:, 2:] * m).sum() / n
    total = focal + size_weight * l_size + offset_weight * l_off
    return total, {"focal": float(focal.detach()), "size_nll": float(l_size.detach()),
                   "offset_nll": float(l_off.detach())}


class FusionTask(MeasuredCalibration):
    name = "fusion"
    metric = "map50"
    eloss_groups: list[list[str]] = []

    def __init__(self, cfg: dict) -> None:
        self.cfg = from_dict(FusionTaskConfig, cfg, source="fusion task")
        self.stride = self.model_config().stride       # of the targets collate encodes

    def model_config(self) -> GemConfig:
        return from_dict(GemConfig, {"num_classes": len(DETECTION_CLASSES), **self.cfg.model}, source="model")

    def build_model(self, size: str = "default") -> nn.Module:
        cfg = self.model_config()
        if size == "teacher":
            cfg = GemConfig(**{**cfg.__dict__, "backbone": "resnet"})
        model = Gem(cfg)
        if self.cfg.init_weights and size in ("default", "student"):
            state = load_state_dict_file(os.path.expanduser(self.cfg.init_weights))
            if model.sampled and not any(k.startswith("heatmap.") and k.count(".") > 1 for k in state):
                state = model.variational_state(state)
            model.load_state_dict(state)
        if self.cfg.freeze_trunk:
            for name, p in model.named_parameters():
                p.requires_grad_(name.split(".")[0] in ("heatmap", "size", "offset"))
        return model

    def datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.data
        return (FusionFrames(self.cfg, "train", frame_indices(d, "train", self.cfg.train_frames), True),
                FusionFrames(self.cfg, "val", frame_indices(d, "val", self.cfg.val_frames), False))

    def collate(self, items: list) -> dict:
        rgb = torch.stack([it["rgb"] for it in items])
        stride = self.stride
        h, w = rgb.shape[2] // stride, rgb.shape[3] // stride
        k = len(DETECTION_CLASSES)
        targets = [encode_targets(it["boxes"], it["classes"], (h, w), stride, k) for it in items]
        batch = {"rgb": rgb, "thermal": torch.stack([it["thermal"] for it in items]),
                 "gt": [GroundTruth2D(it["all_boxes"], it["all_classes"], self._ignored(it["all_boxes"]))
                        for it in items],
                 "lighting": [it["lighting"] for it in items],
                 "dropped": torch.tensor([it["dropped"] for it in items])}
        for key in ("heatmap", "size", "offset", "mask"):
            batch[key] = torch.from_numpy(np.stack([t[key] for t in targets]))
        return batch

    def _ignored(self, boxes: np.ndarray) -> np.ndarray:
        return np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) < self.cfg.eval_min_box_px

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        if self.cfg.freeze_trunk:
            model.eval()                         # batch norm statistics of the trunk stay those it was trained with
            with torch.no_grad():
                feats = model.forward_features(batch["rgb"], batch["thermal"], model.draw_noise(
                    model.cfg.head_samples) if model.sampled else None)
        else:
            feats = model.forward_features(batch["rgb"], batch["thermal"])
        if model.sampled:
            total, terms = sampled_head_loss(model.cfg.head, model.head_samples(feats), batch)
            return total, terms, {"features": feats}
        heat, size, offset, w_r, w_t = model.forward_head(feats)
        total, terms = centernet_loss(heat, size, offset, batch)
        if self.cfg.dead_sensor_weight > 0 and "dropped" in batch:
            dead = (w_r * (batch["dropped"] == 1) + w_t * (batch["dropped"] == 2)).sum() / heat.shape[0]
            total = total + self.cfg.dead_sensor_weight * dead
            terms["dead_sensor"] = float(dead.detach())
        terms["w_rgb"], terms["w_thermal"] = float(w_r.mean().detach()), float(w_t.mean().detach())
        return total, terms, {"features": feats, "logits": heat}

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        dets, gts, lights, weights = [], [], [], []
        for batch in loader:
            heat, size, offset, w_r, w_t = model(batch["rgb"], batch["thermal"])[:5]
            for b in range(heat.shape[0]):
                boxes, scores, classes = decode(heat[b].numpy(), size[b].numpy(), offset[b].numpy(), model.stride,
                                                score_threshold=0.05)
                dets.append(Detections2D(boxes, scores, classes))
            gts.extend(batch["gt"])
            lights.extend(batch["lighting"])
            weights.append(torch.stack([w_r, w_t], dim=1).numpy())
        k = len(DETECTION_CLASSES)
        res = evaluate_detections_2d(dets, gts, k)
        out = {"map50": res["map50"], "map": res["map"]}
        out.update({f"ap50_{c}": float(v) for c, v in zip(DETECTION_CLASSES, res["ap50"])})
        w = np.concatenate(weights)
        for light in sorted(set(lights)):
            sel = [i for i, li in enumerate(lights) if li == light]
            r = evaluate_detections_2d([dets[i] for i in sel], [gts[i] for i in sel], k)
            out[f"map50_{light}"] = r["map50"]
            out[f"w_rgb_{light}"] = float(w[sel, 0].mean())
            out[f"w_thermal_{light}"] = float(w[sel, 1].mean())
        return out

    def report(self, model: nn.Module) -> dict:
        """mAP50 overall and per lighting with one sensor absent (its input all zeros, what the fusion node feeds
        the network when that stream is missing): ``thermal_absent`` is the node's RGB-only fallback."""
        _, val = self.datasets()
        out = {}
        for absent, key in (("thermal", "thermal_absent"), ("rgb", "rgb_absent")):
            loader = DataLoader(val, batch_size=8, shuffle=False, collate_fn=lambda items, a=absent: self._blank(
                self.collate(items), a))
            res = self.evaluate(model, loader)
            out[key] = {k: v for k, v in res.items() if k.startswith("map50") or k.startswith("ap50")}
        if model.sampled:
            out["calibration"] = self.calibration(model)
        return out

    def measure_calibration(self, model: nn.Module, score_threshold: float = 0.3) -> dict:
        """Calibration of a sampled head's uncertainty on the validation frames (``glassbox.metrics.
        calibration``): recalibration fitted on the streets of even index, measured on the odd ones.

        Detections above ``score_threshold`` (the card's), right at IoU 0.5. Reported: score ECE before and after
        Platt scaling; the share of right detections whose true centre is inside the predicted 2-sigma ellipse
        (aleatoric + epistemic variance of the centre), as predicted and after the fitted scale; and the AUROC
        of each uncertainty for wrong vs right: the calibrated score's entropy, its epistemic part (mutual
        information), the centre std, and 1 - calibrated score.
        """
        from glassbox.metrics import calibration as cal

        _, val = self.datasets()
        loader = DataLoader(val, batch_size=8, shuffle=False, collate_fn=self.collate)
        rows, frame = [], 0
        for batch in loader:
            with torch.no_grad():
                out = model(batch["rgb"], batch["thermal"])
            s = model.stride
            for b, gt in enumerate(batch["gt"]):
                boxes, scores, classes, cell = decode(out.heatmap[b].numpy(), out.size[b].numpy(),
                                                      out.offset[b].numpy(), s, score_threshold=score_threshold,
                                                      cells=True)
                matched, kept = cal.match_detections(boxes, scores, classes, gt.boxes, gt.classes, gt.ignored())
                ys, xs = cell[:, 0], cell[:, 1]
                at = peak_parts(model.cfg, {k: v[b].numpy() for k, v in out._asdict().items()}, classes, ys, xs)
                var = (at["box_var_aleatoric"] + at["box_var_epistemic"])[2:].T * s * s
                centre = 0.5 * (boxes[:, :2] + boxes[:, 2:])
                g = gt.boxes[np.maximum(matched, 0)] if len(gt.boxes) else np.zeros((len(boxes), 4))
                error = centre - 0.5 * (g[:, :2] + g[:, 2:])
                street = val.indices[frame] // self.cfg.data.frames_per_scene
                for i in np.flatnonzero(kept):
                    rows.append((street % 2, scores[i], matched[i] >= 0,
                                 float(at["score_epistemic"][i]), *error[i], *var[i]))
                frame += 1
        return cal.summarise_detection_calibration(np.array(rows, np.float64))

    @staticmethod
    def _blank(batch: dict, absent: str) -> dict:
        batch[absent] = torch.zeros_like(batch[absent])
        return batch

    card_task = "rgbt_detection"

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        cfg = self.model_config()
        if noise_in_graph(cfg):
            return batch["rgb"], batch["thermal"], index_noise(cfg)
        return batch["rgb"], batch["thermal"]

    def card_extra(self, model: nn.Module) -> dict:
        frame = render_frame(self.cfg.data, "val", 0)
        return {"model_config": to_dict(model.cfg), "input_size": list(self.cfg.input_size), "score_threshold": 0.3,
                "homography_thermal_to_rgb": np.asarray(frame["homography"], np.float64).tolist(),
                "camera_size": [int(frame["rgb"].shape[1]), int(frame["rgb"].shape[0])],
                **({"rgb_fallback_card": self.cfg.rgb_fallback_card} if self.cfg.rgb_fallback_card else {}),
                **(self._recalibration(model) if model.sampled else {})}

    def _recalibration(self, model: nn.Module) -> dict:
        c = self.calibration(model.eval())
        return {"score_calibration": list(c["platt"]), "centre_variance_scale": c["centre_variance_scale"]}

    def export(self, model: nn.Module, path: str) -> dict:
        w, h = self.cfg.input_size
        example = (torch.rand(1, 3, h, w), torch.rand(1, 1, h, w))
        names = ("rgb", "thermal")
        if noise_in_graph(model.cfg):              # the noise index is an input: the runtime fixes it
            example, names = (*example, model.index_noise.clone()), (*names, "head_noise")
        feats = [n for n in ("feat_rgb", "feat_thermal", "fused", "neck") if n in model.forward_features(*example)]
        spec = export_with_features(model.eval(), dict(zip(names, example)), path,
                                    feature_names=feats, dynamic_spatial=True)
        spec["stride"] = model.stride
        spec["classes"] = list(DETECTION_CLASSES)
        return spec
