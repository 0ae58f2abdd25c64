"""Synthetic multi-sensor world: procedural streets rendered by ray casting for LiDAR, RGB and thermal cameras,
with exact per-point and per-pixel labels, 2D/3D boxes and lighting conditions (image corruptions:
``glassbox.vision.corruptions`` and ``glassbox.vision.rsh``).

Modules: ``geometry`` (boxes, poses), ``meshes`` (labelled triangles, object meshes), ``street`` (layout),
``scene`` (the scene and its ray casting), ``lidar``, ``camera`` (with ``shading``, ``shading_rgb``,
``shading_thermal``), ``texture``, ``materials``, ``drive`` (a drive recorded as a ROS 2 bag).

Frames: world x along the street, y left, z up; the ego base frame is on the ground under the vehicle, x forward;
the LiDAR frame (x forward, y left, z up) sits at ``LidarConfig.mount_xyz`` on the base; cameras use optical
frames (x right, y down, z forward). 3D boxes: ``Boxes3D`` (centre, length/width/height, yaw about +z).
"""
from glassbox.sim.camera import (LIGHTINGS, CameraConfig, CameraError, CameraFrame, Lighting,
                                 ThermalFrame, homography_thermal_to_rgb, lighting_preset, render_cameras,
                                 render_thermal, rgb_camera, thermal_agc, thermal_camera)
from glassbox.sim.drive import TOPICS, DriveConfig, DriveError, write_drive
from glassbox.sim.lidar import (LIDAR_PRESETS, LidarConfig, LidarError, LidarScan, beam_directions, lidar_preset,
                                scan_lidar)
from glassbox.sim.scene import Boxes3D, Scene, SceneConfig, SceneError, make_box_scene, make_scene, pose_matrix

__all__ = [
    "TOPICS", "DriveConfig", "DriveError", "write_drive",
    "Boxes3D", "CameraConfig", "CameraError", "CameraFrame", "LIDAR_PRESETS", "LIGHTINGS", "LidarConfig",
    "LidarError", "LidarScan", "Lighting", "Scene", "SceneConfig", "SceneError", "beam_directions",
    "homography_thermal_to_rgb", "lidar_preset", "lighting_preset", "make_box_scene", "make_scene", "pose_matrix",
    "render_cameras", "render_thermal", "rgb_camera", "ThermalFrame", "scan_lidar", "thermal_agc", "thermal_camera",
]
