"""Datasets: the synthetic world as torch Datasets, and readers/writers of real-data layouts (KITTI object, a
COCO-style RGB-thermal layout as used by FLIR ADAS / LLVIP users, PNG label maps for segmentation)."""
from glassbox.datasets.coco_rgbt import CocoRgbtDataset, CocoRgbtWriter, read_coco_rgbt
from glassbox.datasets.export import FORMATS, export_synthetic
from glassbox.datasets.kitti import (KittiDataset, KittiObjects, format_kitti_label, kitti_to_boxes3d,
                                     read_kitti_calib, read_kitti_label, read_velodyne, write_kitti_frame)
from glassbox.datasets.segmentation import (SegmentationPngDataset, read_label_png, write_label_png,
                                            write_segmentation_sample)
from glassbox.datasets.synthetic import (SPLITS, CameraDatasetConfig, DatasetError, SyntheticCameraDataset,
                                         SyntheticLidarDataset, frame_seed)

__all__ = [
    "FORMATS", "SPLITS", "CameraDatasetConfig", "CocoRgbtDataset", "CocoRgbtWriter", "DatasetError", "KittiDataset",
    "KittiObjects", "SegmentationPngDataset", "SyntheticCameraDataset", "SyntheticLidarDataset", "export_synthetic",
    "format_kitti_label", "frame_seed", "kitti_to_boxes3d", "read_coco_rgbt", "read_kitti_calib", "read_kitti_label",
    "read_label_png", "read_velodyne", "write_kitti_frame", "write_label_png", "write_segmentation_sample",
]
