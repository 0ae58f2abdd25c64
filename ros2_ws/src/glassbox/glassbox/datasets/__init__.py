"""Datasets: the synthetic world as torch Datasets, and readers/writers of real-data layouts (KITTI object, a
COCO-style RGB-thermal layout as used by FLIR ADAS / LLVIP users, PNG label maps for segmentation)."""
from glassbox.datasets.synthetic import (SPLITS, CameraDatasetConfig, DatasetError, SyntheticCameraDataset,
                                         SyntheticLidarDataset, frame_seed)

__all__ = ["SPLITS", "CameraDatasetConfig", "DatasetError", "SyntheticCameraDataset", "SyntheticLidarDataset",
           "frame_seed"]
