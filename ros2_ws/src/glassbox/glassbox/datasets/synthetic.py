"""Torch datasets over the synthetic world: LiDAR scans and RGB-thermal camera frames, generated on the fly.

Frame ``i`` of split ``s`` is generated from its own seed, derived from (dataset seed, split, i); so splits are
disjoint, deterministic and independent of the order in which frames are read or of the number of workers.
Each frame is a fresh street (its scene seed), seen from the ego at a random time of its drive. With
``cache_dir`` set, generated frames are stored as ``.npz`` files named by a hash of the whole configuration and
read back on later epochs.
"""
from __future__ import annotations

import abc
import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from glassbox.config import to_dict
from glassbox.sim.camera import (LIGHTINGS, CameraConfig, lighting_preset, render_cameras, rgb_camera,
                                 thermal_camera)
from glassbox.sim.lidar import LidarConfig, lidar_preset, scan_lidar
from glassbox.sim.scene import SceneConfig, make_scene

SPLITS = {"train": 0, "val": 1, "test": 2}


class DatasetError(ValueError):
    """A dataset is misconfigured or its files are unreadable."""


def frame_seed(seed: int, split: str, index: int) -> int:
    """The generation seed of frame ``index`` of ``split`` (disjoint across splits)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
    return int(np.random.SeedSequence([int(seed), SPLITS[split], int(index)]).generate_state(1)[0])


def _config_key(*parts: Any) -> str:
    text = repr([to_dict(p) if hasattr(p, "__dataclass_fields__") else p for p in parts])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _save_npz_atomic(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


class _CachedFrames(Dataset, abc.ABC):
    """Shared logic: deterministic seeds, optional on-disk cache of the generated arrays."""

    default_sizes = {"train": 2000, "val": 200, "test": 200}

    def __init__(self, split: str, size: int | None, seed: int, cache_dir: str | Path | None, key: str,
                 transform: Callable[[dict], dict] | None) -> None:
        if split not in SPLITS:
            raise DatasetError(f"unknown split '{split}' (known: {', '.join(SPLITS)})")
        self.split, self.seed = split, int(seed)
        self.size = self.default_sizes[split] if size is None else int(size)
        if self.size < 0:
            raise DatasetError(f"dataset size must be >= 0, got {self.size}")
        self.cache_dir = None if cache_dir is None else Path(cache_dir) / key
        self.transform = transform

    def __len__(self) -> int:
        return self.size

    def arrays(self, index: int) -> dict[str, np.ndarray]:
        """The numpy arrays of frame ``index`` (from the cache when present)."""
        if not 0 <= index < self.size:
            raise IndexError(f"index {index} out of range for a dataset of {self.size} frames")
        path = None if self.cache_dir is None else self.cache_dir / f"{self.split}_{index:06d}.npz"
        if path is not None and path.exists():
            with np.load(path) as data:
                return {k: data[k] for k in data.files}
        arrays = self._generate(frame_seed(self.seed, self.split, index))
        if path is not None:
            _save_npz_atomic(path, arrays)
        return arrays

    @abc.abstractmethod
    def _generate(self, fseed: int) -> dict[str, np.ndarray]:
        """Render the arrays of the frame with generation seed ``fseed``."""

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self._to_item(self.arrays(index))
        return self.transform(item) if self.transform is not None else item

    @abc.abstractmethod
    def _to_item(self, a: dict[str, np.ndarray]) -> dict[str, Any]:
        """Convert a frame's arrays to the item (torch tensors)."""


def _pose_time(fseed: int, max_time_s: float) -> float:
    return float(np.random.default_rng(np.random.SeedSequence([fseed, 0x7143])).uniform(0.0, max_time_s))


class SyntheticLidarDataset(_CachedFrames):
    """LiDAR scans with per-point labels and 3D boxes (LiDAR frame).

    Items: ``points`` (N,4) float32 xyzi, ``ring`` (N,) int64, ``time`` (N,) float32, ``label`` (N,) int64
    semantic ids, ``instance`` (N,) int64, ``boxes`` (M,7) float32 [x, y, z, l, w, h, yaw], ``box_classes`` (M,)
    int64, ``box_points`` (M,) int64, ``seed`` int."""

    def __init__(self, split: str = "train", size: int | None = None, lidar: str | LidarConfig = "hdl64",
                 scene: SceneConfig | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                 transform: Callable[[dict], dict] | None = None, max_time_s: float = 10.0) -> None:
        self.lidar_cfg = lidar_preset(lidar) if isinstance(lidar, str) else lidar
        self.scene_cfg = scene or SceneConfig(length_m=120.0)
        self.max_time_s = max_time_s
        super().__init__(split, size, seed, cache_dir,
                         "lidar_" + _config_key(self.lidar_cfg, self.scene_cfg, seed, max_time_s), transform)

    def _generate(self, fseed: int) -> dict[str, np.ndarray]:
        sc = make_scene(fseed, self.scene_cfg)
        t = _pose_time(fseed, self.max_time_s)
        scan = scan_lidar(sc, self.lidar_cfg, sc.ego_pose(t), fseed, t=t)
        b = scan.boxes
        boxes = np.concatenate([b.centers, b.sizes, b.yaw[:, None]], 1).astype(np.float32).reshape(-1, 7)
        return {"points": scan.points, "ring": scan.ring, "time": scan.time, "label": scan.label,
                "instance": scan.instance, "boxes": boxes, "box_classes": b.classes.astype(np.int64),
                "box_points": scan.box_points, "seed": np.array(fseed, np.int64)}

    def _to_item(self, a: dict[str, np.ndarray]) -> dict[str, Any]:
        return {"points": torch.from_numpy(a["points"]), "ring": torch.from_numpy(a["ring"].astype(np.int64)),
                "time": torch.from_numpy(a["time"]), "label": torch.from_numpy(a["label"].astype(np.int64)),
                "instance": torch.from_numpy(a["instance"].astype(np.int64)), "boxes": torch.from_numpy(a["boxes"]),
                "box_classes": torch.from_numpy(a["box_classes"]),
                "box_points": torch.from_numpy(a["box_points"].astype(np.int64)), "seed": int(a["seed"])}


@dataclass(frozen=True)
class CameraDatasetConfig:
    """What the camera dataset renders: cameras, the lightings drawn per frame (uniformly) and whether the thermal
    image is also warped onto the RGB pixel grid (``thermal_aligned``, for fusion models)."""

    rgb: CameraConfig = field(default_factory=rgb_camera)
    thermal: CameraConfig | None = field(default_factory=thermal_camera)
    lightings: tuple[str, ...] = LIGHTINGS
    aligned_thermal: bool = True


class SyntheticCameraDataset(_CachedFrames):
    """RGB + thermal frames with semantic/instance masks and 2D boxes.

    Items: ``rgb`` (3,H,W) uint8, ``semantic`` (H,W) int64, ``instance`` (H,W) int64, ``boxes`` (M,4) float32
    pixel xyxy, ``labels`` (M,) int64 detection classes, ``lighting`` str; with a thermal camera also
    ``thermal`` (1,Ht,Wt) uint8 (8-bit AGC), ``thermal16`` (1,Ht,Wt) int32 raw counts (kelvin x 100),
    ``thermal_boxes``/``thermal_labels``, ``homography`` (3,3) float32 thermal->RGB pixels, and with
    ``aligned_thermal`` ``thermal_aligned`` (1,H,W) uint8 warped onto the RGB grid."""

    def __init__(self, split: str = "train", size: int | None = None, cameras: CameraDatasetConfig | None = None,
                 scene: SceneConfig | None = None, seed: int = 0, cache_dir: str | Path | None = None,
                 transform: Callable[[dict], dict] | None = None, max_time_s: float = 10.0) -> None:
        self.cfg = cameras or CameraDatasetConfig()
        for name in self.cfg.lightings:
            lighting_preset(name)                                # validates the names
        self.scene_cfg = scene or SceneConfig(length_m=120.0)
        self.max_time_s = max_time_s
        super().__init__(split, size, seed, cache_dir,
                         "camera_" + _config_key(self.cfg, self.scene_cfg, seed, max_time_s), transform)

    def _generate(self, fseed: int) -> dict[str, np.ndarray]:
        sc = make_scene(fseed, self.scene_cfg)
        rng = np.random.default_rng(np.random.SeedSequence([fseed, 0xCA3]))
        t = _pose_time(fseed, self.max_time_s)
        lighting = self.cfg.lightings[int(rng.integers(len(self.cfg.lightings)))]
        f = render_cameras(sc, self.cfg.rgb, self.cfg.thermal, sc.ego_pose(t), lighting, fseed, t=t)
        out = {"rgb": f.rgb, "semantic": f.semantic, "instance": f.instance, "boxes": f.boxes2d,
               "labels": f.box_classes, "lighting": np.array(lighting), "seed": np.array(fseed, np.int64)}
        if f.thermal8 is not None:
            out.update({"thermal": f.thermal8, "thermal16": f.thermal16, "thermal_boxes": f.thermal_boxes2d,
                        "thermal_labels": f.thermal_box_classes,
                        "homography": f.homography_thermal_to_rgb.astype(np.float32)})
            if self.cfg.aligned_thermal:
                out["thermal_aligned"] = cv2.warpPerspective(
                    f.thermal8, f.homography_thermal_to_rgb, (self.cfg.rgb.width, self.cfg.rgb.height),
                    flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return out

    def _to_item(self, a: dict[str, np.ndarray]) -> dict[str, Any]:
        item: dict[str, Any] = {
            "rgb": torch.from_numpy(np.ascontiguousarray(a["rgb"].transpose(2, 0, 1))),
            "semantic": torch.from_numpy(a["semantic"].astype(np.int64)),
            "instance": torch.from_numpy(a["instance"].astype(np.int64)),
            "boxes": torch.from_numpy(a["boxes"]), "labels": torch.from_numpy(a["labels"]),
            "lighting": str(a["lighting"]), "seed": int(a["seed"])}
        if "thermal" in a:
            item.update({"thermal": torch.from_numpy(a["thermal"][None].copy()),
                         "thermal16": torch.from_numpy(a["thermal16"][None].astype(np.int32)),
                         "thermal_boxes": torch.from_numpy(a["thermal_boxes"]),
                         "thermal_labels": torch.from_numpy(a["thermal_labels"]),
                         "homography": torch.from_numpy(a["homography"])})
        if "thermal_aligned" in a:
            item["thermal_aligned"] = torch.from_numpy(a["thermal_aligned"][None].copy())
        return item
