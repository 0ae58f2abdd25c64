"""Semantic segmentation as PNG label maps: writer, reader and Dataset.

Layout: ``<root>/images/<split>/<name>.png`` (RGB) and ``<root>/labels/<split>/<name>.png`` (single-channel
uint8 ids of ``glassbox.classes.SEMANTIC_CLASSES``; 255 = ignore). With ``binary=True`` the Dataset maps the ids
to the seed's traversable-vs-rest setting (``BINARY_CLASSES``), keeping 255 as ignore.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from glassbox.classes import SEMANTIC_CLASSES, TRAVERSABLE_SEMANTIC_IDS
from glassbox.datasets.synthetic import DatasetError

IGNORE_ID = 255


def write_label_png(path: str | Path, label: np.ndarray) -> None:
    """Write an (H, W) uint8 label map as a lossless single-channel PNG."""
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"label maps must be (H, W) uint8, got {label.shape} {label.dtype}")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), label):
        raise DatasetError(f"{path}: could not write the label PNG")


def read_label_png(path: str | Path) -> np.ndarray:
    """(H, W) uint8 label map."""
    label = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if label is None:
        raise DatasetError(f"{path}: unreadable label PNG")
    if label.ndim != 2 or label.dtype != np.uint8:
        raise DatasetError(f"{path}: expected a single-channel 8-bit PNG, got {label.shape} {label.dtype}")
    return label


def write_segmentation_sample(root: str | Path, split: str, name: str, rgb: np.ndarray, label: np.ndarray) -> None:
    """Write one image/label pair into the layout."""
    root = Path(root)
    (root / "images" / split).mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(root / "images" / split / f"{name}.png"), rgb[..., ::-1]):
        raise DatasetError(f"{root}: could not write image {name}")
    write_label_png(root / "labels" / split / f"{name}.png", label)


def to_binary(label: np.ndarray) -> np.ndarray:
    """Traversable (1) vs rest (0); 255 stays ignore."""
    out = np.isin(label, TRAVERSABLE_SEMANTIC_IDS).astype(np.uint8)
    out[label == IGNORE_ID] = IGNORE_ID
    return out


class SegmentationPngDataset(Dataset):
    """Items: ``image`` (3,H,W) uint8, ``label`` (H,W) int64, ``name``. Sorted by name, so deterministic."""

    def __init__(self, root: str | Path, split: str = "train", binary: bool = False,
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.root = Path(root)
        self.image_dir, self.label_dir = self.root / "images" / split, self.root / "labels" / split
        if not self.image_dir.is_dir() or not self.label_dir.is_dir():
            raise DatasetError(f"{self.root}: missing images/{split} or labels/{split}")
        self.names = sorted(p.stem for p in self.label_dir.glob("*.png"))
        missing = [n for n in self.names if not (self.image_dir / f"{n}.png").exists()]
        if missing:
            raise DatasetError(f"{self.image_dir}: no image for label '{missing[0]}'")
        self.binary, self.transform = binary, transform
        self.num_classes = 2 if binary else len(SEMANTIC_CLASSES)

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        img = cv2.imread(str(self.image_dir / f"{name}.png"), cv2.IMREAD_COLOR)
        if img is None:
            raise DatasetError(f"{self.image_dir}/{name}.png: unreadable image")
        label = read_label_png(self.label_dir / f"{name}.png")
        if label.shape != img.shape[:2]:
            raise DatasetError(f"{name}: label {label.shape} and image {img.shape[:2]} differ in size")
        if self.binary:
            label = to_binary(label)
        item = {"image": torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1))),
                "label": torch.from_numpy(label.astype(np.int64)), "name": name}
        return self.transform(item) if self.transform is not None else item
