"""The thermal -> RGB homography against a closed form (a known 3D point projected through both cameras),
calibration files, and the fusion stage building its homography from camera_info and an extrinsic."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from glassbox.calibration import (CalibrationError, homography_thermal_to_rgb, load_camera_yaml,
                                  load_fusion_calibration, pinhole, pose_matrix)

K_RGB = np.array([[520.0, 0.0, 330.0], [0.0, 515.0, 250.0], [0.0, 0.0, 1.0]])      # 640 x 512
K_TH = np.array([[350.0, 0.0, 160.0], [0.0, 350.0, 128.0], [0.0, 0.0, 1.0]])       # 320 x 256
QUAT = Rotation.from_euler("zyx", [2.0, -1.5, 0.7], degrees=True).as_quat()         # x, y, z, w
T = np.array([0.12, -0.04, 0.03])                                                     # m, thermal in RGB


def rgb_T_thermal() -> np.ndarray:
    return pose_matrix(T, QUAT)


def project(k: np.ndarray, p: np.ndarray) -> np.ndarray:
    uvw = k @ p
    return uvw[:2] / uvw[2]


def warp(h: np.ndarray, uv: np.ndarray) -> np.ndarray:
    x = h @ np.append(uv, 1.0)
    return x[:2] / x[2]


def test_pose_matrix_is_the_quaternions_rotation():
    np.testing.assert_allclose(rgb_T_thermal()[:3, :3], Rotation.from_quat(QUAT).as_matrix(), atol=1e-12)
    np.testing.assert_allclose(rgb_T_thermal()[:3, 3], T)


@pytest.mark.parametrize("depth", [3.0, 20.0, 80.0])
def test_plane_homography_maps_points_of_the_plane_exactly(depth):
    tf = rgb_T_thermal()
    h = homography_thermal_to_rgb(K_RGB, K_TH, tf, plane_distance_m=depth)
    for xy in ([0.0, 0.0], [1.3, -0.6], [-2.0, 0.9]):
        p_th = np.array([*xy, depth])                         # on the plane Z_thermal = depth
        p_rgb = tf[:3, :3] @ p_th + tf[:3, 3]
        np.testing.assert_allclose(warp(h, project(K_TH, p_th)), project(K_RGB, p_rgb), atol=1e-9)


def test_plane_homography_parallax_off_the_plane_is_f_b_over_depth():
    tf = pose_matrix([0.1, 0.0, 0.0], [0, 0, 0, 1])          # 10 cm baseline along x, no rotation
    h = homography_thermal_to_rgb(K_RGB, K_TH, tf, plane_distance_m=20.0)
    p_th = np.array([0.5, 0.2, 5.0])                           # 5 m away: off the 20 m plane
    err = warp(h, project(K_TH, p_th)) - project(K_RGB, p_th + tf[:3, 3])
    assert err[0] == pytest.approx(-K_RGB[0, 0] * 0.1 * (1 / 5.0 - 1 / 20.0)) and abs(err[1]) < 1e-9


def test_infinite_homography_is_exact_far_away_and_for_a_co_centred_rig():
    tf = rgb_T_thermal()
    h_inf = homography_thermal_to_rgb(K_RGB, K_TH, tf)        # plane_distance_m = 0: K_rgb R K_th^-1
    expected = K_RGB @ tf[:3, :3] @ np.linalg.inv(K_TH)
    np.testing.assert_allclose(h_inf, expected / expected[2, 2])
    p_far = np.array([300.0, -100.0, 1e7])
    np.testing.assert_allclose(warp(h_inf, project(K_TH, p_far)), project(K_RGB, tf[:3, :3] @ p_far + T), atol=1e-4)
    co = pose_matrix([0, 0, 0], QUAT)
    h_co = homography_thermal_to_rgb(K_RGB, K_TH, co, plane_distance_m=7.0)
    for depth in (1.0, 7.0, 500.0):
        p = np.array([0.3, 0.2, depth])
        np.testing.assert_allclose(warp(h_co, project(K_TH, p)), project(K_RGB, co[:3, :3] @ p), atol=1e-9)


CAMERA_YAML = """\
image_width: 640
image_height: 512
camera_name: front_rgb
camera_matrix:
  rows: 3
  cols: 3
  data: [520.0, 0.0, 330.0, 0.0, 515.0, 250.0, 0.0, 0.0, 1.0]
distortion_model: plumb_bob
distortion_coefficients:
  rows: 1
  cols: 5
  data: [-0.1, 0.02, 0.0, 0.0, 0.0]
rectification_matrix:
  rows: 3
  cols: 3
  data: [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
projection_matrix:
  rows: 3
  cols: 4
  data: [520.0, 0.0, 330.0, 0.0, 0.0, 515.0, 250.0, 0.0, 0.0, 0.0, 1.0, 0.0]
"""


def test_camera_calibration_yaml(tmp_path):
    path = tmp_path / "rgb.yaml"
    path.write_text(CAMERA_YAML)
    cam = load_camera_yaml(path)
    assert (cam.width, cam.height, cam.distortion_model) == (640, 512, "plumb_bob")
    np.testing.assert_allclose(cam.k, K_RGB)
    np.testing.assert_allclose(cam.d, [-0.1, 0.02, 0.0, 0.0, 0.0])
    path.write_text(CAMERA_YAML.replace("  data: [520.0, 0.0, 330.0, 0.0, 515.0, 250.0, 0.0, 0.0, 1.0]",
                                        "  data: [520.0, 0.0]"))
    with pytest.raises(CalibrationError, match="camera_matrix: expected 9 values, got 2"):
        load_camera_yaml(path)


def test_fusion_calibration_file(tmp_path):
    (tmp_path / "rgb.yaml").write_text(CAMERA_YAML)
    path = tmp_path / "fusion.yaml"
    path.write_text(f"rgb: rgb.yaml\nrgb_T_thermal:\n  translation: {T.tolist()}\n  rotation: {QUAT.tolist()}\n")
    cal = load_fusion_calibration(path)
    assert cal.thermal is None and cal.rgb.width == 640
    np.testing.assert_allclose(cal.rgb_T_thermal, rgb_T_thermal())
    path.write_text("rgb: rgb.yaml\n")
    with pytest.raises(CalibrationError, match="rgb_T_thermal"):
        load_fusion_calibration(path)
    path.write_text("rgb_T_thermal: {matrix: [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]}\nlidar: x\n")
    with pytest.raises(CalibrationError, match="unknown key 'lidar'"):
        load_fusion_calibration(path)


def test_fusion_stage_homography_from_camera_info_and_extrinsic(tmp_path):
    """The stage turns the two CameraInfos and the extrinsic into the homography the pipeline warps with: a bright
    thermal pixel lands in the network input where the RGB camera sees the same 3D point."""
    from glassbox import msg as gm
    from glassbox.bag.typestore import make_typestore
    from glassbox.calibration import FusionCalibration
    from glassbox.pipelines.fusion import FusionPipeline, FusionPipelineConfig
    from glassbox.stages import FusionStage

    f = gm.RosbagsFactory(make_typestore())
    pipeline = FusionPipeline(FusionPipelineConfig(backend="torch"))
    depth = 20.0
    stage = FusionStage(pipeline, f, calibration=FusionCalibration(None, None, rgb_T_thermal()),
                        plane_distance_m=depth)
    header = gm.make_header(f, 0, "cam")
    # Calibrated at full resolution; the images arrive at half of it (the models scale with them).
    stage.camera_info("rgb", gm.make_camera_info(f, pinhole(K_RGB, 640, 512), header))
    stage.camera_info("thermal", gm.make_camera_info(f, pinhole(K_TH, 320, 256), header))
    stage.update_homography((320, 256), (160, 128))
    p_th = np.array([1.0, 0.5, depth])
    half = np.diag([0.5, 0.5, 1.0])
    uv_th = project(half @ K_TH, p_th)
    uv_rgb = project(half @ K_RGB, rgb_T_thermal()[:3, :3] @ p_th + T)
    np.testing.assert_allclose(warp(pipeline.homography, uv_th), uv_rgb, atol=1e-9)
    assert "camera_info" in stage.info()["homography"] and "plane at 20 m" in stage.info()["homography"]

    thermal = np.zeros((128, 160), np.uint8)
    thermal[int(round(uv_th[1])), int(round(uv_th[0]))] = 255
    _, x_th = pipeline.prepare(np.zeros((256, 320, 3), np.uint8), thermal)
    iw, ih = pipeline.cfg.input_size                       # the network input: the RGB image scaled to it
    row, col = np.unravel_index(np.argmax(x_th[0, 0]), (ih, iw))
    expected = np.round(uv_rgb * [iw / 320, ih / 256]).astype(int)
    assert abs(col - expected[0]) <= 1 and abs(row - expected[1]) <= 1

    fixed = FusionStage(pipeline, f, calibration=FusionCalibration(None, None, rgb_T_thermal()),
                        fixed_homography=True)
    before = pipeline.homography.copy()
    fixed.camera_info("rgb", gm.make_camera_info(f, pinhole(np.diag([2.0, 2.0, 1.0]) @ K_RGB, 640, 512), header))
    fixed.camera_info("thermal", gm.make_camera_info(f, pinhole(K_TH, 320, 256), header))
    fixed.update_homography((320, 256), (160, 128))
    np.testing.assert_array_equal(pipeline.homography, before)           # an explicit homography stays

    # An uncalibrated camera_info (K all zeros, as drivers publish it) gives way to the calibration file's K.
    filed = FusionStage(pipeline, f, calibration=FusionCalibration(pinhole(K_RGB, 640, 512), None, rgb_T_thermal()),
                        plane_distance_m=depth)
    filed.camera_info("rgb", gm.make_camera_info(f, pinhole(np.zeros((3, 3)), 640, 512), header))
    filed.camera_info("thermal", gm.make_camera_info(f, pinhole(K_TH, 320, 256), header))
    pipeline.homography = np.eye(3)
    filed.update_homography((320, 256), (160, 128))
    np.testing.assert_allclose(warp(pipeline.homography, uv_th), uv_rgb, atol=1e-9)
    assert filed.info()["homography"].startswith("intrinsics rgb: calibration file, thermal: camera_info")
