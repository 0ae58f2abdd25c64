"""Synthetic multi-sensor world: procedural streets rendered by ray casting for LiDAR, RGB and thermal cameras,
with exact per-point and per-pixel labels, 2D/3D boxes, lighting conditions and image corruptions.

Frames: world x along the street, y left, z up; the ego base frame is on the ground under the vehicle, x forward;
the LiDAR frame (x forward, y left, z up) sits at ``LidarConfig.mount_xyz`` on the base; cameras use optical
frames (x right, y down, z forward). 3D boxes: ``Boxes3D`` (centre, length/width/height, yaw about +z).
"""
from glassbox.sim.camera import (LIGHTINGS, CameraConfig, CameraError, CameraFrame, Lighting,
                                 ThermalFrame, homography_thermal_to_rgb, lighting_preset, render_cameras,
                                 render_thermal, rgb_camera, thermal_agc, thermal_camera)
from glassbox.sim.corrupt import (SEED_CORRUPTIONS, CorruptionConfig, CorruptionError, RshConfig, apply_corruption,
                                  apply_rsh, graded_corruption, random_corruption, random_shadows_highlights,
                                  sample_rsh)
from glassbox.sim.drive import TOPICS, DriveConfig, DriveError, write_drive
from glassbox.sim.lidar import (LIDAR_PRESETS, LidarConfig, LidarError, LidarScan, beam_directions, lidar_preset,
                                scan_lidar)
from glassbox.sim.scene import Boxes3D, Scene, SceneConfig, SceneError, make_box_scene, make_scene, pose_matrix

__all__ = [
    "SEED_CORRUPTIONS", "TOPICS", "CorruptionConfig", "CorruptionError", "DriveConfig", "DriveError", "RshConfig",
    "apply_corruption", "apply_rsh", "graded_corruption", "random_corruption", "random_shadows_highlights",
    "sample_rsh", "write_drive",
    "Boxes3D", "CameraConfig", "CameraError", "CameraFrame", "LIDAR_PRESETS", "LIGHTINGS", "LidarConfig",
    "LidarError", "LidarScan", "Lighting", "Scene", "SceneConfig", "SceneError", "beam_directions",
    "homography_thermal_to_rgb", "lidar_preset", "lighting_preset", "make_box_scene", "make_scene", "pose_matrix",
    "render_cameras", "render_thermal", "rgb_camera", "ThermalFrame", "scan_lidar", "thermal_agc", "thermal_camera",
]
