"""Trainer task ``segmentation``: BiSeNet on synthetic camera frames (binary traversable or multi-class).

Frames come from ``glassbox.sim``: rendered once per (split, index) from fixed seeds and cached as ``.npz``
under ``data.cache_dir`` (train and validation use disjoint scene seeds: 0, 1, ... and 100000, ...; each scene
gives ``frames_per_scene`` ego poses; lighting cycles through ``data.lightings``). The fusion and refiner
tasks read the same cache. A cached frame holds ``rgb`` (H, W, 3) uint8, ``thermal`` (H_t, W_t) uint8,
``semantic`` (H, W) uint8, ``boxes2d`` (M, 4) float32 pixel xyxy, ``box_classes`` (M,) int64, ``homography``
(3, 3) thermal-to-RGB pixels and ``lighting``.

Labels: ``mode = "binary"`` maps road and sidewalk to "traversable" (``glassbox.classes.BINARY_CLASSES``), the
seed's two-class setting; ``mode = "multiclass"`` keeps ``SEMANTIC_CLASSES``. The principal loss is the seed's
per-pixel hinge (``loss = "hinge"``), cross-entropy (``"ce"``) or hard-pixel cross-entropy (``"ohem"``), plus
CE on the two auxiliary heads. Images are resized to ``input_size`` (bilinear; labels nearest); training flips
them and, with probability ``photometric``, corrupts the image photometrically (``photometric_jitter``).
Headline metric: mIoU over the validation frames.

Shipped models (``config/train/segmentation.yaml``, one section each):
``glassbox-train --config config/train/segmentation.yaml --section multiclass --out runs/bisenet --export models/``
(``--section binary`` for ``bisenet_binary``).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

from glassbox.classes import BINARY_CLASSES, SEMANTIC_CLASSES, TRAVERSABLE_SEMANTIC_IDS
from glassbox.config import from_dict, to_dict
from glassbox.metrics.segmentation import SegmentationMeter
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig, bisenet_index_noise
from glassbox.vision.corruptions import random_corruption
from glassbox.export import export_with_features
from glassbox.vision.hinge import SegmentationLoss
from glassbox_trainer.checkpoint import load_state_dict_file
from glassbox_trainer.data import EpochDataset

SPLIT_SEED_BASE = {"train": 0, "val": 100_000}


@dataclass(frozen=True)
class CameraDataConfig:
    width: int = 320
    height: int = 256
    lightings: tuple[str, ...] = ("day", "glare", "night")
    frames_per_scene: int = 6
    cache_dir: str = "~/.cache/glassbox/camera"


def frame_path(cfg: CameraDataConfig, split: str, index: int) -> Path:
    name = f"{cfg.width}x{cfg.height}_{'-'.join(cfg.lightings)}_{cfg.frames_per_scene}perscene"
    root = Path(os.path.expanduser(cfg.cache_dir)) / name
    return root / split / f"{index:06d}.npz"


def render_frame(cfg: CameraDataConfig, split: str, index: int) -> dict[str, np.ndarray]:
    """Render (or read from the cache) frame ``index`` of ``split``."""
    path = frame_path(cfg, split, index)
    if path.is_file():
        with np.load(path) as z:
            return {k: z[k] for k in z.files}
    from glassbox.sim import make_scene, render_cameras, rgb_camera, thermal_camera

    scene_seed = SPLIT_SEED_BASE[split] + index // cfg.frames_per_scene
    k = index % cfg.frames_per_scene
    scene = make_scene(scene_seed)
    t = 1.5 * k + 0.37 * (scene_seed % 5)
    lighting = cfg.lightings[(index + scene_seed) % len(cfg.lightings)]
    frame = render_cameras(scene, rgb_camera(width=cfg.width, height=cfg.height),
                           thermal_camera(width=cfg.width, height=cfg.height), scene.ego_pose(t), lighting,
                           seed=scene_seed * 7919 + k, t=t)
    out = {"rgb": frame.rgb, "thermal": frame.thermal8, "semantic": frame.semantic.astype(np.uint8),
           "boxes2d": frame.boxes2d.astype(np.float32), "box_classes": frame.box_classes.astype(np.int64),
           "homography": frame.homography_thermal_to_rgb.astype(np.float64), "lighting": np.array(lighting)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    np.savez_compressed(tmp, **out)
    os.replace(tmp, path)
    return out


def frame_indices(data: CameraDataConfig, split: str, count: int, lightings: tuple[str, ...] | None = None
                  ) -> list[int]:
    """The first ``count`` frame indices of ``split`` (optionally only those with one of ``lightings``)."""
    if lightings is None:
        return list(range(count))
    out, index = [], 0
    while len(out) < count:
        scene_seed = SPLIT_SEED_BASE[split] + index // data.frames_per_scene
        if data.lightings[(index + scene_seed) % len(data.lightings)] in lightings:
            out.append(index)
        index += 1
    return out


def photometric_jitter(image: Tensor, rng: np.random.Generator, probability: float) -> Tensor:
    """With ``probability``, a chain of one to three random photometric corruptions (brightness, contrast, colour
    cast, hue, noise, veiling glare: ``glassbox.vision.corruptions.random_corruption``) of a (3, H, W) image in
    [0, 1], drawn from ``rng``; otherwise the image unchanged. Trains the camera models for the exposure and
    white-balance spread of real cameras, which one synthetic renderer does not have."""
    if probability <= 0.0 or rng.random() >= probability:
        return image
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    return random_corruption(image[None], gen, clean_fraction=0.0)[0]


def to_labels(semantic: np.ndarray, mode: str) -> np.ndarray:
    """Semantic ids -> training labels (binary: 1 = traversable)."""
    if mode == "binary":
        return np.isin(semantic, TRAVERSABLE_SEMANTIC_IDS).astype(np.int64)
    return semantic.astype(np.int64)


@dataclass(frozen=True)
class SegmentationTaskConfig:
    mode: str = "binary"                     # "binary" | "multiclass"
    loss: str = "hinge"                      # principal loss: "hinge" | "ce" | "ohem" (glassbox.vision.hinge)
    aux_weight: float = 1.0
    model: dict = field(default_factory=dict)
    input_size: tuple[int, int] = (160, 128)  # (width, height), divisible by 32
    train_frames: int = 360
    val_frames: int = 90
    photometric: float = 0.0                 # probability of a random photometric corruption of a training image
    init_weights: str = ""                   # state dict (.pt) the model starts from (a second, fine-tuning stage)
    freeze_trunk: bool = False               # train the classifier only (a sampled head on a trained trunk)
    fit_decision_bias: bool = False          # labels = argmax(logits + b), b fitted for mIoU (``decision_bias``)
    data: CameraDataConfig = CameraDataConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("binary", "multiclass"):
            raise ValueError(f"mode must be 'binary' or 'multiclass', got {self.mode!r}")
        if self.input_size[0] % 32 or self.input_size[1] % 32:
            raise ValueError(f"input_size must be divisible by 32, got {self.input_size}")


class SegmentationFrames(EpochDataset):
    """(image float (3, H, W) in [0, 1], labels int64 (H, W)) at ``input_size``; optional flips in training."""

    def __init__(self, cfg: SegmentationTaskConfig, split: str, indices: list[int], augment: bool) -> None:
        self.cfg, self.split, self.indices, self.augment = cfg, split, indices, augment
        self.seed = cfg.seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        frame = render_frame(self.cfg.data, self.split, self.indices[i])
        w, h = self.cfg.input_size
        rgb = cv2.resize(frame["rgb"], (w, h), interpolation=cv2.INTER_AREA)
        sem = cv2.resize(frame["semantic"], (w, h), interpolation=cv2.INTER_NEAREST)
        rng = self.item_rng(i) if self.augment else None
        if rng is not None and rng.random() < 0.5:
            rgb, sem = rgb[:, ::-1], sem[:, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        if rng is not None:
            image = photometric_jitter(image, rng, self.cfg.photometric)
        return {"image": image, "labels": torch.from_numpy(to_labels(np.ascontiguousarray(sem), self.cfg.mode)),
                "lighting": str(frame["lighting"])}


class SegmentationTask:
    name = "segmentation"
    metric = "miou"
    eloss_groups: list[list[str]] = [["context1", "context2", "context3", "context4", "context5"]]

    def __init__(self, cfg: dict) -> None:
        self.cfg = from_dict(SegmentationTaskConfig, cfg, source="segmentation task")
        self.classes = BINARY_CLASSES if self.cfg.mode == "binary" else SEMANTIC_CLASSES
        self.criterion = SegmentationLoss(self.cfg.loss, self.cfg.aux_weight)

    def model_config(self) -> BiSeNetConfig:
        return from_dict(BiSeNetConfig, {"num_classes": len(self.classes), **self.cfg.model}, source="model")

    def build_model(self, size: str = "default") -> nn.Module:
        cfg = self.model_config()
        if size == "teacher":
            cfg = BiSeNetConfig(**{**cfg.__dict__, "context": "resnet18"})
        model = BiSeNet(cfg)
        if self.cfg.init_weights and size in ("default", "student"):
            state = load_state_dict_file(os.path.expanduser(self.cfg.init_weights))
            if model.sampled and "classifier.weight" in state:
                state = model.variational_state(state)
            missing, unexpected = model.load_state_dict(state, strict=False)
            new = [k for k in missing if not k.startswith(BiSeNet.DETAIL_MODULES)]
            if new or unexpected:
                raise ValueError(f"init_weights {self.cfg.init_weights}: missing {new[:3]}, unexpected "
                                 f"{unexpected[:3]} (only the detail step may be new)")
        if self.cfg.freeze_trunk:
            for name, p in model.named_parameters():
                p.requires_grad_(name.startswith("classifier."))
        return model

    def datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.data
        return (SegmentationFrames(self.cfg, "train", frame_indices(d, "train", self.cfg.train_frames), True),
                SegmentationFrames(self.cfg, "val", frame_indices(d, "val", self.cfg.val_frames), False))

    def collate(self, items: list) -> dict:
        return {"image": torch.stack([it["image"] for it in items]),
                "labels": torch.stack([it["labels"] for it in items]),
                "lighting": [it.get("lighting", "") for it in items]}

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        if self.cfg.freeze_trunk:
            model.eval()                         # batch norm statistics of the trunk stay those it was trained with
            with torch.no_grad():
                feats = model.forward_features(batch["image"], model.classifier.draw(model.cfg.head_samples)
                                               if model.sampled else None)
            aux = []
        else:
            feats = model.forward_features(batch["image"])
            aux = model.forward_aux(feats)
        if model.sampled and model.cfg.head == "mc_dropout":
            # dropout training: each sample's loss, averaged (the variational head is trained on its predictive)
            s = float(model.cfg.output_stride)
            parts = [self.criterion(F.interpolate(z, scale_factor=s, mode="bilinear", align_corners=False), aux,
                                    batch["labels"]) for z in model.head_samples(feats)]
            total = torch.stack([p[0] for p in parts]).mean()
            return total, parts[0][1], {"features": feats, "labels": batch["labels"]}
        logits = model.forward_head(feats).logits
        total, terms = self.criterion(logits, aux, batch["labels"])
        return total, terms, {"features": feats, "logits": logits, "labels": batch["labels"]}

    def decision_bias(self, model: nn.Module) -> dict:
        """With ``fit_decision_bias``: the per-class offsets of the label decision (``glassbox.metrics.
        segmentation.fit_decision_bias``), fitted on the validation streets of even index (every second pixel in
        both directions) and measured on the odd ones, before and after; computed once per model."""
        key = (id(model), tuple(float(p.detach().sum()) for p in model.parameters()))
        if getattr(self, "_decision_bias", (None,))[0] == key:
            return self._decision_bias[1]
        from glassbox.metrics.segmentation import fit_decision_bias
        _, val = self.datasets()
        logits, labels = [], []
        for batch in DataLoader(val, batch_size=8, shuffle=False, collate_fn=self.collate):
            with torch.no_grad():
                logits.append(model(batch["image"]).logits[:, :, ::2, ::2].numpy().astype(np.float16))
            labels.append(batch["labels"][:, ::2, ::2].numpy())
        logits, labels = np.concatenate(logits), np.concatenate(labels)
        odd = (np.asarray(val.indices) // self.cfg.data.frames_per_scene) % 2 == 1
        bias, fit_miou = fit_decision_bias(logits[~odd], labels[~odd])
        k = len(self.classes)

        def scores(b: np.ndarray) -> dict:
            meter = SegmentationMeter(k)
            meter.update((logits[odd] + b.astype(np.float16)[None, :, None, None]).argmax(1), labels[odd])
            res = meter.result()
            return {"miou": float(res["miou"]), **{f"iou_{n}": float(v) for n, v in zip(self.classes, res["iou"])}}

        out = {"bias": [float(b) for b in bias], "fit_miou_even": fit_miou, "odd_plain": scores(np.zeros(k)),
               "odd_biased": scores(bias)}
        self._decision_bias = (key, out)
        return out

    def _bias(self, model: nn.Module) -> torch.Tensor | None:
        if not self.cfg.fit_decision_bias:
            return None
        return torch.tensor(self.decision_bias(model.eval())["bias"], dtype=torch.float32)[None, :, None, None]

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        meter = SegmentationMeter(len(self.classes))
        bias = self._bias(model)
        for batch in loader:
            logits = model(batch["image"]).logits
            meter.update((logits if bias is None else logits + bias).argmax(dim=1).numpy(), batch["labels"].numpy())
        res = meter.result()
        out = {"miou": float(res["miou"]), "pixel_accuracy": float(res["pixel_accuracy"])}
        out.update({f"iou_{name}": float(v) for name, v in zip(self.classes, res["iou"])})
        return out

    def report(self, model: nn.Module) -> dict:
        """mIoU and per-class IoU of the validation frames of each lighting."""
        _, val = self.datasets()
        meters: dict[str, SegmentationMeter] = {}
        loader = DataLoader(val, batch_size=8, shuffle=False, collate_fn=self.collate)
        bias = self._bias(model)
        for batch in loader:
            logits = model(batch["image"]).logits
            pred = (logits if bias is None else logits + bias).argmax(dim=1).numpy()
            for b, light in enumerate(batch["lighting"]):
                meters.setdefault(light, SegmentationMeter(len(self.classes))).update(pred[b:b + 1],
                                                                                     batch["labels"][b:b + 1].numpy())
        out = {}
        for light, meter in sorted(meters.items()):
            res = meter.result()
            out[light] = {"miou": float(res["miou"]),
                          **{f"iou_{name}": float(v) for name, v in zip(self.classes, res["iou"])}}
        report = {"by_lighting": out}
        if self.cfg.fit_decision_bias:
            report["decision_bias"] = self.decision_bias(model)
        if model.sampled:
            report["calibration"] = self.pixel_calibration(model, val)
        return report

    def pixel_calibration(self, model: nn.Module, val: Dataset, pixels_per_frame: int = 2000) -> dict:
        """Per-pixel calibration of a sampled classifier on the validation frames (a fixed random subset of
        ``pixels_per_frame`` labelled pixels each): ECE of the top predictive probability, and the AUROC of the
        predictive entropy and of its epistemic part (mutual information) for wrong vs right pixels."""
        from glassbox.metrics import calibration as cal

        rng = np.random.default_rng(0)
        conf, right, ent, epi = [], [], [], []
        for batch in DataLoader(val, batch_size=8, shuffle=False, collate_fn=self.collate):
            with torch.no_grad():
                out = model(batch["image"])
            p = torch.softmax(out.logits, dim=1)
            top, pred = p.max(dim=1)
            h = -(p * torch.log(p.clamp(min=1e-8))).sum(1)
            for b in range(p.shape[0]):
                labels = batch["labels"][b].numpy().ravel()
                idx = np.flatnonzero(labels != 255)
                idx = rng.choice(idx, min(pixels_per_frame, len(idx)), replace=False)
                conf.append(top[b].numpy().ravel()[idx])
                right.append(pred[b].numpy().ravel()[idx] == labels[idx])
                ent.append(h[b].numpy().ravel()[idx])
                epi.append(out.epistemic[b, 0].numpy().ravel()[idx])
        conf, right, ent, epi = map(np.concatenate, (conf, right, ent, epi))
        return {"pixels": int(len(conf)), "accuracy": float(right.mean()),
                "ece": cal.expected_calibration_error(conf, right),
                "auroc_entropy": cal.auroc(ent, ~right), "auroc_epistemic": cal.auroc(epi, ~right),
                "mean_epistemic_right": float(epi[right].mean()), "mean_epistemic_wrong": float(epi[~right].mean())}

    card_task = "semantic_segmentation"

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        cfg = self.model_config()
        return (batch["image"], bisenet_index_noise(cfg)) if cfg.head != "deterministic" else (batch["image"],)

    def card_extra(self, model: nn.Module) -> dict:
        extra = {"model_config": to_dict(model.cfg), "input_size": list(self.cfg.input_size), "mode": self.cfg.mode,
                 "loss": self.cfg.loss}
        if self.cfg.fit_decision_bias:
            extra["decision_bias"] = self.decision_bias(model.eval())["bias"]
        return extra

    def export(self, model: nn.Module, path: str) -> dict:
        w, h = self.cfg.input_size
        inputs = {"image": torch.rand(1, 3, h, w)}
        if model.sampled:                          # the noise index is an input: the runtime fixes it
            inputs["head_noise"] = model.index_noise.clone()
        spec = export_with_features(model.eval(), inputs, path, dynamic_spatial=True,
                                    feature_names=["spatial", "context3", "context4", "context5", "fused"])
        spec["inputs"]["image"]["range"] = [0.0, 1.0]
        spec["classes"] = list(self.classes)
        return spec
