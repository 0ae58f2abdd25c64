"""COCO-style RGB-thermal detection layout (as LLVIP / FLIR ADAS users have it): writer, reader and Dataset.

Layout::

    <root>/visible/<split>/<name>.png      RGB images
    <root>/infrared/<split>/<name>.png     8-bit thermal images registered to the RGB pixel grid
    <root>/annotations/<split>.json        COCO detection JSON for the RGB images

Every ``images`` entry has the COCO keys (``id``, ``file_name``, ``width``, ``height``) plus ``thermal_file_name``
(relative to the root) and, for synthetic data, ``lighting``. Boxes are COCO ``[x, y, w, h]`` in RGB pixels;
since the pairs are registered they hold for the thermal image as well. Category names follow
``glassbox.classes.DETECTION_CLASSES`` (ids 1-based); on reading, the usual synonyms of real datasets map onto
them (``person`` -> pedestrian, ``bike``/``bicycle`` -> cyclist); other categories are ignored.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from glassbox.classes import DETECTION_CLASSES, DETECTION_ID
from glassbox.datasets.synthetic import DatasetError

CATEGORY_SYNONYMS = {"person": "pedestrian", "people": "pedestrian", "pedestrian": "pedestrian",
                     "bike": "cyclist", "bicycle": "cyclist", "cyclist": "cyclist", "rider": "cyclist",
                     "car": "car", "vehicle": "car"}


class CocoRgbtWriter:
    """Accumulates registered RGB-thermal pairs with their boxes; ``close()`` writes the JSON atomically."""

    def __init__(self, root: str | Path, split: str, info: dict | None = None) -> None:
        self.root, self.split = Path(root), split
        for sub in ("visible", "infrared"):
            (self.root / sub / split).mkdir(parents=True, exist_ok=True)
        (self.root / "annotations").mkdir(parents=True, exist_ok=True)
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self.info = info or {"description": "glassbox RGB-thermal detection"}

    def add(self, name: str, rgb: np.ndarray, thermal: np.ndarray, boxes_xyxy: np.ndarray, classes: np.ndarray,
            **extra: Any) -> int:
        """Write one pair (``thermal`` registered to ``rgb``, uint8 (H,W)) and record its boxes; returns the id."""
        if thermal.shape[:2] != rgb.shape[:2]:
            raise DatasetError(f"thermal {thermal.shape[:2]} is not registered to rgb {rgb.shape[:2]}")
        image_id = len(self.images) + 1
        vis = f"visible/{self.split}/{name}.png"
        ir = f"infrared/{self.split}/{name}.png"
        cv2.imwrite(str(self.root / vis), rgb[..., ::-1])
        cv2.imwrite(str(self.root / ir), thermal)
        self.images.append({"id": image_id, "file_name": vis, "thermal_file_name": ir, "width": int(rgb.shape[1]),
                            "height": int(rgb.shape[0]), **extra})
        b = np.asarray(boxes_xyxy, np.float64).reshape(-1, 4)
        wh = b[:, 2:] - b[:, :2]
        for k in range(len(b)):
            self.annotations.append({"id": len(self.annotations) + 1, "image_id": image_id,
                                     "category_id": int(classes[k]) + 1,
                                     "bbox": [float(b[k, 0]), float(b[k, 1]), float(wh[k, 0]), float(wh[k, 1])],
                                     "area": float(wh[k, 0] * wh[k, 1]), "iscrowd": 0})
        return image_id

    def close(self) -> Path:
        doc = {"info": self.info, "images": self.images, "annotations": self.annotations,
               "categories": [{"id": i + 1, "name": n} for i, n in enumerate(DETECTION_CLASSES)]}
        path = self.root / "annotations" / f"{self.split}.json"
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as f:
            json.dump(doc, f)
        os.replace(tmp, path)
        return path


def read_coco_rgbt(root: str | Path, split: str) -> list[dict[str, Any]]:
    """Records ``{"image": <images entry>, "boxes": (M,4) float32 xyxy, "labels": (M,) int64}`` in image order."""
    path = Path(root) / "annotations" / f"{split}.json"
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{path}: annotation file not found") from None
    except json.JSONDecodeError as exc:
        raise DatasetError(f"{path}: not valid JSON: {exc}") from None
    cat_map = {}
    for c in doc.get("categories", []):
        name = CATEGORY_SYNONYMS.get(str(c["name"]).lower())
        if name is not None:
            cat_map[c["id"]] = DETECTION_ID[name]
    per_image: dict[int, list[tuple[list[float], int]]] = {im["id"]: [] for im in doc["images"]}
    for a in doc.get("annotations", []):
        if a.get("iscrowd", 0) or a["category_id"] not in cat_map or a["image_id"] not in per_image:
            continue
        per_image[a["image_id"]].append((a["bbox"], cat_map[a["category_id"]]))
    records = []
    for im in doc["images"]:
        anns = per_image[im["id"]]
        xywh = np.array([b for b, _ in anns], np.float64).reshape(-1, 4)
        boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1).astype(np.float32)
        records.append({"image": im, "boxes": boxes, "labels": np.array([c for _, c in anns], np.int64)})
    return records


class CocoRgbtDataset(Dataset):
    """Items: ``rgb`` (3,H,W) uint8, ``thermal`` (1,H,W) uint8, ``boxes`` (M,4) float32 xyxy, ``labels`` (M,)."""

    def __init__(self, root: str | Path, split: str = "train",
                 transform: Callable[[dict], dict] | None = None) -> None:
        self.root = Path(root)
        self.records = read_coco_rgbt(root, split)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, Any]:
        rec = self.records[index]
        im = rec["image"]
        rgb = cv2.imread(str(self.root / im["file_name"]), cv2.IMREAD_COLOR)
        th = cv2.imread(str(self.root / im.get("thermal_file_name", "")), cv2.IMREAD_GRAYSCALE)
        if rgb is None or th is None:
            raise DatasetError(f"{self.root}: unreadable image pair for image id {im['id']}")
        item = {"rgb": torch.from_numpy(np.ascontiguousarray(rgb[..., ::-1].transpose(2, 0, 1))),
                "thermal": torch.from_numpy(th[None].copy()), "boxes": torch.from_numpy(rec["boxes"]),
                "labels": torch.from_numpy(rec["labels"]), "image_id": int(im["id"])}
        return self.transform(item) if self.transform is not None else item
