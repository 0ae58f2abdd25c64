"""LiDAR 3D detection on a range image: sensor profiles, spherical projection, the SPI heatmap detector, targets
and decoding."""
from glassbox.lidar.decode import DecodeConfig, DecodeError, Detections3D, decode, rotated_nms
from glassbox.lidar.iou import bev_corners, bev_iou, iou_3d
from glassbox.lidar.projection import (ProjectionConfig, ProjectionError, RangeImage, elevation_rows, normalise,
                                       pixel_of, project_points, unproject)
from glassbox.lidar.sensors import (DROP_REASONS, INTENSITY_UNITS, PROFILES, SENSORS, CloudFit, NoValidPointError,
                                    SensorError, SensorMismatchError, SensorProfile, profile_from_projection,
                                    sensor_profile, valid_points)
from glassbox.lidar.spi import (MODELS, SIZES, Spi, SpiConfig, SpiError, SpiLossConfig, build_model, spi_config,
                                spi_loss)
from glassbox.lidar.targets import TargetConfig, build_targets, points_in_boxes

__all__ = [
    "DROP_REASONS", "INTENSITY_UNITS", "MODELS", "PROFILES", "SENSORS", "SIZES", "CloudFit", "DecodeConfig",
    "DecodeError", "Detections3D", "NoValidPointError", "ProjectionConfig", "ProjectionError", "RangeImage",
    "SensorError", "SensorMismatchError",
    "SensorProfile", "Spi", "SpiConfig", "SpiError", "SpiLossConfig", "TargetConfig", "bev_corners", "bev_iou",
    "build_model", "build_targets", "decode", "elevation_rows", "iou_3d", "normalise", "pixel_of",
    "points_in_boxes", "profile_from_projection", "project_points", "rotated_nms", "sensor_profile", "spi_config",
    "spi_loss", "unproject", "valid_points",
]
