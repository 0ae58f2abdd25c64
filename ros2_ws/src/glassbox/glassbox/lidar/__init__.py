"""LiDAR 3D detection on a range image: spherical projection, the SPI heatmap detector, targets and decoding."""
from glassbox.lidar.decode import DecodeConfig, DecodeError, Detections3D, decode, rotated_nms
from glassbox.lidar.iou import bev_corners, bev_iou, iou_3d
from glassbox.lidar.projection import (ProjectionConfig, ProjectionError, RangeImage, normalise, pixel_of,
                                       project_points, unproject)
from glassbox.lidar.spi import (MODELS, SIZES, Spi, SpiConfig, SpiError, SpiLossConfig, build_model, spi_config,
                                spi_loss)
from glassbox.lidar.targets import TargetConfig, build_targets, points_in_boxes

__all__ = [
    "MODELS", "SIZES", "DecodeConfig", "DecodeError", "Detections3D", "ProjectionConfig", "ProjectionError",
    "RangeImage", "Spi", "SpiConfig", "SpiError", "SpiLossConfig", "TargetConfig", "bev_corners", "bev_iou",
    "build_model", "build_targets", "decode", "iou_3d", "normalise", "pixel_of", "points_in_boxes",
    "project_points", "rotated_nms", "spi_config", "spi_loss", "unproject",
]
