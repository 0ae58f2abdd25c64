"""Write synthetic frames in the real-data layouts (KITTI object, COCO-style RGB-thermal, PNG label maps), so the
same loaders, trainers and evaluation scripts run on synthetic and on real data."""
from __future__ import annotations

import multiprocessing as mp
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path

import cv2
import numpy as np

from glassbox.datasets.coco_rgbt import CocoRgbtWriter
from glassbox.datasets.kitti import write_kitti_frame
from glassbox.datasets.segmentation import write_segmentation_sample
from glassbox.datasets.synthetic import SPLITS, CameraDatasetConfig, DatasetError, frame_seed
from glassbox.sim.camera import render_cameras
from glassbox.sim.drive import usable_cpus
from glassbox.sim.lidar import LidarConfig, lidar_preset, scan_lidar
from glassbox.sim.scene import SceneConfig, make_scene

FORMATS = ("kitti", "coco_rgbt", "segmentation")


@dataclass(frozen=True)
class _Job:
    """What renders one frame (sent to the rendering processes)."""

    fmt: str
    split: str
    seed: int
    lidar: LidarConfig
    cameras: CameraDatasetConfig
    scene: SceneConfig
    max_time_s: float


def _render(job: _Job, i: int):
    """Frame ``i``: its lighting, camera frame and (KITTI) LiDAR scan, from its own seed."""
    fseed = frame_seed(job.seed, job.split, i)
    sc = make_scene(fseed, job.scene)
    rng = np.random.default_rng(np.random.SeedSequence([fseed, 0xCA3]))
    t = float(np.random.default_rng(np.random.SeedSequence([fseed, 0x7143])).uniform(0.0, job.max_time_s))
    lighting = job.cameras.lightings[int(rng.integers(len(job.cameras.lightings)))]
    pose = sc.ego_pose(t)
    cams = job.cameras
    frame = render_cameras(sc, cams.rgb, cams.thermal if job.fmt == "coco_rgbt" else None, pose, lighting, fseed, t=t)
    scan = scan_lidar(sc, job.lidar, pose, fseed, t=t) if job.fmt == "kitti" else None
    return lighting, frame, scan


def _frames(job: _Job, count: int, workers: int):
    """The rendered frames 0..count-1 in order, from ``workers`` processes when > 1."""
    if workers <= 1 or count <= 1:
        yield from (_render(job, i) for i in range(count))
        return
    with mp.get_context("spawn").Pool(min(workers, count)) as pool:
        yield from pool.imap(partial(_render, job), range(count), chunksize=1)


def export_synthetic(root: str | Path, fmt: str, count: int, split: str = "train", seed: int = 0,
                     lidar: str | LidarConfig = "hdl64", cameras: CameraDatasetConfig | None = None,
                     scene: SceneConfig | None = None, max_time_s: float = 10.0, workers: int = 1) -> Path:
    """Generate ``count`` frames of ``split`` (seeds as in the synthetic datasets) and write them as ``fmt``.
    KITTI: frames go to ``training/`` (frame i of split s is named ``s * 100000 + i``) and ``ImageSets/<split>.txt``
    lists them; the other layouts have a folder or file per split. Frames are rendered in ``workers`` processes
    (0: one per CPU core) and written in order, so the files do not depend on it."""
    if fmt not in FORMATS:
        raise DatasetError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    if count < 0 or count >= 100_000:
        raise DatasetError(f"count must lie in [0, 100000), got {count}")
    if workers < 0:
        raise DatasetError(f"workers must be >= 0 (0: one per CPU core), got {workers}")
    root = Path(root)
    cams = cameras or CameraDatasetConfig()
    lidar_cfg = lidar_preset(lidar) if isinstance(lidar, str) else lidar
    if fmt == "kitti":             # KITTI's velodyne files hold float reflectance 0-1, whatever the sensor's unit
        lidar_cfg = replace(lidar_cfg, intensity_max=1.0)
    scene_cfg = scene or SceneConfig(length_m=120.0)
    writer = CocoRgbtWriter(root, split) if fmt == "coco_rgbt" else None
    if fmt == "coco_rgbt" and cams.thermal is None:
        raise DatasetError("the coco_rgbt format needs a thermal camera")
    job = _Job(fmt, split, int(seed), lidar_cfg, cams, scene_cfg, max_time_s)
    names = []
    for i, (lighting, frame, scan) in enumerate(_frames(job, count, workers or usable_cpus())):
        # KITTI keeps every split in training/: split s numbers its frames from s * 100000.
        index = SPLITS[split] * 100_000 + i if fmt == "kitti" else i
        name = f"{index:06d}"
        names.append(name)
        if fmt == "kitti":
            write_kitti_frame(root, index, scan, frame)
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
