"""Camera geometry: pinhole models, resizing, the thermal -> RGB homography, and calibration files.

Conventions (REP 103, REP 104/105): intrinsics describe an *optical* frame (``<camera>_optical_frame``: x right,
y down, z forward); pixel coordinates are those of ``sensor_msgs/CameraInfo`` and OpenCV (x right, y down).
A :class:`CameraModel` is the ``K`` / ``P`` of one image *as published*: ``camera_model_from_info`` in
``glassbox.msg.camera_info`` applies the CameraInfo's ROI and binning first, as ``image_geometry`` does.

The thermal -> RGB homography (:func:`homography_thermal_to_rgb`) maps thermal pixels to RGB pixels. A homography
is exact for one plane only: with ``rgb_T_thermal = [R | t]`` and the fronto-parallel plane ``Z_thermal = d``,
``H = K_rgb (R + t n^T / d) K_thermal^-1`` (n = (0, 0, 1)); as d grows it tends to the *infinite homography*
``K_rgb R K_thermal^-1``, which is exact for every depth when the optical centres coincide (t = 0, a
beam-splitter rig) and ignores the parallax of the baseline otherwise. A point at depth Z lands
``f |t| |1/Z - 1/d|`` pixels away from where the plane homography puts it (f: the RGB focal length in pixels):
the infinite homography (d = inf) errs by ``f |t| / Z``, growing without bound for near objects, while a plane at
a typical object distance is exact there and errs by at most ``f |t| / d`` for far ones. The fusion node uses
the plane at ``homography_plane_distance_m`` (20 m by default, the distance the synthetic rig's and the shipped
model's homography were made for; 0 selects the infinite homography). Lens distortion is not modelled: the
homography uses K of the unrectified images, as one 3x3 warp of the whole frame must.

Calibration files (``load_camera_yaml``, ``load_fusion_calibration``) are the YAML files ROS's
``camera_calibration`` and ``camera_info_manager`` write (``image_width``, ``camera_matrix``, ...), plus the
thermal -> RGB extrinsic.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np


class CalibrationError(ValueError):
    """A calibration file or camera model is missing a value or holds a wrong one."""


@dataclass(frozen=True)
class CameraModel:
    """A pinhole camera: image size in pixels, K (3, 3), P (3, 4), distortion and rectification of the image."""

    width: int
    height: int
    k: np.ndarray
    p: np.ndarray
    d: np.ndarray = field(default_factory=lambda: np.zeros(0))
    r: np.ndarray = field(default_factory=lambda: np.eye(3))
    distortion_model: str = "plumb_bob"

    @property
    def calibrated(self) -> bool:
        """False for the all-zero K an uncalibrated camera driver publishes."""
        return bool(self.k[0, 0] > 0 and self.k[1, 1] > 0)

    def scaled(self, width: int, height: int) -> CameraModel:
        """The model of this image resized to ``width`` x ``height``: the rows of K and P that give x (y) are
        multiplied by width / self.width (height / self.height), as ``image_proc``'s resize does; distortion and
        rectification do not change."""
        if (width, height) == (self.width, self.height):
            return self
        s = np.diag([width / self.width, height / self.height, 1.0])
        return replace(self, width=int(width), height=int(height), k=s @ self.k, p=s @ self.p)


def pinhole(k: np.ndarray, width: int, height: int) -> CameraModel:
    """An undistorted pinhole: R = I, P = [K | 0]."""
    k = np.asarray(k, np.float64).reshape(3, 3)
    return CameraModel(int(width), int(height), k, np.concatenate([k, np.zeros((3, 1))], 1), np.zeros(5))


def quaternion_to_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (normalised here) -> 3x3 rotation."""
    q = np.array([x, y, z, w], np.float64)
    n = np.linalg.norm(q)
    if n < 1e-12:
        raise CalibrationError("rotation quaternion is zero")
    x, y, z, w = q / n
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


def pose_matrix(translation: Any, quaternion_xyzw: Any) -> np.ndarray:
    """4x4 transform from a translation (m) and a quaternion (x, y, z, w), as in geometry_msgs/Transform."""
    t = np.eye(4)
    t[:3, :3] = quaternion_to_matrix(*np.asarray(quaternion_xyzw, np.float64).reshape(4))
    t[:3, 3] = np.asarray(translation, np.float64).reshape(3)
    return t


def homography_thermal_to_rgb(k_rgb: np.ndarray, k_thermal: np.ndarray, rgb_T_thermal: np.ndarray,
                              plane_distance_m: float = 0.0) -> np.ndarray:
    """3x3 H with ``rgb_px ~ H @ thermal_px`` (normalised so that H[2, 2] = 1).

    ``rgb_T_thermal``: 4x4 pose of the thermal optical frame in the RGB optical frame (p_rgb = R p_thermal + t).
    ``plane_distance_m`` > 0: the homography of the plane Z = d in front of the thermal camera; 0 (or inf): the
    infinite homography ``K_rgb R K_thermal^-1`` (see the module docstring for when each is exact).
    """
    tf = np.asarray(rgb_T_thermal, np.float64)
    m = tf[:3, :3].copy()
    if plane_distance_m and np.isfinite(plane_distance_m):
        if plane_distance_m < 0:
            raise CalibrationError(f"plane distance must be >= 0, got {plane_distance_m}")
        m += np.outer(tf[:3, 3], [0.0, 0.0, 1.0]) / plane_distance_m
    h = np.asarray(k_rgb, np.float64) @ m @ np.linalg.inv(np.asarray(k_thermal, np.float64))
    return h / h[2, 2]


def _matrix(block: Any, rows: int, cols: int, what: str) -> np.ndarray:
    """A ``{rows, cols, data}`` block of a camera_calibration YAML (or a plain list) as a (rows, cols) array."""
    data = block.get("data") if isinstance(block, dict) else block
    arr = np.asarray(data if data is not None else [], np.float64).reshape(-1)
    if arr.size != rows * cols:
        raise CalibrationError(f"{what}: expected {rows * cols} values, got {arr.size}")
    return arr.reshape(rows, cols)


def load_camera_yaml(source: str | Path | dict[str, Any]) -> CameraModel:
    """A camera_calibration / camera_info_manager YAML file (or its parsed content) -> :class:`CameraModel`."""
    import yaml
    data = source if isinstance(source, dict) else yaml.safe_load(Path(source).read_text())
    where = "camera calibration" if isinstance(source, dict) else str(source)
    try:
        width, height = int(data["image_width"]), int(data["image_height"])
        k = _matrix(data["camera_matrix"], 3, 3, f"{where}: camera_matrix")
    except (KeyError, TypeError) as exc:
        raise CalibrationError(f"{where}: missing {exc} (a camera_calibration YAML has image_width, image_height, "
                               "camera_matrix, distortion_model, distortion_coefficients, rectification_matrix, "
                               "projection_matrix)") from None
    p = (_matrix(data["projection_matrix"], 3, 4, f"{where}: projection_matrix") if "projection_matrix" in data
         else np.concatenate([k, np.zeros((3, 1))], 1))
    r = _matrix(data["rectification_matrix"], 3, 3, f"{where}: rectification_matrix") \
        if "rectification_matrix" in data else np.eye(3)
    d = np.asarray((data.get("distortion_coefficients") or {}).get("data", []), np.float64)
    return CameraModel(width, height, k, p, d, r, str(data.get("distortion_model", "plumb_bob")))


@dataclass(frozen=True)
class FusionCalibration:
    """What a fusion calibration file holds: the two cameras' intrinsics (when given) and the thermal -> RGB
    extrinsic (4x4 pose of the thermal optical frame in the RGB optical frame)."""

    rgb: CameraModel | None
    thermal: CameraModel | None
    rgb_T_thermal: np.ndarray


def load_fusion_calibration(path: str | Path) -> FusionCalibration:
    """Read a fusion calibration file::

        rgb: rgb_camera.yaml            # camera_calibration YAML: a path (relative to this file) or inline
        thermal: thermal_camera.yaml    # optional, both: the camera_info topics give the intrinsics then
        rgb_T_thermal:                  # pose of the thermal optical frame in the RGB optical frame
          translation: [0.05, 0.0, 0.0] # m
          rotation: [0.0, 0.0, 0.0, 1.0]  # quaternion x, y, z, w (or `matrix:` a 4x4 row-major list)
    """
    import yaml
    path = Path(path)
    if not path.is_file():
        raise CalibrationError(f"calibration file not found: {path}")
    data = yaml.safe_load(path.read_text()) or {}
    unknown = sorted(set(data) - {"rgb", "thermal", "rgb_T_thermal"})
    if unknown:
        raise CalibrationError(f"{path}: unknown key '{unknown[0]}' (known: rgb, thermal, rgb_T_thermal)")
    ext = data.get("rgb_T_thermal")
    if not isinstance(ext, dict):
        raise CalibrationError(f"{path}: rgb_T_thermal (translation + rotation, or matrix) is required")
    if "matrix" in ext:
        tf = _matrix(ext["matrix"], 4, 4, f"{path}: rgb_T_thermal.matrix")
    else:
        try:
            tf = pose_matrix(ext["translation"], ext["rotation"])
        except (KeyError, ValueError) as exc:
            raise CalibrationError(f"{path}: rgb_T_thermal needs translation [x, y, z] and rotation "
                                   f"[x, y, z, w] ({exc})") from None

    def camera(key: str) -> CameraModel | None:
        value = data.get(key)
        if value is None:
            return None
        return load_camera_yaml(value if isinstance(value, dict) else path.parent / value)
    return FusionCalibration(camera("rgb"), camera("thermal"), tf)
