"""Synthetic cameras: boxes and masks against projected geometry, RGB-thermal calibration, lighting, determinism."""
import numpy as np
import pytest

from glassbox.classes import DETECTION_ID, SEMANTIC_ID
from glassbox.sim import (Boxes3D, CameraError, homography_thermal_to_rgb, lighting_preset, make_box_scene,
                          make_scene, render_cameras, render_thermal, rgb_camera, thermal_agc, thermal_camera)

RGB = rgb_camera(width=320, height=256)
THERMAL = thermal_camera(width=320, height=256)


def _project(k, base_T_cam, pts_base):
    cam_T_base = np.linalg.inv(base_T_cam)
    pc = pts_base @ cam_T_base[:3, :3].T + cam_T_base[:3, 3]
    return np.stack([k[0, 0] * pc[..., 0] / pc[..., 2] + k[0, 2], k[1, 1] * pc[..., 1] / pc[..., 2] + k[1, 2]], -1)


@pytest.fixture(scope="module")
def box_frame():
    boxes = Boxes3D(np.array([[14.0, 1.5, 0.8], [9.0, -2.5, 0.9], [20.0, -4.0, 0.85]], np.float32),
                    np.array([[4.4, 1.8, 1.6], [0.6, 0.6, 1.8], [1.8, 0.6, 1.7]], np.float32),
                    np.array([0.4, 0.0, -0.3], np.float32), np.array([0, 1, 2]), np.array([1, 2, 3], np.int32))
    scene = make_box_scene(boxes)
    return boxes, render_cameras(scene, RGB, THERMAL, np.eye(4), "day", seed=0)


def test_projected_3d_boxes_land_on_2d_boxes_and_masks(box_frame):
    boxes, f = box_frame
    assert set(f.box_ids) == {1, 2, 3}
    for i, inst in enumerate(f.box_ids):
        b3 = f.boxes3d.subset(np.array([i]))
        uv = _project(f.K_rgb, f.base_T_rgb, b3.corners()[0])
        lo, hi = uv.min(0), uv.max(0)
        # A cuboid's silhouette is the hull of its projected corners: the tight mask box equals their bounds.
        np.testing.assert_allclose(f.boxes2d[i, :2], lo, atol=1.0)
        np.testing.assert_allclose(f.boxes2d[i, 2:], hi, atol=1.0)
        vv, uu = np.nonzero(f.instance == inst)
        assert uu.min() >= lo[0] - 1 and uu.max() + 1 <= hi[0] + 1
        assert vv.min() >= lo[1] - 1 and vv.max() + 1 <= hi[1] + 1
        cls = int(boxes.classes[boxes.ids == inst][0])
        assert f.box_classes[i] == cls
        sem = {DETECTION_ID["car"]: "car", DETECTION_ID["pedestrian"]: "pedestrian",
               DETECTION_ID["cyclist"]: "cyclist"}[cls]
        assert np.all(f.semantic[f.instance == inst] == SEMANTIC_ID[sem])
    np.testing.assert_allclose(f.boxes3d.centers, boxes.centers, atol=1e-5)      # ego at the origin
    assert np.all(f.box_occlusion < 0.02) and np.all(f.box_truncation == 0)


def test_depth_matches_the_ground_plane(box_frame):
    _, f = box_frame
    k, h = f.K_rgb, f.base_T_rgb[2, 3]
    rows = np.arange(RGB.height) + 0.5
    below = rows > k[1, 2] + 5
    # On flat ground a pixel row v sees depth z = f * h / (v - cy) (optical axis parallel to the ground).
    expected = k[1, 1] * h / (rows[below] - k[1, 2])
    road = f.semantic[below] == SEMANTIC_ID["road"]
    got = np.where(road, f.depth[below], np.nan)
    col = RGB.width // 2 - 60
    ok = np.isfinite(got[:, col])
    np.testing.assert_allclose(got[ok, col], expected[ok], rtol=1e-4)


def test_thermal_and_rgb_masks_agree_through_the_homography(box_frame):
    _, f = box_frame
    hmat = f.homography_thermal_to_rgb
    # Closed form for co-centred cameras: H = K_rgb K_th^-1 (identical orientation).
    np.testing.assert_allclose(hmat, f.K_rgb @ np.linalg.inv(f.K_thermal), atol=1e-9)
    v, u = np.mgrid[0:THERMAL.height, 0:THERMAL.width] + 0.5
    p = np.stack([u.ravel(), v.ravel(), np.ones(u.size)])
    q = hmat @ p
    ur, vr = np.floor(q[0] / q[2]).astype(int), np.floor(q[1] / q[2]).astype(int)
    inside = (ur >= 0) & (ur < RGB.width) & (vr >= 0) & (vr < RGB.height)
    th_sem = f.thermal_semantic.ravel()[inside]
    rgb_sem = f.semantic[vr[inside], ur[inside]]
    assert inside.mean() > 0.99                                   # the narrower thermal view lies inside RGB
    assert (th_sem == rgb_sem).mean() > 0.97
    objects = th_sem >= SEMANTIC_ID["car"]
    assert objects.sum() > 100 and (th_sem[objects] == rgb_sem[objects]).mean() > 0.9


def test_homography_with_a_baseline_is_exact_on_its_plane():
    th = thermal_camera(width=320, height=256, mount_xyz=(0.27, -0.12, 1.65))
    hmat = homography_thermal_to_rgb(RGB, th, depth_m=15.0)
    # A point 15 m in front of the thermal camera projects consistently through H.
    pts_th = np.array([[1.0, -0.5, 15.0], [-2.0, 0.7, 15.0]])
    base = pts_th @ th.base_T_cam()[:3, :3].T + th.base_T_cam()[:3, 3]
    k_th = th.intrinsics()
    uv_th = np.stack([k_th[0, 0] * pts_th[:, 0] / 15 + k_th[0, 2], k_th[1, 1] * pts_th[:, 1] / 15 + k_th[1, 2]], 1)
    q = hmat @ np.c_[uv_th, np.ones(2)].T
    np.testing.assert_allclose((q[:2] / q[2]).T, _project(RGB.intrinsics(), RGB.base_T_cam(), base), atol=1e-6)


@pytest.fixture(scope="module")
def street():
    scene = make_scene(21)
    frames = {name: render_cameras(scene, RGB, THERMAL, scene.ego_pose(1.0), name, seed=3, t=1.0)
              for name in ("day", "glare", "dusk", "night")}
    return scene, frames


def test_lighting_conditions(street):
    _, fr = street
    mean = {k: f.rgb.astype(float).mean() for k, f in fr.items()}
    assert mean["night"] < 0.6 * mean["day"] and mean["dusk"] < mean["day"]
    saturated = {k: (f.rgb >= 250).all(-1).mean() for k, f in fr.items()}
    assert saturated["glare"] > 0.005 and saturated["day"] < 0.001
    # Labels do not depend on the lighting.
    assert all(np.array_equal(f.semantic, fr["day"].semantic) for f in fr.values())
    # Night: thermal still separates warm people from the cold road; RGB contrast there collapses.
    night = fr["night"]
    people = night.thermal_semantic == SEMANTIC_ID["pedestrian"]
    road = night.thermal_semantic == SEMANTIC_ID["road"]
    assert people.sum() > 20
    raw = night.thermal16.astype(float)
    assert raw[people].mean() > raw[road].mean() + 800              # > 8 K warmer
    sky = night.thermal_semantic == 0
    assert raw[sky].mean() < (273.15 + 5.0) * 100                   # counts are kelvin x 100


def test_street_frame_labels(street):
    _, fr = street
    f = fr["day"]
    present = set(np.unique(f.semantic))
    for name in ("unlabeled", "road", "sidewalk", "building", "vegetation", "car"):
        assert SEMANTIC_ID[name] in present, name
    assert f.rgb.dtype == np.uint8 and f.rgb.shape == (256, 320, 3)
    assert f.thermal16.dtype == np.uint16 and f.thermal8.dtype == np.uint8
    for i, inst in enumerate(f.box_ids):
        x0, y0, x1, y1 = f.boxes2d[i].astype(int)
        inside = f.instance[y0:y1, x0:x1] == inst
        assert inside.sum() == (f.instance == inst).sum() >= RGB.min_box_pixels
    # Static occlusion in a street exists and is a fraction.
    assert np.all((f.box_occlusion >= 0) & (f.box_occlusion <= 1))


def test_render_is_deterministic_and_seed_drives_noise():
    scene = make_scene(2)
    pose = scene.ego_pose(0.5)
    a = render_cameras(scene, RGB, THERMAL, pose, "dusk", seed=1, t=0.5)
    b = render_cameras(make_scene(2), RGB, THERMAL, pose, "dusk", seed=1, t=0.5)
    assert a.rgb.tobytes() == b.rgb.tobytes() and a.thermal16.tobytes() == b.thermal16.tobytes()
    c = render_cameras(scene, RGB, THERMAL, pose, "dusk", seed=2, t=0.5)
    assert a.rgb.tobytes() != c.rgb.tobytes() and np.array_equal(a.semantic, c.semantic)
    th = render_thermal(scene, THERMAL, pose, "dusk", seed=1, t=0.5)
    assert th.thermal16.tobytes() == a.thermal16.tobytes()


def test_agc_and_config_errors():
    raw = np.linspace(29000, 31000, 320 * 256).reshape(256, 320).astype(np.uint16)
    out = thermal_agc(raw)
    assert out.min() == 0 and out.max() == 255 and np.all(np.diff(out.ravel().astype(int)) >= 0)
    with pytest.raises(CameraError):
        lighting_preset("noon")
    with pytest.raises(CameraError):
        rgb_camera(width=2)
