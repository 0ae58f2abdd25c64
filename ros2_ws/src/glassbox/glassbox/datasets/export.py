"""Write synthetic frames in the real-data layouts (KITTI object, COCO-style RGB-thermal, PNG label maps), so the
same loaders, trainers and evaluation scripts run on synthetic and on real data."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from glassbox.datasets.coco_rgbt import CocoRgbtWriter
from glassbox.datasets.kitti import write_kitti_frame
from glassbox.datasets.segmentation import write_segmentation_sample
from glassbox.datasets.synthetic import SPLITS, CameraDatasetConfig, DatasetError, frame_seed
from glassbox.sim.camera import render_cameras
from glassbox.sim.lidar import LidarConfig, lidar_preset, scan_lidar
from glassbox.sim.scene import SceneConfig, make_scene

FORMATS = ("kitti", "coco_rgbt", "segmentation")


def export_synthetic(root: str | Path, fmt: str, count: int, split: str = "train", seed: int = 0,
                     lidar: str | LidarConfig = "hdl64", cameras: CameraDatasetConfig | None = None,
                     scene: SceneConfig | None = None, max_time_s: float = 10.0) -> Path:
    """Generate ``count`` frames of ``split`` (seeds as in the synthetic datasets) and write them as ``fmt``.
    KITTI: frames go to ``training/`` (frame i of split s is named ``s * 100000 + i``) and ``ImageSets/<split>.txt``
    lists them; the other layouts have a folder or file per split."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if count < 0 or count >= 100_000:
        raise DatasetError(f"count must lie in [0, 100000), got {count}")
    root = Path(root)
    cams = cameras or CameraDatasetConfig()
    lidar_cfg = lidar_preset(lidar) if isinstance(lidar, str) else lidar
    if fmt == "kitti":             # KITTI's velodyne files hold float reflectance 0-1, whatever the sensor's unit
        lidar_cfg = replace(lidar_cfg, intensity_max=1.0)
    scene_cfg = scene or SceneConfig(length_m=120.0)
    writer = CocoRgbtWriter(root, split) if fmt == "coco_rgbt" else None
    if fmt == "coco_rgbt" and cams.thermal is None:
        raise DatasetError("the coco_rgbt format needs a thermal camera")
    names = []
    for i in range(count):
        fseed = frame_seed(seed, split, i)
        sc = make_scene(fseed, scene_cfg)
        rng = np.random.default_rng(np.random.SeedSequence([fseed, 0xCA3]))
        t = float(np.random.default_rng(np.random.SeedSequence([fseed, 0x7143])).uniform(0.0, max_time_s))
        lighting = cams.lightings[int(rng.integers(len(cams.lightings)))]
        pose = sc.ego_pose(t)
        frame = render_cameras(sc, cams.rgb, cams.thermal if fmt == "coco_rgbt" else None, pose, lighting, fseed, t=t)
        # KITTI keeps every split in training/: split s numbers its frames from s * 100000.
        index = SPLITS[split] * 100_000 + i if fmt == "kitti" else i
        name = f"{index:06d}"
        names.append(name)
        if fmt == "kitti":
            write_kitti_frame(root, index, scan_lidar(sc, lidar_cfg, pose, fseed, t=t), frame)
        elif fmt == "segmentation":
            write_segmentation_sample(root, split, name, frame.rgb, frame.semantic)
        else:
            aligned = cv2.warpPerspective(frame.thermal8, frame.homography_thermal_to_rgb,
                                          (cams.rgb.width, cams.rgb.height), flags=cv2.INTER_LINEAR)
            writer.add(name, frame.rgb, aligned, frame.boxes2d, frame.box_classes, lighting=lighting)
    if writer is not None:
        writer.close()
    if fmt == "kitti":
        (root / "ImageSets").mkdir(parents=True, exist_ok=True)
        (root / "ImageSets" / f"{split}.txt").write_text("".join(f"{n}\n" for n in names))
    return root
