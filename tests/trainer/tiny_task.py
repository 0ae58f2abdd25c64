"""A small but real task for testing the training engine before the model tasks exist.

Per-pixel 3-class labelling of 12x12 noise images with a closed-form target: the class of a pixel is the
argmax over the three input channels of the 3x3 box-filtered image. A conv net with a stem and three
repeated 3x3 blocks (the Eloss group) learns it; the teacher is wider. No normalisation layers, so one process
with batch 2B and two processes with batch B compute the same gradient. ``augment`` and ``dropout`` draw from
the global Python, numpy and torch RNGs on purpose, so that a resumed run only matches an uninterrupted one
when the trainer restores all three.
"""
from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from glassbox_trainer.export import export_with_features

SIZE = 12
CLASSES = ("a", "b", "c")


def target(x: Tensor) -> Tensor:
    """(B, 3, H, W) -> (B, H, W): argmax over channels of the 3x3 mean (zero padding)."""
    return F.avg_pool2d(x, 3, stride=1, padding=1, count_include_pad=True).argmax(dim=1)


class NoiseImages(Dataset):
    def __init__(self, n: int, seed: int):
        self.n, self.seed = n, seed

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + i)
        return torch.randn(3, SIZE, SIZE, generator=g)


class TinyNet(nn.Module):
    def __init__(self, width: int, dropout: float = 0.0):
        super().__init__()
        self.drop = nn.Dropout2d(dropout)
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(nn.Conv2d(width, width, 3, padding=1) for _ in range(3))
        self.head = nn.Conv2d(width, 3, 1)

    def forward_features(self, x: Tensor) -> dict[str, Tensor]:
        feats = {}
        h = self.drop(F.relu(self.stem(x)))                        # (B, W, H, W)
        feats["stem"] = h
        for i, blk in enumerate(self.blocks):
            h = F.relu(blk(h)) + h
            feats[f"block{i + 1}"] = h
        return feats

    def forward_head(self, feats: dict[str, Tensor]) -> Tensor:
        return self.head(feats["block3"])                          # (B, 3, H, W)

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_head(self.forward_features(x))


class TinyTask:
    name = "tiny"
    metric = "pixel_acc"
    classes = CLASSES
    eloss_groups = [["block1", "block2", "block3"]]

    def __init__(self, cfg: dict):
        self.train_items = int(cfg.get("train_items", 64))
        self.val_items = int(cfg.get("val_items", 16))
        self.width = int(cfg.get("width", 8))
        self.teacher_width = int(cfg.get("teacher_width", 16))
        self.augment = bool(cfg.get("augment", False))
        self.dropout = float(cfg.get("dropout", 0.0))

    def build_model(self, size: str = "default") -> nn.Module:
        return TinyNet(self.teacher_width if size == "teacher" else self.width, self.dropout)

    def datasets(self):
        return NoiseImages(self.train_items, seed=1), NoiseImages(self.val_items, seed=2)

    def collate(self, items: list[Tensor]) -> dict:
        x = torch.stack(items)
        if self.augment:                                           # label-preserving: flips, scale, channel shift
            if torch.rand(()) < 0.5:
                x = x.flip(-1)
            x = x * float(np.random.uniform(0.5, 1.5)) + random.uniform(-0.1, 0.1)
        return {"image": x, "labels": target(x)}

    def loss(self, model: nn.Module, batch: dict) -> tuple[Tensor, dict[str, float], dict[str, Any]]:
        feats = model.forward_features(batch["image"])
        logits = model.forward_head(feats)
        ce = F.cross_entropy(logits, batch["labels"])
        return ce, {"ce": float(ce.detach())}, {"features": feats, "logits": logits, "labels": batch["labels"]}

    def example_inputs(self, batch: dict) -> tuple[Tensor, ...]:
        return (batch["image"],)

    def evaluate(self, model: nn.Module, loader) -> dict[str, float]:
        correct = total = 0
        for batch in loader:
            pred = model(batch["image"]).argmax(dim=1)
            correct += int((pred == batch["labels"]).sum())
            total += batch["labels"].numel()
        return {"pixel_acc": correct / total}

    def export(self, model: nn.Module, path: str) -> dict:
        spec = export_with_features(model, {"image": torch.zeros(1, 3, SIZE, SIZE)}, path, ["logits"])
        return {**spec, "classes": list(CLASSES)}
