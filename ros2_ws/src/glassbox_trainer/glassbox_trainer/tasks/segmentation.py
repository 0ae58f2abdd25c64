"""Trainer task ``segmentation``: BiSeNet on synthetic camera frames (binary traversable or multi-class).

Frames come from ``glassbox.sim``: rendered once per (split, index) from fixed seeds and cached as ``.npz``
under ``data.cache_dir`` (train and validation use disjoint scene seeds: 0, 1, ... and 100000, ...; each scene
gives ``frames_per_scene`` ego poses; lighting cycles through ``data.lightings``). The fusion and refiner
tasks read the same cache. A cached frame holds ``rgb`` (H, W, 3) uint8, ``thermal`` (H_t, W_t) uint8,
``semantic`` (H, W) uint8, ``boxes2d`` (M, 4) float32 pixel xyxy, ``box_classes`` (M,) int64, ``homography``
(3, 3) thermal-to-RGB pixels and ``lighting``.

Labels: ``mode = "binary"`` maps road and sidewalk to "traversable" (``glassbox.classes.BINARY_CLASSES``), the
seed's two-class setting; ``mode = "multiclass"`` keeps ``SEMANTIC_CLASSES``. The principal loss is the seed's
per-pixel hinge (``loss = "hinge"``) or cross-entropy (``"ce"``), plus CE on the two auxiliary heads. Images are
resized to ``input_size`` (bilinear; labels nearest). Headline metric: mIoU over the validation frames.

Stand-alone run (the documented command for the shipped models):
``python -m glassbox_trainer.tasks.segmentation --config config/train/segmentation.yaml --out models/bisenet``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from glassbox.classes import BINARY_CLASSES, SEMANTIC_CLASSES, TRAVERSABLE_SEMANTIC_IDS
from glassbox.config import from_dict, to_dict
from glassbox.metrics.segmentation import SegmentationMeter
from glassbox.vision.bisenet import BiSeNet, BiSeNetConfig
from glassbox.export import export_with_features
from glassbox.vision.hinge import SegmentationLoss

SPLIT_SEED_BASE = {"train": 0, "val": 100_000}


@dataclass(frozen=True)
class CameraDataConfig:
    width: int = 320
    height: int = 256
    lightings: tuple[str, ...] = ("day", "glare", "night")
    frames_per_scene: int = 6
    cache_dir: str = "~/.cache/glassbox/camera"


def frame_path(cfg: CameraDataConfig, split: str, index: int) -> Path:
    root = Path(os.path.expanduser(cfg.cache_dir)) / f"{cfg.width}x{cfg.height}_{'-'.join(cfg.lightings)}"
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


def to_labels(semantic: np.ndarray, mode: str) -> np.ndarray:
    """Semantic ids -> training labels (binary: 1 = traversable)."""
    if mode == "binary":
        return np.isin(semantic, TRAVERSABLE_SEMANTIC_IDS).astype(np.int64)
    return semantic.astype(np.int64)


@dataclass(frozen=True)
class SegmentationTaskConfig:
    mode: str = "binary"                     # "binary" | "multiclass"
    loss: str = "hinge"                      # principal loss: "hinge" | "ce"
    aux_weight: float = 1.0
    model: dict = field(default_factory=dict)
    input_size: tuple[int, int] = (160, 128)  # (width, height), divisible by 32
    train_frames: int = 360
    val_frames: int = 90
    data: CameraDataConfig = CameraDataConfig()
    seed: int = 0

    def __post_init__(self) -> None:
        if self.mode not in ("binary", "multiclass"):
            raise ValueError(f"mode must be 'binary' or 'multiclass', got {self.mode!r}")
        if self.input_size[0] % 32 or self.input_size[1] % 32:
            raise ValueError(f"input_size must be divisible by 32, got {self.input_size}")


class SegmentationFrames(Dataset):
    """(image float (3, H, W) in [0, 1], labels int64 (H, W)) at ``input_size``; optional flips in training."""

    def __init__(self, cfg: SegmentationTaskConfig, split: str, indices: list[int], augment: bool) -> None:
        self.cfg, self.split, self.indices, self.augment = cfg, split, indices, augment

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        frame = render_frame(self.cfg.data, self.split, self.indices[i])
        w, h = self.cfg.input_size
        rgb = cv2.resize(frame["rgb"], (w, h), interpolation=cv2.INTER_AREA)
        sem = cv2.resize(frame["semantic"], (w, h), interpolation=cv2.INTER_NEAREST)
        if self.augment and np.random.default_rng(self.cfg.seed * 7 + i).random() < 0.5:
            rgb, sem = rgb[:, ::-1], sem[:, ::-1]
        image = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float() / 255.0
        return {"image": image, "labels": torch.from_numpy(to_labels(np.ascontiguousarray(sem), self.cfg.mode))}


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
        return BiSeNet(cfg)

    def datasets(self) -> tuple[Dataset, Dataset]:
        d = self.cfg.data
        return (SegmentationFrames(self.cfg, "train", frame_indices(d, "train", self.cfg.train_frames), True),
                SegmentationFrames(self.cfg, "val", frame_indices(d, "val", self.cfg.val_frames), False))

    def collate(self, items: list) -> dict:
        return {"image": torch.stack([it["image"] for it in items]),
                "labels": torch.stack([it["labels"] for it in items])}

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        feats = model.forward_features(batch["image"])
        logits = model.forward_head(feats).logits
        total, terms = self.criterion(logits, model.forward_aux(feats), batch["labels"])
        return total, terms, {"features": feats, "logits": logits, "labels": batch["labels"]}

    def evaluate(self, model: nn.Module, loader: DataLoader) -> dict[str, float]:
        meter = SegmentationMeter(len(self.classes))
        for batch in loader:
            meter.update(model(batch["image"]).logits.argmax(dim=1).numpy(), batch["labels"].numpy())
        res = meter.result()
        out = {"miou": float(res["miou"]), "pixel_accuracy": float(res["pixel_accuracy"])}
        out.update({f"iou_{name}": float(v) for name, v in zip(self.classes, res["iou"])})
        return out

    card_task = "semantic_segmentation"
    data_description = "glassbox.sim synthetic street frames (day/glare/night), train scene seeds 0.., val 100000.."

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        return (batch["image"],)

    def card_extra(self) -> dict:
        return {"input_size": list(self.cfg.input_size), "mode": self.cfg.mode, "loss": self.cfg.loss}

    def export(self, model: nn.Module, path: str) -> dict:
        w, h = self.cfg.input_size
        example = torch.rand(1, 3, h, w)
        spec = export_with_features(model.eval(), {"image": example}, path, dynamic_spatial=True,
                                    feature_names=["spatial", "context3", "context4", "context5", "fused"])
        spec["inputs"]["image"]["range"] = [0.0, 1.0]
        spec["classes"] = list(self.classes)
        return spec


def train(task: Any, iterations: int, batch_size: int, lr: float, weight_decay: float = 1e-4, warmup: int = 20,
          log_every: int = 50) -> nn.Module:
    """AdamW with a cosine schedule (``get_lr`` below), ``iterations`` steps over the training frames."""
    torch.manual_seed(task.cfg.seed)
    model = task.build_model()
    train_set, _ = task.datasets()
    loader = DataLoader(train_set, batch_size=batch_size, shuffle=True, collate_fn=task.collate, drop_last=True,
                        generator=torch.Generator().manual_seed(task.cfg.seed))
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    step, t0 = 0, time.time()
    model.train()
    while step < iterations:
        for batch in loader:
            for group in opt.param_groups:
                group["lr"] = get_lr(step, iterations, lr, warmup)
            loss, terms, _ = task.loss(model, batch)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step % log_every == 0:
                print(f"step {step}/{iterations} " + " ".join(f"{k} {v:.4f}" for k, v in terms.items())
                      + f" ({time.time() - t0:.0f} s)", flush=True)
            if step >= iterations:
                break
    return model.eval()


def get_lr(step: int, total: int, base: float, warmup: int = 20) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    return 0.5 * base * (1.0 + np.cos(np.pi * (step - warmup) / max(1, total - warmup)))


def train_from_schedule(task: Any, raw: dict) -> nn.Module:
    """The stand-alone loop, reading the trainer's config keys (``steps``, ``batch_size``, ``optim.lr``,
    ``optim.weight_decay``, ``schedule.warmup_steps``; the loop is AdamW with cosine decay to 0)."""
    optim = raw.get("optim", {})
    return train(task, raw.get("steps", 500), raw.get("batch_size", 8), optim.get("lr", 2e-3),
                 optim.get("weight_decay", 1e-4), warmup=raw.get("schedule", {}).get("warmup_steps", 20))


def run(task_cls: type, description: str, train_fn: Any = train_from_schedule) -> None:
    """Stand-alone entry point shared by the camera tasks: train (or load ``--weights``), then ``finish``."""
    import yaml

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", required=True)
    parser.add_argument("--section", default=None, help="top-level section of the config file to use")
    parser.add_argument("--out", required=True, help="output stem: writes <out>.pt, .onnx and .card.yaml")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--weights", default="", help="skip training and finish from this .pt of the same config")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    raw = yaml.safe_load(Path(args.config).read_text())
    if args.section:
        raw = raw[args.section]
    task = task_cls(raw.get("task", {}))
    t0 = time.time()
    if args.weights:
        from glassbox.runtime import load_state

        model = task.build_model()
        model.load_state_dict(load_state(args.weights)[1])
        train_s = None
    else:
        model = train_fn(task, raw)
        train_s = time.time() - t0
    section = f" --section {args.section}" if args.section else ""
    command = f"python -m glassbox_trainer.tasks.{task.name} --config {args.config}{section} --out {args.out}"
    metrics = finish(task, model.eval(), Path(args.out), command, raw, train_s)
    print(json.dumps(metrics, indent=1))


def finish(task: Any, model: nn.Module, out: Path, command: str, raw: dict, train_seconds: float | None) -> dict:
    """Evaluate, save ``<out>.pt``, export ``<out>.onnx``, check torch/ORT parity, record the reference entropy
    profile over validation inputs (``task.reference_items()`` when the task defines it), and write ``<out>.card.yaml`` (metrics, and the task's report if any)."""
    from datetime import datetime, timezone

    import glassbox
    from glassbox.entropy import ProbeConfig, profile_from_features
    from glassbox.runtime import OrtBackend
    from glassbox.models.card import EntropyReference, ModelCard, save_card, sha256_file

    out.parent.mkdir(parents=True, exist_ok=True)
    _, val = task.datasets()
    loader = DataLoader(val, batch_size=getattr(task, "eval_batch_size", 8), collate_fn=task.collate)
    with torch.no_grad():
        metrics = task.evaluate(model, loader)
        report = task.report(model) if hasattr(task, "report") else {}
    pt_path, onnx_path = out.with_suffix(".pt"), out.with_suffix(".onnx")
    torch.save({"config": to_dict(model.cfg), "task": raw.get("task", {}), "state_dict": model.state_dict()},
               pt_path)
    spec = task.export(model, str(onnx_path))
    session = OrtBackend(onnx_path)
    probe = ProbeConfig()
    diffs, profiles = [], []
    items = task.reference_items() if hasattr(task, "reference_items") else [val[i] for i in range(min(8, len(val)))]
    with torch.no_grad():
        for item in items:
            inputs = task.example_inputs(task.collate([item]))
            feats = model.forward_features(*inputs)
            head = model.forward_head(feats)
            ort = session.run({n: t.numpy() for n, t in zip(spec["inputs"], inputs)}).outputs
            diffs += [float(np.abs(ort[n] - h.numpy()).max()) for n, h in zip(spec["outputs"], head)]
            profiles.append(profile_from_features({n: feats[n] for n in spec["features"]}, probe))
    ent = np.stack([p.entropy_nats for p in profiles])
    reference = EntropyReference(estimator=probe.estimator, estimator_params=probe.params(),
                                 layer_names=tuple(spec["features"]), mean_nats=tuple(ent.mean(0).tolist()),
                                 std_nats=tuple(ent.std(0).tolist()), num_inputs=len(profiles))
    extra = {"model_config": to_dict(model.cfg), **getattr(task, "card_extra", lambda: {})()}
    if report:
        extra["report"] = json.loads(json.dumps(report, default=float))
    card = ModelCard(
        name=out.name, task=getattr(task, "card_task", task.name), file=onnx_path.name,
        sha256=sha256_file(onnx_path), inputs=spec["inputs"], outputs=tuple(spec["outputs"]),
        features=tuple(spec["features"]), classes=tuple(spec.get("classes", ())),
        metrics={k: float(v) for k, v in metrics.items()},
        training={"command": command, "config": raw, "train_seconds": train_seconds,
                  "data": getattr(task, "data_description", "")},
        entropy_reference=reference, weights_file=pt_path.name, weights_sha256=sha256_file(pt_path),
        parity_max_abs_diff=max(diffs), extra=extra,
        created_utc=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"), glassbox_version=glassbox.__version__)
    save_card(card, out.with_suffix(".card.yaml"))
    return metrics


if __name__ == "__main__":
    run(SegmentationTask, "Train BiSeNet on synthetic frames and write <out>.{pt,onnx,card.yaml}.")
