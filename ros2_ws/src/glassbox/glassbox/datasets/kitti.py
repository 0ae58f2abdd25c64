"""KITTI object-detection layout: writer, readers and a torch Dataset.

Layout (``<root>/training`` or ``<root>/testing``): ``velodyne/%06d.bin`` (float32 x, y, z, intensity),
``image_2/%06d.png``, ``label_2/%06d.txt``, ``calib/%06d.txt``; optional ``<root>/ImageSets/{train,val}.txt``.

Label lines follow the KITTI devkit: type, truncated, occluded (0 visible, 1 partly, 2 largely, 3 unknown),
alpha, 2D box x1 y1 x2 y2 (pixels), dimensions h w l, location x y z of the box's *bottom centre* in the
rectified camera frame (x right, y down, z forward), rotation_y about the camera y axis (0 = facing +x), and an
optional score. ``Tr_velo_to_cam`` maps LiDAR points into the camera frame, ``R0_rect`` rectifies, ``P2`` projects.
Converting to ``Boxes3D`` gives boxes in the LiDAR frame (geometric centre, yaw about +z from +x), the
project's convention. The simulator writes one camera, so P0..P3 are equal and R0_rect is the identity.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from glassbox.datasets.synthetic import DatasetError
from glassbox.sim.camera import CameraFrame
from glassbox.sim.lidar import LidarScan
from glassbox.sim.scene import Boxes3D

KITTI_NAMES: tuple[str, ...] = ("Car", "Pedestrian", "Cyclist")     # in DETECTION_CLASSES order
KITTI_TO_CLASS = {name: i for i, name in enumerate(KITTI_NAMES)}


@dataclass(frozen=True)
class KittiObjects:
    """Parsed label file: arrays with one row per object."""

    names: np.ndarray          # (M,) str
    truncated: np.ndarray      # (M,) float
    occluded: np.ndarray       # (M,) int
    alpha: np.ndarray          # (M,)
    bbox: np.ndarray           # (M, 4) x1 y1 x2 y2
    dims_hwl: np.ndarray       # (M, 3)
    location: np.ndarray       # (M, 3) bottom centre, camera frame
    rotation_y: np.ndarray     # (M,)
    score: np.ndarray          # (M,) NaN when absent

    def __len__(self) -> int:
        return int(len(self.names))


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def read_kitti_label(path: str | Path) -> KittiObjects:
    """Parse a KITTI ``label_2`` file (15 or 16 fields per line)."""
    path = Path(path)
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    for i, r in enumerate(rows):
        if len(r) not in (15, 16):
            raise DatasetError(f"{path}:{i + 1}: expected 15 or 16 fields, got {len(r)}")
    names = np.array([r[0] for r in rows], dtype=str)
    try:
        num = np.array([[float(v) for v in r[1:15]] for r in rows], np.float64).reshape(-1, 14)
    except ValueError as exc:
        raise DatasetError(f"{path}: non-numeric field: {exc}") from None
    score = np.array([float(r[15]) if len(r) == 16 else np.nan for r in rows], np.float64)
    return KittiObjects(names, num[:, 0], num[:, 1].astype(np.int64), num[:, 2], num[:, 3:7], num[:, 7:10],
                        num[:, 10:13], num[:, 13], score)


def format_kitti_label(obj: KittiObjects) -> str:
    """Label file text (devkit precision: 2 decimals)."""
    lines = []
    for i in range(len(obj)):
        vals = [obj.truncated[i], obj.occluded[i], obj.alpha[i], *obj.bbox[i], *obj.dims_hwl[i], *obj.location[i],
                obj.rotation_y[i]]
        text = f"{obj.names[i]} {vals[0]:.2f} {int(vals[1])} " + " ".join(f"{v:.2f}" for v in vals[2:])
        if np.isfinite(obj.score[i]):
            text += f" {obj.score[i]:.4f}"
        lines.append(text)
    return "\n".join(lines) + ("\n" if lines else "")


def read_kitti_calib(path: str | Path) -> dict[str, np.ndarray]:
    """``P0``..``P3`` (3,4), ``R0_rect`` (3,3), ``Tr_velo_to_cam`` and ``Tr_imu_to_velo`` (3,4)."""
    path = Path(path)
    out: dict[str, np.ndarray] = {}
    for line in path.read_text().splitlines():
        if ":" not in line:
            continue
        key, vals = line.split(":", 1)
        arr = np.array(vals.split(), np.float64)
        out[key.strip()] = arr.reshape(3, 3) if arr.size == 9 else arr.reshape(3, 4)
    for key in ("P2", "R0_rect", "Tr_velo_to_cam"):
        if key not in out:
            raise DatasetError(f"{path}: missing calibration entry '{key}'")
    return out


def write_kitti_calib(path: str | Path, calib: dict[str, np.ndarray]) -> None:
    order = ("P0", "P1", "P2", "P3", "R0_rect", "Tr_velo_to_cam", "Tr_imu_to_velo")
    text = "".join(f"{k}: " + " ".join(f"{v:.12e}" for v in calib[k].ravel()) + "\n" for k in order if k in calib)
    Path(path).write_text(text)


def read_velodyne(path: str | Path) -> np.ndarray:
    """(N, 4) float32 x, y, z, intensity."""
    data = np.fromfile(path, dtype=np.float32)
    if data.size % 4:
        raise DatasetError(f"{path}: size {data.size * 4} bytes is not a whole number of 16-byte points")
    return data.reshape(-1, 4)


def _homog(m: np.ndarray) -> np.ndarray:
    out = np.eye(4)
    out[: m.shape[0], : m.shape[1]] = m
    return out


def lidar_T_cam(calib: dict[str, np.ndarray]) -> np.ndarray:
    """4x4 transform from the rectified camera frame to the LiDAR frame."""
    return np.linalg.inv(_homog(calib["R0_rect"]) @ _homog(calib["Tr_velo_to_cam"]))


def kitti_to_boxes3d(obj: KittiObjects, calib: dict[str, np.ndarray]) -> Boxes3D:
    """Boxes of the known classes (Car, Pedestrian, Cyclist) in the LiDAR frame; other types are dropped."""
    keep = np.isin(obj.names, KITTI_NAMES)
    t = lidar_T_cam(calib)
    h, w, l = obj.dims_hwl[keep, 0], obj.dims_hwl[keep, 1], obj.dims_hwl[keep, 2]
    centre_cam = obj.location[keep] - np.stack([np.zeros_like(h), h / 2, np.zeros_like(h)], 1)
    centres = centre_cam @ t[:3, :3].T + t[:3, 3]
    ry = obj.rotation_y[keep]
    heading_cam = np.stack([np.cos(ry), np.zeros_like(ry), -np.sin(ry)], 1)
    heading = heading_cam @ t[:3, :3].T
    yaw = np.arctan2(heading[:, 1], heading[:, 0])
    classes = np.array([KITTI_TO_CLASS[n] for n in obj.names[keep]], np.int64)
    return Boxes3D(centres.astype(np.float32), np.stack([l, w, h], 1).astype(np.float32), yaw.astype(np.float32),
                   classes)


def boxes3d_to_kitti(boxes: Boxes3D, cam_T_lidar: np.ndarray, bbox: np.ndarray, truncated: np.ndarray,
                     occluded: np.ndarray) -> KittiObjects:
    """KITTI objects from LiDAR-frame boxes (``cam_T_lidar`` = R0_rect @ Tr_velo_to_cam, 4x4)."""
    r, tv = cam_T_lidar[:3, :3], cam_T_lidar[:3, 3]
    c = boxes.centers.astype(np.float64)
    hgt = boxes.sizes[:, 2].astype(np.float64)
    bottom = c - np.stack([np.zeros_like(hgt), np.zeros_like(hgt), hgt / 2], 1)
    loc = bottom @ r.T + tv
    yaw = boxes.yaw.astype(np.float64)
    hd = np.stack([np.cos(yaw), np.sin(yaw), np.zeros_like(yaw)], 1) @ r.T
    ry = np.arctan2(-hd[:, 2], hd[:, 0])
    centre_cam = c @ r.T + tv
    alpha = _wrap(ry - np.arctan2(centre_cam[:, 0], centre_cam[:, 2]))
    names = np.array([KITTI_NAMES[int(k)] for k in boxes.classes], dtype=str)
    dims = np.stack([boxes.sizes[:, 2], boxes.sizes[:, 1], boxes.sizes[:, 0]], 1).astype(np.float64)
    return KittiObjects(names, truncated.astype(np.float64), occluded.astype(np.int64), alpha, bbox.astype(np.float64),
                        dims, loc, ry, np.full(len(boxes), np.nan))


def occlusion_level(fraction: np.ndarray) -> np.ndarray:
    """KITTI occlusion state from the occluded fraction: 0 (< 10 %), 1 (< 50 %), 2 (otherwise)."""
    return np.digitize(fraction, [0.1, 0.5]).astype(np.int64)


def write_kitti_frame(root: str | Path, index: int, scan: LidarScan, frame: CameraFrame,
                      subset: str = "training") -> None:
    """Write one simulated frame (LiDAR scan + RGB image + labels + calibration) in the KITTI layout."""
    base = Path(root) / subset
    for sub in ("velodyne", "image_2", "label_2", "calib"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    name = f"{index:06d}"
    scan.points.astype(np.float32).tofile(base / "velodyne" / f"{name}.bin")
    cv2.imwrite(str(base / "image_2" / f"{name}.png"), frame.rgb[..., ::-1])
    base_T_lidar = np.linalg.inv(frame.world_T_base) @ scan.world_T_lidar
    cam_T_lidar = np.linalg.inv(frame.base_T_rgb) @ base_T_lidar
    p = np.concatenate([frame.K_rgb, np.zeros((3, 1))], 1)
    calib = {"P0": p, "P1": p, "P2": p, "P3": p, "R0_rect": np.eye(3), "Tr_velo_to_cam": cam_T_lidar[:3],
             "Tr_imu_to_velo": np.linalg.inv(base_T_lidar)[:3]}
    write_kitti_calib(base / "calib" / f"{name}.txt", calib)
    boxes_lidar = frame.boxes3d.transform(np.linalg.inv(base_T_lidar))
    obj = boxes3d_to_kitti(boxes_lidar, cam_T_lidar, frame.boxes2d, frame.box_truncation,
                           occlusion_level(frame.box_occlusion))
    (base / "label_2" / f"{name}.txt").write_text(format_kitti_label(obj))


def hash_split(name: str, val_fraction: float, seed: int = 0) -> str:
    """Deterministic train/val assignment of a sample name (independent of listing order)."""
    h = int(hashlib.sha1(f"{seed}:{name}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "val" if h < val_fraction else "train"


def list_split(names: list[str], split: str, val_fraction: float, seed: int) -> list[str]:
    if split == "all":
        return sorted(names)
    if split not in ("train", "val"):
        raise DatasetError(f"unknown split '{split}' (known: train, val, all)")
    return sorted(n for n in names if hash_split(n, val_fraction, seed) == split)


class KittiDataset(Dataset):
    """KITTI object ``training`` data as LiDAR items (like ``SyntheticLidarDataset``): ``points``, ``boxes``
    (M,7) [x, y, z, l, w, h, yaw] in the LiDAR frame, ``box_classes``; with ``with_image`` also ``rgb`` (3,H,W)
    and ``boxes2d``. Splits come from ``ImageSets/<split>.txt`` when present, else from a hash of the names."""

    def __init__(self, root: str | Path, split: str = "train", with_image: bool = False, val_fraction: float = 0.2,
                 split_seed: int = 0, transform: Callable[[dict], dict] | None = None) -> None:
        self.root = Path(root)
        self.base = self.root / "training"
        if not (self.base / "velodyne").is_dir():
            raise DatasetError(f"{self.base}/velodyne: not a KITTI object layout")
        imageset = self.root / "ImageSets" / f"{split}.txt"
        if imageset.exists():
            self.names = [n.strip() for n in imageset.read_text().split() if n.strip()]
        else:
            names = [p.stem for p in (self.base / "velodyne").glob("*.bin")]
            self.names = list_split(names, split, val_fraction, split_seed)
        self.with_image = with_image
        self.transform = transform

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict[str, Any]:
        name = self.names[index]
        points = read_velodyne(self.base / "velodyne" / f"{name}.bin")
        calib = read_kitti_calib(self.base / "calib" / f"{name}.txt")
        obj = read_kitti_label(self.base / "label_2" / f"{name}.txt")
        boxes = kitti_to_boxes3d(obj, calib)
        arr = np.concatenate([boxes.centers, boxes.sizes, boxes.yaw[:, None]], 1).astype(np.float32).reshape(-1, 7)
        item: dict[str, Any] = {"points": torch.from_numpy(points), "boxes": torch.from_numpy(arr),
                                "box_classes": torch.from_numpy(boxes.classes), "name": name}
        if self.with_image:
            img = cv2.imread(str(self.base / "image_2" / f"{name}.png"), cv2.IMREAD_COLOR)
            if img is None:
                raise DatasetError(f"{self.base}/image_2/{name}.png: unreadable image")
            keep = np.isin(obj.names, KITTI_NAMES)
            item["rgb"] = torch.from_numpy(np.ascontiguousarray(img[..., ::-1].transpose(2, 0, 1)))
            item["boxes2d"] = torch.from_numpy(obj.bbox[keep].astype(np.float32))
        return self.transform(item) if self.transform is not None else item
